"""How a launch is timed: the median of many runs, never a single one."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

# Kernels faster than this are timed from CUDA-graph replays: launch overhead would dominate.
GRAPH_BELOW_MS = 0.02
# Calls slower than this are timed by a few event-timed runs instead of do_bench's long loop.
SLOW_MS = 250.0


def time_ms(fn: Callable[[], object], device: torch.device | str, rep_ms: int = 100) -> float:
    """Median milliseconds of ``fn``: ``do_bench`` (L2 flushed between runs) on CUDA, with a
    CUDA-graph re-measure for tiny kernels; a wall clock on the CPU (interpreter tests only)."""
    if torch.device(device).type != "cuda":
        return _cpu_median_ms(fn)
    from triton.testing import do_bench, do_bench_cudagraph
    fn()   # compile / warm up outside the measurement
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    once_ms = (time.perf_counter() - start) * 1e3
    if once_ms > SLOW_MS:
        # A slow reference (a Python loop over time): a few timed calls say enough.
        return _cuda_median_ms(fn, runs=3)
    ms = do_bench(fn, warmup=25, rep=rep_ms, return_mode="median")
    if ms < GRAPH_BELOW_MS:
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):   # graph capture needs a side stream
            ms = do_bench_cudagraph(fn, rep=max(20, rep_ms // 5), return_mode="median")
    return float(ms)


def _cpu_median_ms(fn: Callable[[], object], runs: int = 3) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def _cuda_median_ms(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return statistics.median(samples)


def graph_ms(fn: Callable[[], object], rep_ms: int = 100) -> float:
    """Median milliseconds of ``fn`` captured once in a CUDA graph and replayed: the device time
    of its kernels without the host's launch overhead (what a CUDA-graphed training or serving
    step sees). ``fn`` must not synchronize with the host; autograd inside it is fine."""
    from triton.testing import do_bench
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):          # warm up (compile, autotune) outside the capture
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return float(do_bench(graph.replay, warmup=10, rep=rep_ms, return_mode="median"))
