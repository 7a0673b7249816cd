"""Chunk building blocks shared by the chunked attention families (linear, log-linear, ...).

Every helper is a ``@triton.jit`` function inlined into the caller's kernel. They take and return
register tiles, so one kernel can chain them without touching memory:

    bos, eos          = sequence_bounds(...)       where sequence n lives in the packed token axis
    g                 = load_log_decay(...)        per-token log decay of a chunk, 0 past the end
    G = tl.cumsum(g)                               chunk-local cumulative log decay (fp32)
    D                 = causal_decay(G, ...)       exp(G_t − G_s) for s ≤ t, 0 above the diagonal
    x                 = feature_map(x, FEATURE)    φ applied in registers, fp32
    dx                = feature_map_grad(x, ...)   φ'(x) for the chain rule
    xx                = outer_features(x, ...)     vec(x ⊗ x), [BT, BK*BK] (second-order maps)

and one host-launched step, ``reverse_cumsum``: dg_t = Σ_{t' ≥ t} dG_t' per sequence and head,
the last step of every decayed family's backward (dL/dg from dL/dG, G = cumsum g): a walk from
each sequence's end here, or for long sequences the parallel blocks of reverse_cumsum_blocks.py.

Decay factors are always exponentials of *differences* of cumulative sums, masked before the exp,
so they never overflow for g ≤ 0 however long the chunk.
"""
import torch
import triton
import triton.language as tl

from kernelgen.launch import cdiv, next_pow2

# Feature maps, as the kernels' FEATURE constexpr (constexpr globals so kernels may read them).
FEAT_IDENTITY = tl.constexpr(0)
FEAT_ELU1 = tl.constexpr(1)
FEAT_RELU = tl.constexpr(2)
FEAT_TAYLOR2 = tl.constexpr(3)

FEATURE_CODES = {None: 0, "identity": 0, "elu1": 1, "relu": 2, "taylor2": 3}


@triton.jit
def sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN: tl.constexpr):
    """First and one-past-last token row (int64) of sequence ``i_n`` in the packed token axis."""
    if IS_VARLEN:
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        eos = tl.load(cu_seqlens + i_n + 1).to(tl.int64)
    else:
        bos = i_n.to(tl.int64) * T
        eos = bos + T
    return bos, eos


@triton.jit
def load_log_decay(g, g_offsets, mask, gamma, USE_G: tl.constexpr, USE_GAMMA: tl.constexpr):
    """Log decay of each row of a chunk in fp32: g[row] (data-dependent), gamma (constant per
    head) or 0; rows outside ``mask`` get 0 so cumulative sums stop growing past the end."""
    if USE_G:
        b_g = tl.load(g + g_offsets, mask=mask, other=0.0).to(tl.float32)
    elif USE_GAMMA:
        b_g = tl.where(mask, gamma, 0.0)
    else:
        b_g = tl.zeros(g_offsets.shape, dtype=tl.float32)
    return b_g


@triton.jit
def causal_decay(b_G, BT: tl.constexpr, HAS_DECAY: tl.constexpr, TRANSPOSED: tl.constexpr = False):
    """[BT, BT] fp32: exp(G_t − G_s) where s ≤ t, else 0; rows are t (queries) and columns s
    (keys), or the transpose (rows s, columns t) with TRANSPOSED, for key-major products."""
    o_t = tl.arange(0, BT)
    if TRANSPOSED:
        causal = o_t[:, None] <= o_t[None, :]
        diff = b_G[None, :] - b_G[:, None]
    else:
        causal = o_t[:, None] >= o_t[None, :]
        diff = b_G[:, None] - b_G[None, :]
    if HAS_DECAY:
        b_D = tl.exp(tl.where(causal, diff, float("-inf")))
    else:
        b_D = tl.where(causal, 1.0, 0.0)
    return b_D


@triton.jit
def chunk_total(b_G):
    """The last row of an inclusive cumsum over BT rows, i.e. the chunk's total log decay, bitwise
    what the cumsum gave that row. A separate tl.sum rounds differently, so Γ(last token → chunk
    end) = exp(total − G_last) would be 1 ± ulp(|G|) rather than 1: 1e-4 relative on the state
    under strong decay (g = −20)."""
    BT: tl.constexpr = b_G.shape[0]
    return tl.sum(tl.where(tl.arange(0, BT) == BT - 1, b_G, 0.0), 0)


