"""loglinear_attention on the issue's shapes (bf16): the block pass (one Fenwick stack pass vs one
scan per level), the output kernel, the whole forward and backward, per config variant. Checks the
stacked forward against the per-level one before timing it."""
import sys
import torch, triton
from kernelgen.templates import loglinear_attention as tmpl

SHAPES = [dict(B=8, T=4096, H=16, K=128, V=128, L=13), dict(B=8, T=4096, H=16, K=64, V=64, L=13),
          dict(B=2, T=16384, H=16, K=64, V=64, L=15), dict(B=1, T=131072, H=16, K=128, V=128, L=18)]
FWD_VARIANTS = [{}, {"out_bv": 128}, {"out_warps": 4}, {"out_bv": 128, "out_warps": 4},
                {"scan_bk": 128, "scan_bv": 64}, {"scan_warps": 8, "scan_bk": 128}, {"num_stages": 3}]
fwd_t, bwd_t = tmpl.LogLinearForward(), tmpl.LogLinearBackward()
which = sys.argv[1:] or ["0", "1", "2", "3"]
for si in map(int, which):
    shape = SHAPES[si]
    gen = torch.Generator().manual_seed(0)
    inputs = fwd_t.make_inputs(shape, "bf16", "", "cuda", gen)
    q, k, v, g, lam = (inputs[n] for n in ("q", "k", "v", "g", "level_scales"))
    do = torch.randn_like(v)
    B, T = q.shape[:2]
    scale = q.shape[-1] ** -0.5
    base = fwd_t.default_config(shape)
    print(f"== {shape} default {base}")
    plan = tmpl.make_plan(B, T, int(base["chunk"]), None, None, q.device)
    ref_o, _ = tmpl.forward(q, k, v, g, lam, scale, {**base, "stack": 0}, plan)
    for var in FWD_VARIANTS:
        cfg = {**base, **var}
        problem = fwd_t.check_config(cfg, shape)
        if problem:
            print(f"  {var}: rejected ({problem})"); continue
        plan = tmpl.make_plan(B, T, int(cfg["chunk"]), None, None, q.device)
        line = []
        for stack in (0, 1):
            c = {**cfg, "stack": stack}
            o, _ = tmpl.forward(q, k, v, g, lam, scale, c, plan)
            err = ((o.float() - ref_o.float()).abs().max() / ref_o.float().abs().max()).item()
            blocks = triton.testing.do_bench(lambda: tmpl.block_states(k, v, g, plan, c, None), warmup=20, rep=150)
            full = triton.testing.do_bench(lambda: tmpl.forward(q, k, v, g, lam, scale, c, plan), warmup=20, rep=150)
            line.append(f"stack={stack}: blocks {blocks:.3f} fwd {full:.3f} (rel err {err:.1e})")
        print(f"  fwd {var}: " + " | ".join(line), flush=True)
    if si == 3:
        continue
    bbase = bwd_t.default_config(shape)
    for stack in (0, 1):
        c = {**bbase, "stack": stack}
        plan = tmpl.make_plan(B, T, int(c["chunk"]), None, None, q.device)
        t = triton.testing.do_bench(lambda: tmpl.backward(q, k, v, g, lam, do, scale, c, plan), warmup=10, rep=150)
        print(f"  bwd default stack={stack}: {t:.3f} ms", flush=True)
