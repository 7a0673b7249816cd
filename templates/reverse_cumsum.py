"""The decay gradient's reverse cumsum: dg_t = Σ_{t' ≥ t in t's sequence} Σ_k dG[k, t'] per head,
the last step of every decayed chunked family's backward (dL/dg from dL/dG, G = cumsum g).

One kernel walks rows backwards from a block's end with a compensated running total
(``_block_suffix_kernel``). Short sequences are one block each, walked by one program per 4 heads:
a dependent step per 256 rows, so the time grows with T and not with the GPU (B=1, T=65536, H=16:
0.49 ms on an H100 with 4 programs for the whole GPU). Long sequences are cut into blocks of
``SEG`` rows:

    1. ``_block_totals_kernel``: each block's total, Σ over its rows and the partial rows of dG;
    2. ``_block_suffix_kernel``: each block's suffix sums, starting from the sum of the totals of
       the blocks after it in the same sequence.

Two launches and two reads of dG instead of one: 0.065 ms at that shape, 0.025 at B=8, T=4096
(0.039 walking), and slower than the walk for short sequences (T=1000: 0.028 vs 0.013), which is
why ``reverse_cumsum`` picks by length.
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
    """dg over block b of sequence n: the later blocks' totals, then a walk back over its own rows,
    BT rows and BH heads a step. The running total is carried with a compensation term (Kahan): dG
    mixes signs, and its suffix sums may be far smaller than the partial sums they pass through."""
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


# From this many rows a sequence, reverse_cumsum runs in parallel blocks:
# H100, H = 16, 4 partials: T = 4096 0.025 ms vs 0.039 walking, T = 1000 0.028 vs 0.013.
BLOCKS_FROM_T = 2048
# Packed sequences give T as the packed length, a bound on the longest one: the blocks' grid is
# sized by it for every sequence, so with many sequences most of its programs would find nothing.
BLOCKS_MAX_PACKED = 16


def reverse_cumsum(dG: torch.Tensor, dg: torch.Tensor, cu_seqlens: torch.Tensor | None, num_seqs: int,
                   T: int, H: int, partials: int = 1, block_rows: int | None = None) -> torch.Tensor:
    """dg[t, h] = Σ_{t' ≥ t in t's sequence} Σ_k dG[k, t', h].

    dG: fp32 [partials, tokens, H] (or [tokens, H] when partials == 1), tokens = num_seqs·T packed
    (or cu_seqlens[-1] with cu_seqlens, T then a bound on the longest sequence); dg: [..., H]
    holding tokens·H values, any float dtype, written in place. Sequences of BLOCKS_FROM_T rows or
    more (with cu_seqlens: at most BLOCKS_MAX_PACKED of them) run in parallel blocks, of
    ``block_rows`` rows when given (then always); otherwise each is walked from its end by one
    program."""
    if block_rows is not None or (T >= BLOCKS_FROM_T and (cu_seqlens is None or num_seqs <= BLOCKS_MAX_PACKED)):
        return reverse_cumsum_blocks(dG, dg, cu_seqlens, num_seqs, T, H, partials, rows=block_rows or 256)
    # one block a sequence: no totals to add (none is read), the walk takes wide steps over 4 heads;
    # a packed sequence's block spans every token, so T need not bound the longest one here
    tokens = dg.numel() // H
    cu = cu_seqlens if cu_seqlens is not None else dG
    block_h = min(next_pow2(H), 4)
    _block_suffix_kernel[(num_seqs, 1, cdiv(H, block_h))](
        dG, dg, dG, cu, T, partials, tokens, 1, max(T if cu_seqlens is None else tokens, 1), H=H,
        BT=1024 // block_h, BH=block_h, BNB=1, IS_VARLEN=cu_seqlens is not None, num_warps=4)
    return dg


def reverse_cumsum_blocks(dG: torch.Tensor, dg: torch.Tensor, cu_seqlens: torch.Tensor | None, num_seqs: int,
                          T: int, H: int, partials: int, rows: int = 256) -> torch.Tensor:
    """reverse_cumsum's contract (T: every sequence's length, or with cu_seqlens a
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
