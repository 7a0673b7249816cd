"""Registers and spills of the linear-attention backward passes, with and without the decay
gradient's row/column terms (session 5: the dg terms cost 0.38 ms; spills or layout traffic?).
python3 scripts/probes/la_regs.py"""
import torch
import triton.testing

from kernelgen.templates import linear_attention as la

from la_target import K, backward_default, target_inputs

q, k, v, do, g = target_inputs()
base = backward_default("g")


def compiled(fn):
    """(name, regs, spills, shared) of every kernel of fn's cache, then the cache emptied."""
    rows = []
    for cache in fn.device_caches.values():
        for kernel in cache[0].values():
            rows.append((kernel.name, kernel.n_regs, kernel.n_spills, kernel.metadata.shared))
        cache[0].clear()
    return rows


def run(label, config, **need):
    call = lambda: la.backward(q, k, v, g, None, K ** -0.5, None, False, None, None, None, None, do,
                               None, None, None, None, None, config, **need)
    call()
    torch.cuda.synchronize()
    stats = compiled(la._fwd_kernel)
    ms = triton.testing.do_bench(call, warmup=25, rep=100)
    print(f"{label:44s} {ms:.4f} ms  regs/spills/smem {stats}")


compiled(la._fwd_kernel)
for over in ({}, {"x_early": 1}, {"dq_warps": 8}, {"chunk": 32}):
    config = {**base, **over}
    run(f"dq+dk {over}", config, need_dq=True, need_dk=True, need_dv=False)
    run(f"dq+dk with r, c {over}", config, need_dq=False, need_dk=False, need_dv=False, need_dg=True)
