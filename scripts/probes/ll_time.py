"""loglinear_attention (bf16) with the template defaults: block pass, whole forward and whole
backward timed per issue shape, with each kernel's registers and spills (run once on main and once
with a candidate template copied over templates/loglinear_attention.py, to compare the two)."""
import sys
import torch, triton
from kernelgen.templates import loglinear_attention as tmpl
from ll_out import backward_case, stats

SHAPES = [dict(B=8, T=4096, H=16, K=128, V=128, L=13), dict(B=8, T=4096, H=16, K=64, V=64, L=13),
          dict(B=2, T=16384, H=16, K=64, V=64, L=15)]
KERNELS = ("_fwd_block_stack_kernel", "_fwd_output_kernel", "_bwd_dqk_kernel", "_bwd_dv_kernel",
           "_bwd_level_scan_kernel")


def bench(fn):
    return triton.testing.do_bench(fn, warmup=10, rep=100)


for si in map(int, sys.argv[1:] or ["0", "1"]):
    shape = SHAPES[si]
    (q, k, v, g, lam, do), scale, fc, bc = backward_case(shape)
    B, T = q.shape[:2]
    plan = tmpl.make_plan(B, T, int(fc["chunk"]), None, None, q.device)
    for name in KERNELS:
        stats(getattr(tmpl, name))
    blocks = bench(lambda: tmpl.block_states(k, v, g, plan, fc, None))
    fwd = bench(lambda: tmpl.forward(q, k, v, g, lam, scale, fc, plan))
    bplan = tmpl.make_plan(B, T, int(bc["chunk"]), None, None, q.device)
    bwd = bench(lambda: tmpl.backward(q, k, v, g, lam, do, scale, bc, bplan))
    regs = {name[1:-7]: stats(getattr(tmpl, name)) for name in KERNELS}
    print(f"== {shape}: blocks {blocks:.3f} fwd {fwd:.3f} (out ~{fwd - blocks:.3f}) bwd {bwd:.3f} "
          f"fwd+bwd ~{fwd + bwd:.3f}\n   regs/spills/smem {regs}", flush=True)
