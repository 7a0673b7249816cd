"""loglinear_attention forward (bf16) per kernel: the output kernel and the two block passes
(Fenwick stack, one scan per level) per tile/warps/chunk, timed alone, with the compiled kernels'
registers, spills and shared memory (the register model in the template is checked against these)."""
import sys
import torch, triton
from kernelgen.templates import loglinear_attention as tmpl

SHAPES = [dict(B=8, T=4096, H=16, K=128, V=128, L=13), dict(B=8, T=4096, H=16, K=64, V=64, L=13),
          dict(B=2, T=16384, H=16, K=64, V=64, L=15), dict(B=1, T=131072, H=16, K=128, V=128, L=18)]
OUT = [dict(out_bv=bv, out_warps=w, chunk=c) for c in (64, 32) for bv in (32, 64, 128) for w in (4, 8)]
SCAN = [dict(scan_bk=bk, scan_bv=bv, scan_warps=w) for bk in (64, 128) for bv in (32, 64) for w in (4, 8)]
if "--short" in sys.argv:     # round 47: the candidates for new defaults
    sys.argv.remove("--short")
    OUT = [dict(out_bv=128, out_warps=4, chunk=64), dict(out_bv=128, out_warps=4, chunk=64, num_stages=1),
           dict(out_bv=64, out_warps=4, chunk=64), dict(out_bv=64, out_warps=8, chunk=64),
           dict(out_bv=128, out_warps=8, chunk=64), dict(out_bv=128, out_warps=4, chunk=32)]
    SCAN = [dict(scan_bk=64, scan_bv=64, scan_warps=4), dict(scan_bk=128, scan_bv=32, scan_warps=4),
            dict(scan_bk=64, scan_bv=32, scan_warps=4), dict(scan_bk=128, scan_bv=64, scan_warps=4)]
if "--seg" in sys.argv:       # round 50: the stacked pass per segment of chunks
    sys.argv.remove("--seg")
    OUT = [{}]
    SCAN = [dict(scan_bk=64, scan_bv=bv, scan_warps=4, stack_segment=sg) for bv in (64, 32) for sg in (0, 8, 16, 32)]
if "--bv32" in sys.argv:      # the tile that met an illegal address at K = V = 64 in round 46
    sys.argv.remove("--bv32")
    OUT = [dict(out_bv=32, out_warps=4, chunk=64), dict(out_bv=32, out_warps=8, chunk=64)]
    SCAN = []


def stats(fn):
    """(registers, spills, shared bytes) of every compiled variant of ``fn``; forgets them."""
    rows = []
    for cache in fn.device_caches.values():
        for kernel in cache[0].values():
            rows.append((kernel.n_regs, kernel.n_spills, kernel.metadata.shared))
        cache[0].clear()
    return rows


def backward_case(shape):
    """bf16 inputs of ``shape`` with an output gradient (seed 0), the scale, and the template
    defaults (forward, backward)."""
    inputs = tmpl.LogLinearBackward().make_inputs(shape, "bf16", "", "cuda", torch.Generator().manual_seed(0))
    tensors = tuple(inputs[n] for n in ("q", "k", "v", "g", "level_scales", "do"))
    return (tensors, tensors[0].shape[-1] ** -0.5, tmpl.LogLinearForward().default_config(shape),
            tmpl.LogLinearBackward().default_config(shape))


def bench(fn):
    return triton.testing.do_bench(fn, warmup=10, rep=80)


def main():
    fwd_t = tmpl.LogLinearForward()
    for si in map(int, sys.argv[1:] or ["0"]):
        shape = SHAPES[si]
        inputs = fwd_t.make_inputs(shape, "bf16", "", "cuda", torch.Generator().manual_seed(0))
        q, k, v, g, lam = (inputs[n] for n in ("q", "k", "v", "g", "level_scales"))
        B, T = q.shape[:2]
        scale = q.shape[-1] ** -0.5
        base = fwd_t.default_config(shape)
        print(f"== {shape}", flush=True)
        for var in OUT:
            cfg = {**base, **var}
            if cfg["out_bv"] > max(16, triton.next_power_of_2(shape["V"])):
                continue
            plan = tmpl.make_plan(B, T, int(cfg["chunk"]), None, None, q.device)
            blocks_ms = bench(lambda: tmpl.block_states(k, v, g, plan, cfg, None))
            stats(tmpl._fwd_output_kernel)
            total = bench(lambda: tmpl.forward(q, k, v, g, lam, scale, cfg, plan))
            est = tmpl._estimate("out", cfg, shape, 2)[0]
            print(f"  out {var}: output ~{total - blocks_ms:.3f} (fwd {total:.3f}, blocks {blocks_ms:.3f}) "
                  f"regs/spills/smem {stats(tmpl._fwd_output_kernel)} model {est:.0f}", flush=True)
        plan = tmpl.make_plan(B, T, int(base["chunk"]), None, None, q.device)
        for var in SCAN:
            cfg = {**base, **var}
            if cfg["scan_bk"] > max(16, triton.next_power_of_2(shape["K"])):
                continue
            row = []
            for stack, fn in ((1, tmpl._fwd_block_stack_kernel), (0, tmpl._fwd_level_scan_kernel)):
                if stack == 0 and var.get("stack_segment"):
                    continue
                c = {**cfg, "stack": stack}
                ms = bench(lambda: tmpl.block_states(k, v, g, plan, c, None))
                row.append(f"stack={stack} {ms:.3f} {stats(fn)}")
            print(f"  blocks {var}: " + " | ".join(row), flush=True)


if __name__ == "__main__":
    main()
