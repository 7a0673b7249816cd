"""Where the linear-attention backward's time goes: each pass alone, with and without the decay
gradient (H100 probe, session 4). python3 scripts/probes/la_bwd_parts.py"""
import triton.testing

from kernelgen.templates import linear_attention as la

from la_target import K, backward_default, target_inputs

q, k, v, do, g = target_inputs()
config = backward_default("g")
print(config)


def bench(label, fn):
    ms = triton.testing.do_bench(fn, warmup=25, rep=100)
    print(f"{label:48s} {ms:.4f} ms")


def bwd(decay, **need):
    return lambda: la.backward(q, k, v, decay, None, K ** -0.5, None, False, None, None, None, None, do,
                               None, None, None, None, None, config, **need)


bench("fwd g", lambda: la.forward(q, k, v, g, None, K ** -0.5, None, False, None, None, False, None, config))
bench("bwd g, dg", bwd(g, need_dg=True))
bench("bwd g, no dg", bwd(g))
bench("bwd none", bwd(None))
if __import__("os").environ.get("PARTS"):   # each pass alone (round 10)
    for name in ("dq", "dk", "dv"):
        need = {f"need_{n}": n == name for n in ("dq", "dk", "dv")}
        bench(f"  {name} pass only, g, no dg", bwd(g, **need))
        bench(f"  {name} pass only, none", bwd(None, **need))
    bench("  dq+dk passes, g, dg (no dv)", bwd(g, need_dq=False, need_dk=False, need_dv=False, need_dg=True))
for override in ({"x_early": 1}, {"x_early": 1, "dq_warps": 8}, {"dq_warps": 8}, {"chunk": 32, "x_early": 1}):
    config = {**config, **override}
    bench(f"bwd g, dg {override}", bwd(g, need_dg=True))
    config = backward_default("g")
