"""Is the log-linear forward host-bound at K = V = 64? Op and template-level forward timed with
do_bench and inside a CUDA graph, host time per call without synchronizing, and the cached
launcher's hits, for configs given as JSON (each merged into the tuned one).
    python3 scripts/probes/ll_host.py B=8,T=4096,H=16,K=64,V=64,L=13 '[{}, {"out_tma": 0}]'"""
import json
import sys
import time

import torch
import triton

import kernelgen
from kernelgen import dispatch
from kernelgen.bench.loglinear_attention import _inputs as bench_inputs
from kernelgen.templates import loglinear_attention as tmpl

shape = {k: int(v) for k, v in (p.split("=") for p in sys.argv[1].split(","))}
B, T, H, K, V, L = (shape[d] for d in ("B", "T", "H", "K", "V", "L"))
q, k, v, g, lam = bench_inputs(shape, grad=False)     # the bench's own inputs
tuned = dispatch.config_for(tmpl.LogLinearForward(), shape, torch.bfloat16, "", q.device)
print("tuned", json.dumps(tuned))


def graph_ms(fn):
    fn()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return triton.testing.do_bench(graph.replay)


def host_us(fn, n=50):
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    host = (time.perf_counter() - t) / n * 1e6
    torch.cuda.synchronize()
    return host


for extra in json.loads(sys.argv[2]):
    config = {**tuned, **extra}
    plan = tmpl.make_plan(B, T, config["chunk"], None, None, "cuda")

    def template_fwd():
        return tmpl.forward(q, k, v, g, lam, K ** -0.5, config, plan)

    def op_fwd():
        with torch.no_grad():
            return kernelgen.loglinear_attention(q, k, v, g, lam)

    hits = tmpl._fwd_output_kernel.run.hits if hasattr(tmpl._fwd_output_kernel.run, "hits") else None
    row = {"template": triton.testing.do_bench(template_fwd), "template graph": graph_ms(template_fwd),
           "template host us": host_us(template_fwd)}
    if not extra:
        row.update({"op": triton.testing.do_bench(op_fwd), "op graph": graph_ms(op_fwd), "op host us": host_us(op_fwd)})
    hits2 = tmpl._fwd_output_kernel.run.hits if hits is not None else None
    print(json.dumps(extra), " ".join(f"{n} {x:.4f}" for n, x in row.items()), "launcher hits", hits, "->", hits2)
