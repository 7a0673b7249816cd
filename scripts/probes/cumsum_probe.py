"""Session 26: the decay gradient's reverse cumsum (chunk_common.reverse_cumsum, 0.035 ms of the
gated linear-attention backward at B=8 T=4096 H=16: 32 programs walk T) against a two-phase form
(block totals, then each block's suffix from the later blocks' totals), same inputs, outputs
compared with float64."""
import torch
import triton
import triton.language as tl

from kernelgen.launch import cdiv, next_pow2
from kernelgen.templates.chunk_common import sequence_bounds
from kernelgen.templates.reverse_cumsum import reverse_cumsum   # (chunk_common's until session 27)


@triton.jit
def _block_totals(dG, totals, cu_seqlens, T, NK, TOKENS, NB, SEG, H: tl.constexpr, BT: tl.constexpr,
                  BH: tl.constexpr, IS_VARLEN: tl.constexpr):
    i_b, i_n, i_hb = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    heads = i_hb * BH + tl.arange(0, BH)
    m_h = heads < H
    acc = tl.zeros([BT, BH], dtype=tl.float32)
    start = bos + i_b * SEG
    for i in range(0, SEG, BT):
        rows = start + i + tl.arange(0, BT)
        m = (rows < eos)[:, None] & m_h[None, :]
        at = rows.to(tl.int64)[:, None] * H + heads[None, :]
        for i_k in range(0, NK):
            acc += tl.load(dG + i_k * TOKENS * H + at, mask=m, other=0.0)
    tl.store(totals + (i_n * NB + i_b) * H + heads, tl.sum(acc, 0), mask=m_h)


@triton.jit
def _block_suffix(dG, dg, totals, cu_seqlens, T, NK, TOKENS, NB, SEG, H: tl.constexpr, BT: tl.constexpr,
                  BH: tl.constexpr, BNB: tl.constexpr, IS_VARLEN: tl.constexpr):
    i_b, i_n, i_hb = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    start = bos + i_b * SEG
    if start < eos:
        heads = i_hb * BH + tl.arange(0, BH)
        m_h = heads < H
        carry = tl.zeros([BH], dtype=tl.float32)
        for j0 in range(0, NB, BNB):
            j = j0 + tl.arange(0, BNB)
            m = (j > i_b) & (j < NB)
            carry += tl.sum(tl.load(totals + (i_n * NB + j)[:, None] * H + heads[None, :],
                                    mask=m[:, None] & m_h[None, :], other=0.0), 0)
        offs = tl.arange(0, BT)
        stop = tl.minimum(start + SEG, eos)
        for i in range(0, tl.cdiv(stop - start, BT)):
            rows = stop - (i + 1) * BT + offs
            m = (rows >= start)[:, None] & m_h[None, :]
            at = rows.to(tl.int64)[:, None] * H + heads[None, :]
            x = tl.zeros([BT, BH], dtype=tl.float32)
            for i_k in range(0, NK):
                x += tl.load(dG + i_k * TOKENS * H + at, mask=m, other=0.0)
            total = tl.sum(x, 0)
            tl.store(dg + at, (total[None, :] - tl.cumsum(x, 0) + x + carry[None, :]).to(dg.dtype.element_ty), mask=m)
            carry += total


def two_phase(dG, dg, cu_seqlens, num_seqs, T, H, partials, seg=256):
    tokens = dg.numel() // H
    seg = max(seg, next_pow2(cdiv(T, 64)))
    nb = cdiv(T, seg)
    block_h = min(next_pow2(H), 16)
    bt = max(16, 1024 // block_h)
    totals = torch.empty(num_seqs, nb, H, device=dG.device, dtype=torch.float32)
    cu = cu_seqlens if cu_seqlens is not None else dG
    grid = (nb, num_seqs, cdiv(H, block_h))
    _block_totals[grid](dG, totals, cu, T, partials, tokens, nb, seg, H=H, BT=bt, BH=block_h,
                        IS_VARLEN=cu_seqlens is not None, num_warps=4)
    _block_suffix[grid](dG, dg, totals, cu, T, partials, tokens, nb, seg, H=H, BT=bt, BH=block_h,
                        BNB=min(64, next_pow2(nb)), IS_VARLEN=cu_seqlens is not None, num_warps=4)
    return dg


DEV = "cuda" if torch.cuda.is_available() else "cpu"   # cpu: TRITON_INTERPRET=1, correctness only
bench = (lambda fn: triton.testing.do_bench(fn, warmup=25, rep=200)) if DEV == "cuda" else (lambda fn: (fn(), 0.0)[1])
cases = ((8, 4096, 16, 4), (1, 65536, 16, 4), (8, 4096, 16, 2), (2, 1000, 3, 3)) if DEV == "cuda" else \
    ((2, 1000, 3, 3), (1, 20000, 2, 1), (3, 300, 16, 2))
for N, T, H, P in cases:
    dG = torch.randn(P, N * T, H, device=DEV)
    want = dG.double().sum(0).view(N, T, H).flip(1).cumsum(1).flip(1).reshape(N * T, H)
    a = torch.empty(N * T, H, device=DEV)
    b = torch.empty(N * T, H, device=DEV)
    ta = bench(lambda: reverse_cumsum(dG, a, None, N, T, H, partials=P))
    tb = bench(lambda: two_phase(dG, b, None, N, T, H, P))
    scale = want.abs().max().item()
    print(f"N={N} T={T} H={H} partials={P}: now {ta * 1e3:.1f} µs (err {(a.double() - want).abs().max().item() / scale:.1e}), "
          f"two-phase {tb * 1e3:.1f} µs (err {(b.double() - want).abs().max().item() / scale:.1e})", flush=True)
cu = torch.tensor([0, 5, 700, 701, 3000], device=DEV, dtype=torch.int32)
dG = torch.randn(2, 3000, 4, device=DEV)
b = torch.empty(3000, 4, device=DEV)
two_phase(dG, b, cu, 4, 3000, 4, 2)
want = torch.cat([dG[:, s:e].double().sum(0).flip(0).cumsum(0).flip(0) for s, e in zip(cu.tolist(), cu.tolist()[1:])])
print("varlen err", ((b.double() - want).abs().max() / want.abs().max()).item())
