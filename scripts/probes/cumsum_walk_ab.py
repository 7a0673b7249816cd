"""Session 27: reverse_cumsum's walk (short sequences) is now _block_suffix_kernel over one block a
sequence. Times it against the walk kernel it replaced (chunk_common's, as it ran to session 26,
kept here), and the blocks path, same inputs, outputs compared with float64."""
import torch
import triton
import triton.language as tl

from kernelgen.launch import cdiv, next_pow2
from kernelgen.templates.chunk_common import sequence_bounds
from kernelgen.templates import reverse_cumsum as module
from kernelgen.templates.reverse_cumsum import reverse_cumsum


@triton.jit
def _old_walk(dG, dg, cu_seqlens, T, NK, TOKENS, H: tl.constexpr, BT: tl.constexpr, BH: tl.constexpr,
              IS_VARLEN: tl.constexpr):
    i_n, i_hb = tl.program_id(0), tl.program_id(1)
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    heads = i_hb * BH + tl.arange(0, BH)
    m_h = heads < H
    carry = tl.zeros([BH], dtype=tl.float32)
    lost = tl.zeros([BH], dtype=tl.float32)
    offs = tl.arange(0, BT)
    for i in range(0, tl.cdiv(eos - bos, BT)):
        rows = eos - (i + 1) * BT + offs
        m = (rows >= bos)[:, None] & m_h[None, :]
        at = rows.to(tl.int64)[:, None] * H + heads[None, :]
        x = tl.zeros([BT, BH], dtype=tl.float32)
        for i_k in range(0, NK):
            x += tl.load(dG + i_k * TOKENS * H + at, mask=m, other=0.0)
        total = tl.sum(x, 0)
        suffix = total[None, :] - tl.cumsum(x, 0) + x + carry[None, :]
        tl.store(dg + at, suffix.to(dg.dtype.element_ty), mask=m)
        step = total - lost
        new_carry = carry + step
        lost = (new_carry - carry) - step
        carry = new_carry


def old_walk(dG, dg, B, T, H, partials):
    block_h = min(next_pow2(H), 4)
    _old_walk[(B, cdiv(H, block_h))](dG, dg, dG, T, partials, B * T, H=H, BT=1024 // block_h, BH=block_h,
                                     IS_VARLEN=False, num_warps=4)
    return dg


def new_walk(dG, dg, B, T, H, partials):
    module.BLOCKS_FROM_T, saved = 1 << 40, module.BLOCKS_FROM_T   # the walk at every length
    try:
        return reverse_cumsum(dG, dg, None, B, T, H, partials=partials)
    finally:
        module.BLOCKS_FROM_T = saved


def exact(dG, B, T, H):
    return dG.double().sum(0).view(B, T, H).flip(1).cumsum(1).flip(1).reshape(B * T, H)


for B, T, H, P in ((8, 4096, 16, 4), (8, 1024, 16, 4), (2, 1000, 3, 1), (32, 512, 32, 2), (1, 65536, 16, 4)):
    dG = torch.randn(P, B * T, H, device="cuda")
    want = exact(dG, B, T, H)
    runs = {"old walk": lambda out: old_walk(dG, out, B, T, H, P),
            "new walk": lambda out: new_walk(dG, out, B, T, H, P),
            "default": lambda out: reverse_cumsum(dG, out, None, B, T, H, partials=P)}
    row = []
    for name, fn in runs.items():
        out = torch.empty(B * T, H, device="cuda")
        fn(out)
        err = ((out.double() - want).abs().max() / want.abs().max()).item()
        ms = triton.testing.do_bench(lambda: fn(out), warmup=20, rep=200)
        row.append(f"{name} {ms * 1e3:.1f} us (err {err:.1e})")
    print(f"B={B} T={T} H={H} partials={P}: " + " | ".join(row), flush=True)
