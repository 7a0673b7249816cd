"""Runs every family's bench cases on the GPU and prints one table (bench.py and `kernelgen bench`)."""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kernelgen.bench import FAMILIES, BenchCase
from kernelgen.tune.arguments import at_least_one

GRAPH_MAX_MS = 50.0   # --graphs times providers up to this eager time


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="only the first shape of each op and mode")
    parser.add_argument("--op", default="all", help="only this op's family (e.g. linear_scan)")
    parser.add_argument("--mode", default="all", help="only this mode (e.g. fwd, fwd+bwd)")
    parser.add_argument("--json", default=None, metavar="FILE",
                        help="also write the rows (one per measurement) as a JSON array to FILE, rewritten "
                             "after each case; a file already there is replaced")
    parser.add_argument("--rep", type=at_least_one(" ms"), default=100, help="do_bench repetition time in ms")
    parser.add_argument("--graphs", action="store_true",
                        help="also time every provider replayed from a CUDA graph (device time without host "
                             "launch overhead), in a 'graph ms' column")


def collect_cases(op: str, quick: bool, mode: str = "all") -> list[BenchCase]:
    cases = []
    for family in FAMILIES:
        try:
            module = importlib.import_module(f"kernelgen.bench.{family}")
        except ModuleNotFoundError as error:
            if error.name == f"kernelgen.bench.{family}":
                continue
            raise
        for case in module.cases(quick):
            if op in ("all", case.op, family) and mode in ("all", case.mode):
                cases.append(case)
    return cases