@triton.jit
def feature_map(x, FEATURE: tl.constexpr):
    """φ(x) in fp32: identity (and taylor2's linear part), elu(x)+1, or relu(x)."""
    x = x.to(tl.float32)
    if FEATURE == FEAT_ELU1:
        x = tl.where(x > 0, x + 1.0, tl.exp(tl.minimum(x, 0.0)))
    elif FEATURE == FEAT_RELU:
        x = tl.maximum(x, 0.0)
    return x


@triton.jit
def feature_map_in_dtype(x, mask, FEATURE: tl.constexpr):
    """φ(x) kept in x's dtype (tensor-core operand); entries outside ``mask`` are 0. Identity and
    taylor2 (whose linear part is the identity) return x untouched: loads already zero-fill."""
    if FEATURE == FEAT_ELU1:
        x = tl.where(mask, feature_map(x, FEATURE), 0.0).to(x.dtype)
    elif FEATURE == FEAT_RELU:
        x = tl.where(x > 0, x, 0.0).to(x.dtype)
    return x


@triton.jit
def feature_map_grad(x, FEATURE: tl.constexpr):
    """φ'(x) in fp32 (1 for identity)."""
    x = x.to(tl.float32)
    if FEATURE == FEAT_ELU1:
        d = tl.where(x > 0, 1.0, tl.exp(tl.minimum(x, 0.0)))
    elif FEATURE == FEAT_RELU:
        d = tl.where(x > 0, 1.0, 0.0)
    else:
        d = tl.full(x.shape, 1.0, tl.float32)
    return d


@triton.jit
def outer_features(x, BT: tl.constexpr, BK: tl.constexpr):
    """vec(x_t ⊗ x_t) per row: [BT, BK] -> [BT, BK*BK], column i*BK + j holds x_i·x_j, in x's dtype
    (a half-precision product rounds once, as a cast of the fp32 product would)."""
    return tl.reshape(x[:, :, None] * x[:, None, :], (BT, BK * BK))


@triton.jit
def outer_features_grad(dxx, x, BT: tl.constexpr, BK: tl.constexpr):
    """Chain rule of ``outer_features``: d/dx_m of Σ_ij dxx_ij x_i x_j = Σ_j dxx_mj x_j + Σ_i dxx_im x_i."""
    d3 = tl.reshape(dxx, (BT, BK, BK))
    return tl.sum(d3 * x[:, None, :], 2) + tl.sum(d3 * x[:, :, None], 1)


@triton.jit(do_not_specialize=["T", "NK", "TOKENS"])
def _reverse_cumsum_kernel(dG, dg, cu_seqlens, T, NK, TOKENS, H: tl.constexpr, BT: tl.constexpr,
                           BH: tl.constexpr, IS_VARLEN: tl.constexpr):
    """dg_t = Σ_{t' ≥ t in t's sequence} Σ_k dG[k, t'] for one sequence and BH heads, walking
    backwards BT rows at a time. The running totals are carried with a compensation term (Kahan):
    dG mixes signs, and its suffix sums may be far smaller than the partial sums they pass through.
    The walk is latency-bound (a dependent load per step), so a step covers several heads and many
    rows: a few long steps rather than a program per head taking T/64 short ones."""
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


# From this many rows a sequence, reverse_cumsum runs in parallel blocks (reverse_cumsum_blocks):
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
    tokens = dg.numel() // H
    cu = cu_seqlens if cu_seqlens is not None else dG
    block_h = min(next_pow2(H), 4)
    _reverse_cumsum_kernel[(num_seqs, cdiv(H, block_h))](
        dG, dg, cu, T, partials, tokens, H=H, BT=1024 // block_h, BH=block_h,
        IS_VARLEN=cu_seqlens is not None, num_warps=4)
    return dg


# (imported last: it builds on sequence_bounds above)
from .reverse_cumsum_blocks import reverse_cumsum_blocks  # noqa: E402
