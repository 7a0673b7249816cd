"""loglinear_attention backward (bf16) per kernel config, bypassing the template's register
model: the whole backward timed per variant of one kernel's tiles/warps, with the compiled
registers, spills and shared memory of that kernel. Checks each variant's gradients against the
default's."""
import sys
import torch, triton
from kernelgen.templates import loglinear_attention as tmpl
from ll_out import stats

SHAPES = [dict(B=8, T=4096, H=16, K=128, V=128, L=13), dict(B=8, T=4096, H=16, K=64, V=64, L=13)]
DQK = [dict(dqk_bk=bk, dqk_bv=bv, dqk_warps=w) for bk in (32, 64, 128) for bv in (32, 64) for w in (4, 8)]
DV = [dict(dv_bk=bk, dv_bv=bv, dv_warps=w) for bk in (64, 128) for bv in (64, 128) for w in (4, 8)]
SCAN = [dict(scan_bk=bk, scan_bv=bv, scan_warps=w) for bk in (64, 128) for bv in (32, 64) for w in (4,)]


bwd_t = tmpl.LogLinearBackward()
for si in map(int, sys.argv[1:] or ["0"]):
    shape = SHAPES[si]
    inputs = bwd_t.make_inputs(shape, "bf16", "", "cuda", torch.Generator().manual_seed(0))
    args = [inputs[n] for n in ("q", "k", "v", "g", "level_scales", "do")]
    B, T = args[0].shape[:2]
    scale = args[0].shape[-1] ** -0.5
    base = bwd_t.default_config(shape)
    plan = tmpl.make_plan(B, T, int(base["chunk"]), None, None, args[0].device)
    want = [x.float() for x in tmpl.backward(*args, scale, base, plan)]
    ms = triton.testing.do_bench(lambda: tmpl.backward(*args, scale, base, plan), warmup=5, rep=60)
    print(f"== {shape} default {base}: {ms:.3f} ms", flush=True)
    kernels = ((tmpl._bwd_dqk_kernel, DQK), (tmpl._bwd_dv_kernel, DV), (tmpl._bwd_level_scan_kernel, SCAN))
    for kernel, variants in kernels:
        for var in variants:
            cfg = {**base, **var}
            if any(cfg[n] > max(16, triton.next_power_of_2(shape["K" if n.endswith("bk") else "V"]))
                   for n in var if n.endswith(("bk", "bv"))):
                continue
            stats(kernel)
            got = tmpl.backward(*args, scale, cfg, plan)
            torch.cuda.synchronize()
            err = max(((a.float() - b).abs().max() / b.abs().max().clamp_min(1e-6)).item()
                      for a, b in zip(got, want))
            regs = stats(kernel)
            ms = triton.testing.do_bench(lambda: tmpl.backward(*args, scale, cfg, plan), warmup=5, rep=60)
            print(f"  {kernel.fn.__name__} {var}: {ms:.3f} ms  max rel diff {err:.1e}  "
                  f"regs/spills/smem {regs}", flush=True)