def measure_case(case: BenchCase, rep_ms: int, graphs: bool = False) -> list[dict[str, Any]]:
    """Time every provider of one case side by side; a provider that fails becomes a row with its error.
    With ``graphs`` each provider is also timed from a CUDA-graph replay (``graph_ms``)."""
    import torch
    from kernelgen.tune.timing import graph_ms, time_ms
    rows = []
    try:
        providers = case.make()
    except Exception as error:  # noqa: BLE001 - report, keep benchmarking the other cases
        return [{"provider": "kernelgen", "error": f"setup failed: {type(error).__name__}: {error}"}]
    for name, fn in providers.items():
        row: dict[str, Any] = {"provider": name}
        try:
            row["ms"] = time_ms(fn, "cuda", rep_ms=rep_ms)
        except Exception as error:  # noqa: BLE001
            row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}"
        # (slow baselines such as Python loops over time are left out: capturing thousands of
        # launches takes longer than it tells)
        if graphs and "error" not in row and row.get("ms", 0.0) < GRAPH_MAX_MS:
            try:
                row["graph_ms"] = graph_ms(fn, rep_ms=rep_ms)
            except Exception as error:  # noqa: BLE001 - e.g. a peer that syncs with the host
                row["graph_error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:80] if str(error) else ''}"
                torch.cuda.synchronize()
        rows.append(row)
    for name, why in case.skipped.items():
        rows.append({"provider": name, "error": f"skipped: {why}"})
    del providers
    gc.collect()
    torch.cuda.empty_cache()
    return rows


def _json_problem(path: str) -> str | None:
    """Why --json cannot be written (checked before anything is measured), or None."""
    target = Path(path)
    if target.is_dir():
        return f"{path} is a folder; name a file in it"
    if not target.parent.is_dir():
        return f"its folder {target.parent} does not exist"
    if not os.access(target.parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        return f"{path} is not writable"
    return None


def run_bench(args: argparse.Namespace, console: Console) -> int:
    import torch
    from kernelgen import hardware
    mode = getattr(args, "mode", "all")
    cases = collect_cases(args.op, args.quick, mode)
    if not cases:   # an unknown op or mode, or a pair with no case
        known = collect_cases("all", args.quick, "all")
        console.print(f"[red]--op {escape(args.op)} --mode {escape(mode)}[/]: no bench case; ops: "
                      f"{', '.join(sorted({c.op for c in known}))}; modes: {', '.join(sorted({c.mode for c in known}))}")
        return 2
    if args.json and _json_problem(args.json):
        console.print(f"[red]--json {escape(args.json)}[/]: {escape(_json_problem(args.json))}. Nothing was run.")
        return 2
    gpu = hardware.detect_gpu()
    if gpu is None:
        console.print(hardware.no_gpu_message("bench", "The benchmark times kernels on a GPU; nothing was run."))
        return 2
    profile = gpu.profile
    bandwidth = profile.bandwidth_gbs if profile else None
    import triton
    console.print(f"{gpu.name}, torch {torch.__version__}, triton {triton.__version__}; "
                  f"{len(cases)} cases; medians of triton.testing.do_bench (L2 flushed)")
    table = Table(title=f"kernelgen bench — {gpu.name}")
    graphs = getattr(args, "graphs", False)
    columns = ["op", "mode", "shape", "dtype", "provider", "ms", "GB/s", "% copy BW", "TFLOP/s",
               "kernelgen speedup", "floor ms", "target ms"] + (["graph ms"] if graphs else [])
    for column in columns:
        table.add_column(column, justify="left" if column in ("op", "mode", "shape", "dtype", "provider") else "right")
    records = []
    for case in cases:
        rows = measure_case(case, args.rep, getattr(args, "graphs", False))
        ours = next((r.get("ms") for r in rows if r["provider"] == "kernelgen"), None)
        floor_ms = case.bytes / (bandwidth * 1e9) * 1e3 if bandwidth else None
        for index, row in enumerate(rows):
            ms = row.get("ms")
            gbps = case.bytes / (ms * 1e-3) / 1e9 if ms else None
            tflops = case.flops / (ms * 1e-3) / 1e12 if ms and case.flops else None
            speedup = ms / ours if ms and ours and row["provider"] != "kernelgen" else None
            first = index == 0
            table.add_row(case.op if first else "", case.mode if first else "", escape(case.label) if first else "",
                          case.dtype if first else "", escape(row["provider"]),
                          f"{ms:.4f}" if ms else f"[red]{escape(str(row.get('error', ''))[:60])}[/]",
                          f"{gbps:.0f}" if gbps else "", f"{100 * gbps / bandwidth:.0f}%" if gbps and bandwidth else "",
                          f"{tflops:.1f}" if tflops else "", f"{speedup:.2f}x" if speedup else "",
                          f"{floor_ms:.4f}" if floor_ms and first else "",
                          f"{case.target_ms:g}" if case.target_ms and first else "",
                          *([f"{row['graph_ms']:.4f}" if row.get("graph_ms") else
                             f"[red]{escape(str(row.get('graph_error', ''))[:40])}[/]"] if graphs else []),
                          end_section=index == len(rows) - 1)
            records.append({"op": case.op, "mode": case.mode, "shape": case.shape, "dtype": case.dtype,
                            "provider": row["provider"], "ms": ms, "gbps": gbps, "tflops": tflops,
                            "pct_copy_bw": 100 * gbps / bandwidth if gbps and bandwidth else None,
                            "floor_ms": floor_ms, "target_ms": case.target_ms,
                            "meets_target": (ms <= case.target_ms) if (ms and case.target_ms and
                                                                        row["provider"] == "kernelgen") else None,
                            "graph_ms": row.get("graph_ms"), "graph_error": row.get("graph_error"),
                            "error": row.get("error"), "gpu": gpu.name})
        # One line per provider as soon as the case is measured: a run cut short keeps what it measured.
        for record in records[-len(rows):]:
            shown = f"{record['ms']:.4f} ms" if record["ms"] else record["error"]
            extra = f"  {record['pct_copy_bw']:.0f}% BW" if record["pct_copy_bw"] else ""
            extra += f"  {record['tflops']:.1f} TFLOP/s" if record["tflops"] else ""
            extra += f"  graph {record['graph_ms']:.4f} ms" if record.get("graph_ms") else ""
            console.print(escape(f"  {case.op} {case.mode} {case.label} {case.dtype} | {record['provider']}: {shown}{extra}"))
        if args.json:
            _write_json(args.json, records)
    console.print(table)
    if args.json:
        console.print(f"Wrote {len(records)} rows to {args.json}")
    return 0


def _write_json(path: str, records: list[dict[str, Any]]) -> None:
    """The rows so far, replacing the file whole (a reader never sees half of it)."""
    from kernelgen.store import write_atomically
    rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in records]
    write_atomically(Path(path), json.dumps(rows, indent=1))
