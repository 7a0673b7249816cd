"""Where the linear-attention backward's time goes: each pass alone, with and without the decay
gradient (H100 probe, session 4). python3 scripts/probes/la_bwd_parts.py"""
import torch
import triton.testing

from kernelgen.templates import get_template
from kernelgen.templates import linear_attention as la

B, T, H, K, V = 8, 4096, 16, 128, 128
gen = torch.Generator(device="cuda").manual_seed(0)
q, k, v, do = (torch.randn(B, T, H, d, device="cuda", generator=gen, dtype=torch.bfloat16) for d in (K, K, V, V))
g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, device="cuda", generator=gen) + 2.0)
shape = {"B": B, "T": T, "H": H, "K": K, "V": V, "F": K}
config = get_template("linear_attention.bwd").default_for(shape, None, "g")
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
    config = get_template("linear_attention.bwd").default_for(shape, None, "g")
