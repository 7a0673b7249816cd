"""The decay gradient's reverse cumsum over long sequences, in two phases of parallel blocks.

``chunk_common.reverse_cumsum`` walks each sequence from its end in one program: a dependent step
per 64–256 rows, so its time grows with T and not with the GPU (B=1, T=65536, H=16: 0.51 ms on
an H100, 32 programs for the whole GPU). Here a sequence is cut into blocks of ``SEG`` rows:

    1. ``_block_totals_kernel``: each block's total, Σ over its rows and the partial rows of dG;
    2. ``_block_suffix_kernel``: each block's suffix sums, starting from the sum of the totals of
       the blocks after it in the same sequence.

Two launches and two reads of dG instead of one: 0.065 ms at that shape, 0.025 at B=8, T=4096
(0.039 walking), and slower than the walk for short sequences (T=1000: 0.028 vs 0.013), which is
why ``reverse_cumsum`` picks by length. No tuned config depends on these kernels (the families'
templates hash chunk_common, whose walk stays as it was).
"""
import torch
import triton
import triton.language as tl

from kernelgen.launch import cdiv, next_pow2

from .chunk_common import sequence_bounds

MAX_BLOCKS = 64   # blocks per sequence: longer sequences take longer blocks
MIN_ROWS = 16     # the shortest tile (tl.arange) a block is walked in


@triton.jit(do_not_specialize=["T", "NK", "TOKENS", "NB", "SEG"])
def _block_totals_kernel(dG, totals, cu_seqlens, T, NK, TOKENS, NB, SEG, H: tl.constexpr, BT: tl.constexpr,
                         BH: tl.constexpr, IS_VARLEN: tl.constexpr):
    """totals[n, b, h] = Σ over block b's rows of sequence n (0 past its end) and the NK partials."""
    i_n, i_b, i_hb = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    heads = i_hb * BH + tl.arange(0, BH)
    m_h = heads < H
    acc = tl.zeros([BT, BH], dtype=tl.float32)
    start = bos + i_b * SEG
    for i in range(0, SEG, BT):
        rows = start + i + tl.arange(0, BT)
        m = (rows < eos)[:, None] & m_h[None, :]
        at = rows.to(tl.int64)[:, None] * H + heads[None, :]
        part = dG + at   # the partials one tokens·H apart, stepped (partials·tokens·H may pass 2^31)
        for i_k in range(0, NK):
            acc += tl.load(part, mask=m, other=0.0)
            part += TOKENS * H
    tl.store(totals + (i_n * NB + i_b) * H + heads, tl.sum(acc, 0), mask=m_h)


@triton.jit(do_not_specialize=["T", "NK", "TOKENS", "NB", "SEG"])
def _block_suffix_kernel(dG, dg, totals, cu_seqlens, T, NK, TOKENS, NB, SEG, H: tl.constexpr, BT: tl.constexpr,
                         BH: tl.constexpr, BNB: tl.constexpr, IS_VARLEN: tl.constexpr):
    """dg over block b of sequence n: the later blocks' totals, then a walk back over its own rows
    (compensated, as chunk_common's walk: dG mixes signs)."""
    i_n, i_b, i_hb = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    start = bos + i_b * SEG
    if start < eos:
        heads = i_hb * BH + tl.arange(0, BH)
        m_h = heads < H
        carry = tl.zeros([BH], dtype=tl.float32)
        for j0 in range(0, NB, BNB):
            j = j0 + tl.arange(0, BNB)
            later = (j > i_b) & (j < NB)
            carry += tl.sum(tl.load(totals + (i_n * NB + j)[:, None] * H + heads[None, :],
                                    mask=later[:, None] & m_h[None, :], other=0.0), 0)
        lost = tl.zeros([BH], dtype=tl.float32)
        offs = tl.arange(0, BT)
        stop = tl.minimum(start + SEG, eos)
        for i in range(0, tl.cdiv(stop - start, BT)):
            rows = stop - (i + 1) * BT + offs
            m = (rows >= start)[:, None] & m_h[None, :]
            at = rows.to(tl.int64)[:, None] * H + heads[None, :]
            x = tl.zeros([BT, BH], dtype=tl.float32)
            part = dG + at
            for i_k in range(0, NK):
                x += tl.load(part, mask=m, other=0.0)
                part += TOKENS * H
            total = tl.sum(x, 0)
            suffix = total[None, :] - tl.cumsum(x, 0) + x + carry[None, :]
            tl.store(dg + at, suffix.to(dg.dtype.element_ty), mask=m)
            step = total - lost
            new_carry = carry + step
            lost = (new_carry - carry) - step
            carry = new_carry


def block_rows(T: int, rows: int = 256) -> int:
    """Rows a block: ``rows`` rounded up to a power of two and at least MIN_ROWS (a block is
    walked in tiles of at least that many rows), or more where a sequence of T rows would need
    more than MAX_BLOCKS blocks."""
    return max(MIN_ROWS, next_pow2(rows), next_pow2(cdiv(T, MAX_BLOCKS)))


def reverse_cumsum_blocks(dG: torch.Tensor, dg: torch.Tensor, cu_seqlens: torch.Tensor | None, num_seqs: int,
                          T: int, H: int, partials: int, rows: int = 256) -> torch.Tensor:
    """chunk_common.reverse_cumsum's contract (T: every sequence's length, or with cu_seqlens a
    bound on the longest, which sizes the grid), in blocks of ``block_rows(T, rows)`` rows."""
    tokens = dg.numel() // H
    seg = block_rows(T, rows)
    nb = cdiv(max(T, 1), seg)
    block_h = min(next_pow2(H), 16)
    block_t = max(MIN_ROWS, min(1024 // block_h, seg))   # divides seg: both powers of two, seg >= MIN_ROWS
    totals = torch.empty(num_seqs, nb, H, device=dG.device, dtype=torch.float32)
    cu = cu_seqlens if cu_seqlens is not None else dG
    grid = (num_seqs, nb, cdiv(H, block_h))   # (sequences first: the grid's y and z stop at 65535)
    varlen = cu_seqlens is not None
    _block_totals_kernel[grid](dG, totals, cu, T, partials, tokens, nb, seg, H=H, BT=block_t, BH=block_h,
                               IS_VARLEN=varlen, num_warps=4)
    _block_suffix_kernel[grid](dG, dg, totals, cu, T, partials, tokens, nb, seg, H=H, BT=block_t, BH=block_h,
                               BNB=min(MAX_BLOCKS, next_pow2(nb)), IS_VARLEN=varlen, num_warps=4)
    return dg
