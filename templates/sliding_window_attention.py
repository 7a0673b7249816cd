"""Sliding-window softmax attention: Triton kernels, their launchers and the tunable templates.

Math (kernelgen/reference/sliding_window_attention.py): query i attends keys j with
i - W < j <= i in its own sequence, o_i = softmax_j(scale * q_i . k_j) v_j, softmax in fp32.
Layout [B, T, heads, D] (fla / flash-attn); query head hq reads kv head hq // (HQ // H).

Forward (flash-attention-2): one program per (query block, query head[, window split]). The key
blocks a query block [m0, m0 + BLOCK_M) touches split into three ranges, see ``_key_ranges``:
a masked left edge (keys that fall out of the window for the later rows), an unmasked interior
(every key visible to every row: no mask math at all), and a masked diagonal edge (causality).
Online softmax in base 2 with log2(e) folded into the score scale. Optional split of the key
range over SPLITS programs (partial results in fp32, then ``_fwd_combine_kernel``) for long
windows with few query blocks. TMA (D >= 128 by default): K, V tiles arrive by tensor-descriptor
copies on mbarriers instead of per-thread cp.async address math (-20% instructions per key block).
The row log-sum-exp is saved for backward. ANCHOR: the diagonal blocks run first (online), the
rest of the window reuses their row max as a fixed reference (no rescale per block), and a program
whose weights outgrow what the dtype holds redoes its window online (see ``_fwd_kernel``); with
FUSED both phases are one loop over the rotated block order (``_fwd_anchored_loop``).

Backward (FA2, no atomics): ``_bwd_dq_kernel`` holds one query block and walks its key blocks like
the forward, and also writes delta = rowsum(dO * O) of its rows (no separate pass over O, dO);
then ``_bwd_dkdv_kernel`` holds one key block and walks the query blocks whose windows contain it
(and every query head of its GQA group, so dK/dV are summed in registers). Both mask only their
edge ranges, in three loops or (FUSED) one loop with the mask as a branch; TMA: the streamed tiles
(K, V of dQ; Q, dO of dK/dV) arrive by tensor-descriptor copies, as in the forward.

Decode: one query per sequence against a [B, S, H, D] cache; the window [L - W, L) is split over
SPLITS programs (the GQA group of query heads shares one program, padded to 16 rows for tl.dot);
the last program of each (sequence, kv head) to finish merges the partial softmaxes (one launch).
"""
from __future__ import annotations


import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from kernelgen.launch import cdiv, current_stream_handle, tma_loads, next_pow2
from kernelgen.reference import sliding_window_attention as reference
from kernelgen.template import DTYPES, Config, Shape, Template, Tensors
from kernelgen.templates import register

HEAD_DIMS = (32, 64, 128, 256)
LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)
# Below every real base-2 score: rows start here so a fully masked block gives p = 0, not NaN.
NEG_BIG = tl.constexpr(-1.0e30)
# H100-like limits when no GPU profile is given (CPU interpreter, offline grids).
DEFAULT_SHARED_MEMORY = 232448
DEFAULT_SMS = 132
# Register budgets per thread for the tile models in check_config, calibrated on sm_90 compiles
# (Triton 3.9, ptxas -v): past them the hot loop spills to local memory. dK/dV: 64 keys x 64
# queries at D = 128 on 4 warps models 256; in the fused loop it compiles to 246 registers (Triton
# 3.9) / 255 with 16 bytes spilled outside the loop (3.6) and is the fastest dK/dV tile there
# (round 182); the three loops spill 24-152 bytes at that tile, so they keep 224.
FWD_TILE_REGISTERS = 160      # (acc + scores) fp32
DKDV_TILE_REGISTERS = 256     # (dK + dV acc + P + dP) fp32 + K, V bf16, one fused loop
DKDV_THREE_LOOP_REGISTERS = 224   # the same tiles in three loops (FUSED = 0)
DKDV_D256_REGISTERS = 160     # D = 256, either loop form
DQ_TILE_REGISTERS = 288       # (dQ acc + P + dP) fp32 + Q, dO bf16


# ----------------------------------------------------------------------------------------------
# Shared building blocks
# ----------------------------------------------------------------------------------------------
@triton.jit
def _in_window(rows, cols, window):
    """Query position ``rows`` sees key position ``cols`` (tiles broadcast): i - W < j <= i."""
    distance = rows - cols
    return (distance >= 0) & (distance < window)


@triton.jit
def _key_ranges(m0, seq_len, window, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Key blocks that queries [m0, m0 + BLOCK_M) reach, lo <= full_lo <= full_hi <= hi:
    [full_lo, full_hi) is visible to every row (j > m0 + BLOCK_M - 1 - W and j <= m0);
    [lo, full_lo) needs the mask but lies below m0 + 1 <= T (no bounds check);
    [full_hi, hi) needs the mask and may cross the sequence end."""
    lo = tl.maximum(m0 - window + 1, 0) // BLOCK_N * BLOCK_N
    hi = tl.minimum(m0 + BLOCK_M, seq_len)
    full_hi = tl.minimum((m0 + 1) // BLOCK_N * BLOCK_N, hi)
    full_lo = tl.cdiv(tl.maximum(m0 + BLOCK_M - window, 0), BLOCK_N) * BLOCK_N
    full_lo = tl.minimum(tl.maximum(full_lo, lo), full_hi)
    return lo, full_lo, full_hi, hi


@triton.jit
def _query_ranges(n0, seq_len, window, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Query blocks whose windows contain keys [n0, n0 + BLOCK_N): [lo, full_lo) and [full_hi, hi)
    need the mask, [full_lo, full_hi) sees every key (i >= n0 + BLOCK_N - 1, i < n0 + W, i < T)."""
    lo = n0 // BLOCK_M * BLOCK_M
    hi = tl.minimum(n0 + BLOCK_N + window - 1, seq_len)
    full_lo = tl.cdiv(n0 + BLOCK_N - 1, BLOCK_M) * BLOCK_M
    full_hi = tl.minimum(n0 + window, seq_len) // BLOCK_M * BLOCK_M
    full_lo = tl.minimum(tl.maximum(full_lo, lo), hi)
    full_hi = tl.maximum(tl.minimum(full_hi, hi), full_lo)
    return lo, full_lo, full_hi, hi


@triton.jit
def _sequence(b, block, cu_seqlens, block_table, T, IS_VARLEN: tl.constexpr):
    """(sequence start token, sequence length, block index in it; -1 for a padding program)."""
    if IS_VARLEN:
        seq = tl.load(block_table + 2 * block)
        index = tl.load(block_table + 2 * block + 1)
        safe = tl.maximum(seq, 0)
        bos = tl.load(cu_seqlens + safe).to(tl.int32)
        seq_len = tl.load(cu_seqlens + safe + 1).to(tl.int32) - bos
        return bos, seq_len, tl.where(seq >= 0, index, -1)
    else:
        return b * T, T, block


# ----------------------------------------------------------------------------------------------
# Forward
# ----------------------------------------------------------------------------------------------
@triton.jit
def _block_offsets(first, seq_len, STRIDE: tl.constexpr, BLOCK: tl.constexpr, HEAD_DIM: tl.constexpr):
    """[BLOCK, HEAD_DIM] offsets of rows first.. relative to row ``first``, rows past the sequence
    end clamped onto its last row: loads stay in bounds with no load mask (one load form for the
    block that crosses the end and every other), and the score mask drops those rows."""
    rows = tl.minimum(first + tl.arange(0, BLOCK), seq_len - 1) - first
    return rows[:, None] * STRIDE + tl.arange(0, HEAD_DIM)[None, :]


@triton.jit
def _window_mask(s, offs_m, n0, window, BLOCK_N: tl.constexpr):
    """Scores of keys n0.. outside each row's window set to -inf. 0 <= i - j < W is one unsigned
    compare, and (i - n0) is per row: one subtract, compare and select per score."""
    distance = (offs_m - n0)[:, None] - tl.arange(0, BLOCK_N)[None, :]
    return tl.where(distance.to(tl.uint32, bitcast=True) < window, s, float("-inf"))


@triton.jit
def _fwd_softmax_step(acc, l_i, m_i, s, v, qk_scale, PRECISION: tl.constexpr, ANCHORED: tl.constexpr):
    """One online-softmax update with the scores s of one key block and its values v.
    ANCHORED: m_i is held fixed (no row max, no rescale of acc and l_i; see ``_fwd_kernel``)."""
    if ANCHORED:
        p = tl.math.exp2(s * qk_scale - m_i[:, None])
        l_i = l_i + tl.sum(p, 1)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=PRECISION)
        return acc, l_i, m_i
    else:
        # qk_scale > 0, so the scaled row max is the max scaled; the scale folds into one FMA.
        m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
        p = tl.math.exp2(s * qk_scale - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=PRECISION)
        return acc, l_i, m_new


@triton.jit
def _fwd_loop(acc, l_i, m_i, q, k_base, v_base, offs_m, start, end, seq_len, window, qk_scale,
              STRIDE_KV: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
              MASK: tl.constexpr, BOUNDS: tl.constexpr, PRECISION: tl.constexpr, ANCHORED: tl.constexpr = False):
    """Online softmax over key blocks [start, end). MASK: window-mask the scores; BOUNDS: blocks
    may run past the sequence end (the diagonal range); ANCHORED: the row max held fixed."""
    tile = tl.arange(0, BLOCK_N)[:, None] * STRIDE_KV + tl.arange(0, HEAD_DIM)[None, :]
    # Scalar block pointers advance through the loop; the tile offsets are loop-invariant.
    k_block = k_base + start.to(tl.int64) * STRIDE_KV
    v_block = v_base + start.to(tl.int64) * STRIDE_KV
    for n0 in range(start, end, BLOCK_N):
        if BOUNDS:
            rows = _block_offsets(n0, seq_len, STRIDE_KV, BLOCK_N, HEAD_DIM)
            k = tl.load(k_block + rows)
            v = tl.load(v_block + rows)
        else:
            k = tl.load(k_block + tile)
            v = tl.load(v_block + tile)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        if MASK:
            s = _window_mask(s, offs_m, n0, window, BLOCK_N)
        acc, l_i, m_i = _fwd_softmax_step(acc, l_i, m_i, s, v, qk_scale, PRECISION, ANCHORED)
        k_block += BLOCK_N * STRIDE_KV
        v_block += BLOCK_N * STRIDE_KV
    return acc, l_i, m_i


@triton.jit
def _fwd_fused_loop(acc, l_i, m_i, q, k_src, v_src, kv_row, kv_col, offs_m, start, full_lo, full_hi, end, seq_len,
                    window, qk_scale, STRIDE_KV: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
                    TMA: tl.constexpr, PRECISION: tl.constexpr):
    """``_fwd_loop`` over [start, end) as one loop: the mask is a runtime branch taken only outside
    [full_lo, full_hi), so the software pipeline is not drained between the three ranges.
    TMA: k_src, v_src are [tokens, H * D] tensor descriptors read at (kv_row + key, kv_col); else
    they point at key 0 of this sequence and kv head."""
    k_block = k_src
    v_block = v_src
    if not TMA:
        k_block += start.to(tl.int64) * STRIDE_KV
        v_block += start.to(tl.int64) * STRIDE_KV
    for n0 in range(start, end, BLOCK_N):
        if TMA:
            # Keys past the sequence end read the next sequence's rows or TMA's zero fill; the
            # diagonal mask drops them.
            k = k_src.load([kv_row + n0, kv_col])
            v = v_src.load([kv_row + n0, kv_col])
        else:
            rows = _block_offsets(n0, seq_len, STRIDE_KV, BLOCK_N, HEAD_DIM)
            k = tl.load(k_block + rows)
            v = tl.load(v_block + rows)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        if (n0 < full_lo) | (n0 >= full_hi):
            s = _window_mask(s, offs_m, n0, window, BLOCK_N)
        acc, l_i, m_i = _fwd_softmax_step(acc, l_i, m_i, s, v, qk_scale, PRECISION, False)
        if not TMA:
            k_block += BLOCK_N * STRIDE_KV
            v_block += BLOCK_N * STRIDE_KV
    return acc, l_i, m_i


@triton.jit
def _fwd_range(acc, l_i, m_i, q, k_src, v_src, kv_row, kv_col, offs_m, start, full_lo, full_hi, end, seq_len,
               window, qk_scale, STRIDE_KV: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
               FUSED: tl.constexpr, TMA: tl.constexpr, PRECISION: tl.constexpr, ANCHORED: tl.constexpr):
    """The key blocks [start, end) of one query block, masked outside [full_lo, full_hi): one
    pipelined loop (FUSED) or three loops, left edge (window mask), interior (no mask at all) and
    diagonal (causal mask, sequence end). Without TMA, k_src / v_src point at key 0 of the sequence
    and kv head. ANCHORED only applies to the three loops: the fused anchored window is
    ``_fwd_anchored_loop``."""
    if FUSED:
        acc, l_i, m_i = _fwd_fused_loop(acc, l_i, m_i, q, k_src, v_src, kv_row, kv_col, offs_m, start, full_lo,
                                        full_hi, end, seq_len, window, qk_scale, STRIDE_KV, HEAD_DIM, BLOCK_N, TMA,
                                        PRECISION)
    else:
        acc, l_i, m_i = _fwd_loop(acc, l_i, m_i, q, k_src, v_src, offs_m, start, tl.minimum(full_lo, end),
                                  seq_len, window, qk_scale, STRIDE_KV, HEAD_DIM, BLOCK_N, True, False, PRECISION,
                                  ANCHORED)
        acc, l_i, m_i = _fwd_loop(acc, l_i, m_i, q, k_src, v_src, offs_m, tl.maximum(full_lo, start),
                                  tl.minimum(full_hi, end), seq_len, window, qk_scale, STRIDE_KV, HEAD_DIM, BLOCK_N,
                                  False, False, PRECISION, ANCHORED)
        acc, l_i, m_i = _fwd_loop(acc, l_i, m_i, q, k_src, v_src, offs_m, tl.maximum(full_hi, start), end,
                                  seq_len, window, qk_scale, STRIDE_KV, HEAD_DIM, BLOCK_N, True, True, PRECISION,
                                  ANCHORED)
    return acc, l_i, m_i


@triton.jit
def _fwd_anchored_loop(acc, l_i, m_i, q, k_src, v_src, kv_row, kv_col, offs_m, lo, full_lo, full_hi, hi, seq_len,
                       window, qk_scale, STRIDE_KV: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
                       TMA: tl.constexpr, PRECISION: tl.constexpr):
    """The anchored window (see ``_fwd_kernel``) as one pipelined loop: the diagonal blocks
    [full_hi, hi) first, online (they set each row's reference max), then [lo, full_hi) with the max
    held, masked outside [full_lo, full_hi). One loop over the rotated block order rather than two,
    so the load pipeline is not drained and refilled between them (H100, bf16, D = 128 W = 512,
    round 189: T = 65536 0.753-0.791 -> 0.704-0.726 ms, B = 8 0.344-0.351 either way).
    TMA: k_src, v_src are tensor descriptors read at (kv_row + key, kv_col); else they point at
    key 0 of this sequence and kv head."""
    n_diag = tl.cdiv(hi - full_hi, BLOCK_N)
    n_all = n_diag + (full_hi - lo) // BLOCK_N
    for j in range(0, n_all):
        diag = j < n_diag
        n0 = tl.where(diag, full_hi + j * BLOCK_N, lo + (j - n_diag) * BLOCK_N)
        if TMA:
            k = k_src.load([kv_row + n0, kv_col])
            v = v_src.load([kv_row + n0, kv_col])
        else:
            rows = _block_offsets(n0, seq_len, STRIDE_KV, BLOCK_N, HEAD_DIM)
            k = tl.load(k_src + n0.to(tl.int64) * STRIDE_KV + rows)
            v = tl.load(v_src + n0.to(tl.int64) * STRIDE_KV + rows)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        if (n0 < full_lo) | (n0 >= full_hi):
            s = _window_mask(s, offs_m, n0, window, BLOCK_N)
        if diag:   # the online step's max and rescale; the product is the anchored step's
            m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
            alpha = tl.math.exp2(m_i - m_new)
            acc = acc * alpha[:, None]
            l_i = l_i * alpha
            m_i = m_new
        acc, l_i, m_i = _fwd_softmax_step(acc, l_i, m_i, s, v, qk_scale, PRECISION, True)
    return acc, l_i, m_i


@triton.jit
def _fwd_kernel(q, k, v, o, lse, o_split, lse_split, cu_seqlens, block_table, qk_scale, T, window,
                HQ: tl.constexpr, H: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                BLOCK_N: tl.constexpr, SPLITS: tl.constexpr, FUSED: tl.constexpr, TMA: tl.constexpr,
                IS_VARLEN: tl.constexpr, PRECISION: tl.constexpr, ANCHOR: tl.constexpr = False,
                ANCHOR_LIMIT: tl.constexpr = 0.0):
    G: tl.constexpr = HQ // H
    pid_m, pid_bh, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    # The G query heads of one kv head are neighbours in launch order: they share K/V in L2.
    block, hq = pid_m // G, (pid_bh % H) * G + pid_m % G
    b = pid_bh // H
    if not IS_VARLEN:
        block = tl.cdiv(T, BLOCK_M) - 1 - block   # latest (for causal: heaviest) blocks first
    bos, seq_len, block = _sequence(b, block, cu_seqlens, block_table, T, IS_VARLEN)
    if block < 0:
        return
    m0 = block * BLOCK_M
    STRIDE_Q: tl.constexpr = HQ * HEAD_DIM
    STRIDE_KV: tl.constexpr = H * HEAD_DIM
    offs_m = m0 + tl.arange(0, BLOCK_M)
    row_ok = offs_m < seq_len
    q_offset = ((bos + m0).to(tl.int64) * HQ + hq) * HEAD_DIM
    q_tile = tl.load(q + q_offset + _block_offsets(m0, seq_len, STRIDE_Q, BLOCK_M, HEAD_DIM))
    if TMA:
        k_src, v_src = k, v
    else:
        kv_offset = (bos.to(tl.int64) * H + pid_bh % H) * HEAD_DIM
        k_src, v_src = k + kv_offset, v + kv_offset

    lo, full_lo, full_hi, hi = _key_ranges(m0, seq_len, window, BLOCK_M, BLOCK_N)
    if SPLITS > 1:
        per_split = tl.cdiv(tl.cdiv(hi - lo, BLOCK_N), SPLITS) * BLOCK_N
        lo = lo + split * per_split
        hi = tl.minimum(hi, lo + per_split)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], NEG_BIG, dtype=tl.float32)
    kv_col = (pid_bh % H) * HEAD_DIM
    if ANCHOR:
        # The diagonal blocks first, online: they hold every row's own key, so each row's max
        # there is one of its real scores. The rest of the window reuses that max as a fixed
        # reference: no row max, no rescale of acc and l_i per block (a third of the softmax's
        # instructions). Exact as long as no score lies far above it: p <= l_i bounds every
        # weight, so l_i <= ANCHOR_LIMIT (what p's cast to the value dtype and acc hold without
        # overflow) means nothing overflowed; else (a key outweighing the diagonal block's best
        # by more than that, or non-finite inputs) the program redoes its window online. Weights
        # far below the reference underflow only where the diagonal's own weight (>= 1 in l_i)
        # dwarfs them anyway.
        if FUSED:
            acc, l_i, m_i = _fwd_anchored_loop(acc, l_i, m_i, q_tile, k_src, v_src, bos, kv_col, offs_m, lo, full_lo,
                                               full_hi, hi, seq_len, window, qk_scale, STRIDE_KV, HEAD_DIM, BLOCK_N,
                                               TMA, PRECISION)
        else:
            acc, l_i, m_i = _fwd_range(acc, l_i, m_i, q_tile, k_src, v_src, bos, kv_col, offs_m, full_hi, full_lo,
                                       full_hi, hi, seq_len, window, qk_scale, STRIDE_KV, HEAD_DIM, BLOCK_N, FUSED,
                                       TMA, PRECISION, False)
            acc, l_i, m_i = _fwd_range(acc, l_i, m_i, q_tile, k_src, v_src, bos, kv_col, offs_m, lo, full_lo,
                                       full_hi, full_hi, seq_len, window, qk_scale, STRIDE_KV, HEAD_DIM, BLOCK_N,
                                       FUSED, TMA, PRECISION, True)
        overflow = row_ok & ~(l_i <= ANCHOR_LIMIT)   # also true for NaN
        if tl.max(overflow.to(tl.int32), 0) > 0:
            acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
            l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
            m_i = tl.full([BLOCK_M], NEG_BIG, dtype=tl.float32)
            acc, l_i, m_i = _fwd_range(acc, l_i, m_i, q_tile, k_src, v_src, bos, kv_col, offs_m, lo, full_lo,
                                       full_hi, hi, seq_len, window, qk_scale, STRIDE_KV, HEAD_DIM, BLOCK_N, FUSED,
                                       TMA, PRECISION, False)
    else:
        acc, l_i, m_i = _fwd_range(acc, l_i, m_i, q_tile, k_src, v_src, bos, kv_col, offs_m, lo, full_lo, full_hi,
                                   hi, seq_len, window, qk_scale, STRIDE_KV, HEAD_DIM, BLOCK_N, FUSED, TMA, PRECISION,
                                   False)

    has_keys = l_i > 0.0   # false only on padding rows and on rows an empty split never saw
    l_i = tl.where(has_keys, l_i, 1.0)
    out = acc / l_i[:, None]
    tile = tl.arange(0, BLOCK_M)[:, None] * STRIDE_Q + tl.arange(0, HEAD_DIM)[None, :]
    lse_offset = (b * HQ + hq).to(tl.int64) * T + bos - b * T + offs_m
    if SPLITS == 1:
        tl.store(o + q_offset + tile, out.to(o.dtype.element_ty), mask=row_ok[:, None])
        tl.store(lse + lse_offset, (m_i + tl.math.log2(l_i)) * LN2, mask=row_ok)
    else:
        rows_total = tl.num_programs(1) // H * T   # B * T tokens (B = 1 when packed)
        split_offset = split.to(tl.int64) * rows_total * HQ
        tl.store(o_split + split_offset * HEAD_DIM + q_offset + tile, out, mask=row_ok[:, None])
        tl.store(lse_split + split_offset + lse_offset,
                 tl.where(has_keys, m_i + tl.math.log2(l_i), float("-inf")), mask=row_ok)


@triton.jit
def _merge_partial(acc, weight, m_i, o_s, lse_s):
    """Fold one split's partial softmax (normalised output o_s, base-2 lse_s) into the running
    (acc, weight, m_i): weights are 2^(lse - running max), so nothing overflows."""
    m_new = tl.maximum(m_i, lse_s)
    alpha = tl.math.exp2(m_i - m_new)
    w = tl.math.exp2(lse_s - m_new)
    return acc * alpha[:, None] + w[:, None] * o_s, weight * alpha + w, m_new


@triton.jit
def _fwd_combine_kernel(o_split, lse_split, o, lse, n_tokens, T, o_split_stride, lse_split_stride,
                        HQ: tl.constexpr, HEAD_DIM: tl.constexpr, SPLITS: tl.constexpr, BLOCK_R: tl.constexpr):
    """Merge SPLITS partial softmaxes (normalised outputs + base-2 lse) of each row."""
    hq = tl.program_id(1)
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < n_tokens
    offs_d = tl.arange(0, HEAD_DIM)
    o_offset = (rows.to(tl.int64) * HQ + hq)[:, None] * HEAD_DIM + offs_d[None, :]
    lse_offset = ((rows // T) * HQ + hq).to(tl.int64) * T + rows % T
    acc = tl.zeros([BLOCK_R, HEAD_DIM], dtype=tl.float32)
    weight = tl.zeros([BLOCK_R], dtype=tl.float32)
    m_i = tl.full([BLOCK_R], NEG_BIG, dtype=tl.float32)
    o_ptrs = o_split + o_offset
    lse_ptrs = lse_split + lse_offset
    for _ in tl.static_range(SPLITS):
        lse_s = tl.load(lse_ptrs, mask=row_ok, other=float("-inf"))
        o_s = tl.load(o_ptrs, mask=row_ok[:, None], other=0.0)
        o_ptrs += o_split_stride
        lse_ptrs += lse_split_stride
        acc, weight, m_i = _merge_partial(acc, weight, m_i, o_s, lse_s)
    weight = tl.where(weight > 0.0, weight, 1.0)
    tl.store(o + o_offset, (acc / weight[:, None]).to(o.dtype.element_ty), mask=row_ok[:, None])
    tl.store(lse + lse_offset, (m_i + tl.math.log2(weight)) * LN2, mask=row_ok)


# ----------------------------------------------------------------------------------------------
# Backward
# ----------------------------------------------------------------------------------------------
@triton.jit
def _mask_transposed(p_t, offs_m, offs_n, seq_len, window):
    """[keys, queries] probabilities with pairs outside the window and padding queries zeroed."""
    seen = _in_window(offs_m[None, :], offs_n[:, None], window) & (offs_m < seq_len)[None, :]
    return tl.where(seen, p_t, 0.0)


@triton.jit
def _dkdv_loop(dk, dv, k, v, q_src, do_src, q_row, q_col, lse_base, delta_base, offs_n, start, end, full_lo, full_hi,
               seq_len, window, qk_scale, STRIDE_Q: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
               MASK: tl.constexpr, FUSED: tl.constexpr, TMA: tl.constexpr, PRECISION: tl.constexpr):
    """dK, dV contributions of query blocks [start, end). MASK: window mask, and (masked ranges
    may hold the block crossing the sequence end) clamped loads with padding rows masked out.
    FUSED (with MASK): the mask is a runtime branch taken only outside [full_lo, full_hi), so one
    pipelined loop covers all three ranges (as ``_fwd_fused_loop``).
    TMA: q_src, do_src are [tokens, HQ * D] tensor descriptors read at (q_row + query, q_col);
    else they point at query 0 of this sequence and query head."""
    offs_m0 = tl.arange(0, BLOCK_M)
    tile = offs_m0[:, None] * STRIDE_Q + tl.arange(0, HEAD_DIM)[None, :]
    q_block = q_src
    do_block = do_src
    if not TMA:
        q_block += start.to(tl.int64) * STRIDE_Q
        do_block += start.to(tl.int64) * STRIDE_Q
    for m0 in range(start, end, BLOCK_M):
        offs_m = m0 + offs_m0
        if TMA:
            # Rows past the sequence end are the next sequence's or TMA's zero fill: only masked
            # ranges reach them, and there ``seen`` drops them.
            q = q_src.load([q_row + m0, q_col])
            do = do_src.load([q_row + m0, q_col])
        elif MASK:
            rows = _block_offsets(m0, seq_len, STRIDE_Q, BLOCK_M, HEAD_DIM)
            q = tl.load(q_block + rows)
            do = tl.load(do_block + rows)
        else:
            q = tl.load(q_block + tile)
            do = tl.load(do_block + tile)
        if MASK:
            row_ok = offs_m < seq_len
            lse2 = tl.load(lse_base + offs_m, mask=row_ok, other=0.0) * LOG2E
            delta = tl.load(delta_base + offs_m, mask=row_ok, other=0.0)
        else:
            lse2 = tl.load(lse_base + offs_m) * LOG2E
            delta = tl.load(delta_base + offs_m)
        # Transposed tiles ([keys, queries]) so dK and dV accumulate without transposing them.
        p_t = tl.math.exp2(tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale - lse2[None, :])
        if FUSED:
            if (m0 < full_lo) | (m0 >= full_hi):
                p_t = _mask_transposed(p_t, offs_m, offs_n, seq_len, window)
        elif MASK:
            p_t = _mask_transposed(p_t, offs_m, offs_n, seq_len, window)
        dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        ds_t = p_t * (dp_t - delta[None, :])
        dk = tl.dot(ds_t.to(q.dtype), q, dk, input_precision=PRECISION)
        if not TMA:
            q_block += BLOCK_M * STRIDE_Q
            do_block += BLOCK_M * STRIDE_Q
    return dk, dv


@triton.jit
def _bwd_dkdv_kernel(q, k, v, do, lse, delta, dk, dv, cu_seqlens, block_table, qk_scale, scale, T, window,
                     HQ: tl.constexpr, H: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                     BLOCK_N: tl.constexpr, FUSED: tl.constexpr, TMA: tl.constexpr, IS_VARLEN: tl.constexpr,
                     PRECISION: tl.constexpr):
    G: tl.constexpr = HQ // H
    pid_n, pid_bh = tl.program_id(0), tl.program_id(1)
    b, h = pid_bh // H, pid_bh % H
    bos, seq_len, block = _sequence(b, pid_n, cu_seqlens, block_table, T, IS_VARLEN)
    if block < 0:
        return
    n0 = block * BLOCK_N
    STRIDE_Q: tl.constexpr = HQ * HEAD_DIM
    STRIDE_KV: tl.constexpr = H * HEAD_DIM
    offs_n = n0 + tl.arange(0, BLOCK_N)
    kv_offset = ((bos + n0).to(tl.int64) * H + h) * HEAD_DIM
    rows = _block_offsets(n0, seq_len, STRIDE_KV, BLOCK_N, HEAD_DIM)
    k_tile = tl.load(k + kv_offset + rows)
    v_tile = tl.load(v + kv_offset + rows)
    dk_acc = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv_acc = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo, full_lo, full_hi, hi = _query_ranges(n0, seq_len, window, BLOCK_M, BLOCK_N)
    for g in range(G):   # every query head reading this kv head: dK, dV summed here, no atomics
        hq = h * G + g
        if TMA:
            q_src, do_src = q, do
        else:
            q_src = q + (bos.to(tl.int64) * HQ + hq) * HEAD_DIM
            do_src = do + (bos.to(tl.int64) * HQ + hq) * HEAD_DIM
        lse_base = lse + (b * HQ + hq).to(tl.int64) * T + bos - b * T
        delta_base = delta + (b * HQ + hq).to(tl.int64) * T + bos - b * T
        if FUSED:   # one pipelined loop; only the edge blocks take the mask branch
            dk_acc, dv_acc = _dkdv_loop(dk_acc, dv_acc, k_tile, v_tile, q_src, do_src, bos, hq * HEAD_DIM, lse_base,
                                        delta_base, offs_n, lo, hi, full_lo, full_hi, seq_len, window, qk_scale,
                                        STRIDE_Q, HEAD_DIM, BLOCK_M, True, True, TMA, PRECISION)
        else:
            # Diagonal (causal mask), interior (no mask), far edge (window mask); the masked ranges
            # may hold the block crossing the sequence end.
            dk_acc, dv_acc = _dkdv_loop(dk_acc, dv_acc, k_tile, v_tile, q_src, do_src, bos, hq * HEAD_DIM, lse_base,
                                        delta_base, offs_n, lo, full_lo, full_lo, full_hi, seq_len, window, qk_scale,
                                        STRIDE_Q, HEAD_DIM, BLOCK_M, True, False, TMA, PRECISION)
            dk_acc, dv_acc = _dkdv_loop(dk_acc, dv_acc, k_tile, v_tile, q_src, do_src, bos, hq * HEAD_DIM, lse_base,
                                        delta_base, offs_n, full_lo, full_hi, full_lo, full_hi, seq_len, window,
                                        qk_scale, STRIDE_Q, HEAD_DIM, BLOCK_M, False, False, TMA, PRECISION)
            dk_acc, dv_acc = _dkdv_loop(dk_acc, dv_acc, k_tile, v_tile, q_src, do_src, bos, hq * HEAD_DIM, lse_base,
                                        delta_base, offs_n, full_hi, hi, full_lo, full_hi, seq_len, window, qk_scale,
                                        STRIDE_Q, HEAD_DIM, BLOCK_M, True, False, TMA, PRECISION)
    tile = tl.arange(0, BLOCK_N)[:, None] * STRIDE_KV + tl.arange(0, HEAD_DIM)[None, :]
    key_ok = (offs_n < seq_len)[:, None]
    tl.store(dk + kv_offset + tile, (dk_acc * scale).to(dk.dtype.element_ty), mask=key_ok)
    tl.store(dv + kv_offset + tile, dv_acc.to(dv.dtype.element_ty), mask=key_ok)


@triton.jit
def _dq_loop(dq, q, do, lse2, delta, k_src, v_src, kv_row, kv_col, offs_m, start, end, full_lo, full_hi, seq_len,
             window, qk_scale, STRIDE_KV: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
             MASK: tl.constexpr, BOUNDS: tl.constexpr, FUSED: tl.constexpr, TMA: tl.constexpr,
             PRECISION: tl.constexpr):
    """dQ contributions of key blocks [start, end); MASK, BOUNDS, FUSED (mask only outside
    [full_lo, full_hi)) and TMA (k_src, v_src read at (kv_row + key, kv_col)) as in ``_fwd_loop``
    and ``_fwd_fused_loop``."""
    offs_n0 = tl.arange(0, BLOCK_N)
    tile = offs_n0[:, None] * STRIDE_KV + tl.arange(0, HEAD_DIM)[None, :]
    k_block = k_src
    v_block = v_src
    if not TMA:
        k_block += start.to(tl.int64) * STRIDE_KV
        v_block += start.to(tl.int64) * STRIDE_KV
    for n0 in range(start, end, BLOCK_N):
        if TMA:
            # Keys past the sequence end (BOUNDS range only) are the next sequence's rows or zero
            # fill; they lie right of every real query, so the causal mask drops them.
            k = k_src.load([kv_row + n0, kv_col])
            v = v_src.load([kv_row + n0, kv_col])
        elif BOUNDS:
            rows = _block_offsets(n0, seq_len, STRIDE_KV, BLOCK_N, HEAD_DIM)
            k = tl.load(k_block + rows)
            v = tl.load(v_block + rows)
        else:
            k = tl.load(k_block + tile)
            v = tl.load(v_block + tile)
        p = tl.math.exp2(tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale - lse2[:, None])
        if FUSED:
            if (n0 < full_lo) | (n0 >= full_hi):
                p = tl.where(_in_window(offs_m[:, None], n0 + offs_n0[None, :], window), p, 0.0)
        elif MASK:
            p = tl.where(_in_window(offs_m[:, None], n0 + offs_n0[None, :], window), p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=PRECISION)
        if not TMA:
            k_block += BLOCK_N * STRIDE_KV
            v_block += BLOCK_N * STRIDE_KV
    return dq


@triton.jit
def _bwd_dq_kernel(q, k, v, o, do, lse, dlse, delta, dq, cu_seqlens, block_table, qk_scale, scale, T, window,
                   HQ: tl.constexpr, H: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr, FUSED: tl.constexpr, TMA: tl.constexpr, IS_VARLEN: tl.constexpr,
                   PRECISION: tl.constexpr, HAS_DLSE: tl.constexpr):
    G: tl.constexpr = HQ // H
    pid_m, pid_bh = tl.program_id(0), tl.program_id(1)
    block, hq = pid_m // G, (pid_bh % H) * G + pid_m % G
    b = pid_bh // H
    if not IS_VARLEN:
        block = tl.cdiv(T, BLOCK_M) - 1 - block
    bos, seq_len, block = _sequence(b, block, cu_seqlens, block_table, T, IS_VARLEN)
    if block < 0:
        return
    m0 = block * BLOCK_M
    STRIDE_Q: tl.constexpr = HQ * HEAD_DIM
    STRIDE_KV: tl.constexpr = H * HEAD_DIM
    offs_m = m0 + tl.arange(0, BLOCK_M)
    row_ok = offs_m < seq_len
    q_offset = ((bos + m0).to(tl.int64) * HQ + hq) * HEAD_DIM
    rows = _block_offsets(m0, seq_len, STRIDE_Q, BLOCK_M, HEAD_DIM)
    q_tile = tl.load(q + q_offset + rows)
    do_tile = tl.load(do + q_offset + rows)
    row_offset = (b * HQ + hq).to(tl.int64) * T + bos - b * T + offs_m
    lse2 = tl.load(lse + row_offset, mask=row_ok, other=0.0) * LOG2E
    # delta = rowsum(dO * O) here, where dO is loaded anyway: no separate pass over O and dO.
    # Each row belongs to exactly one dQ program; the dK/dV kernel, launched after, reads it.
    o_tile = tl.load(o + q_offset + rows)
    row_delta = tl.sum(o_tile.to(tl.float32) * do_tile.to(tl.float32), 1)
    if HAS_DLSE:   # ∂lse_i/∂s_ij = p_ij: a gradient of lse enters every dS_ij as p_ij·dlse_i
        row_delta -= tl.load(dlse + row_offset, mask=row_ok, other=0.0)
    tl.store(delta + row_offset, row_delta, mask=row_ok)
    delta = row_delta
    if TMA:
        k_src, v_src = k, v
    else:
        kv_offset = (bos.to(tl.int64) * H + pid_bh % H) * HEAD_DIM
        k_src, v_src = k + kv_offset, v + kv_offset
    kv_col = (pid_bh % H) * HEAD_DIM
    dq_acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    lo, full_lo, full_hi, hi = _key_ranges(m0, seq_len, window, BLOCK_M, BLOCK_N)
    if FUSED:   # one pipelined loop; only the edge blocks take the mask branch
        dq_acc = _dq_loop(dq_acc, q_tile, do_tile, lse2, delta, k_src, v_src, bos, kv_col, offs_m, lo, hi, full_lo,
                          full_hi, seq_len, window, qk_scale, STRIDE_KV, HEAD_DIM, BLOCK_N, True, True, True, TMA,
                          PRECISION)
    else:
        dq_acc = _dq_loop(dq_acc, q_tile, do_tile, lse2, delta, k_src, v_src, bos, kv_col, offs_m, lo, full_lo, full_lo,
                          full_hi, seq_len, window, qk_scale, STRIDE_KV, HEAD_DIM, BLOCK_N, True, False, False, TMA,
                          PRECISION)
        dq_acc = _dq_loop(dq_acc, q_tile, do_tile, lse2, delta, k_src, v_src, bos, kv_col, offs_m, full_lo, full_hi,
                          full_lo, full_hi, seq_len, window, qk_scale, STRIDE_KV, HEAD_DIM, BLOCK_N, False, False,
                          False, TMA, PRECISION)
        dq_acc = _dq_loop(dq_acc, q_tile, do_tile, lse2, delta, k_src, v_src, bos, kv_col, offs_m, full_hi, hi, full_lo,
                          full_hi, seq_len, window, qk_scale, STRIDE_KV, HEAD_DIM, BLOCK_N, True, True, False, TMA,
                          PRECISION)
    tile = tl.arange(0, BLOCK_M)[:, None] * STRIDE_Q + tl.arange(0, HEAD_DIM)[None, :]
    tl.store(dq + q_offset + tile, (dq_acc * scale).to(dq.dtype.element_ty), mask=row_ok[:, None])


# ----------------------------------------------------------------------------------------------
# Decode
# ----------------------------------------------------------------------------------------------
@triton.jit
def _decode_kernel(q, k_cache, v_cache, cache_seqlens, o, o_split, lse_split, counters, qk_scale, window, S, chunk,
                   stride_qb, stride_qh, stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh,
                   HQ: tl.constexpr, H: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_G: tl.constexpr,
                   BLOCK_N: tl.constexpr, SPLITS: tl.constexpr, PRECISION: tl.constexpr):
    G: tl.constexpr = HQ // H
    pid_bh, split = tl.program_id(0), tl.program_id(1)
    b, h = pid_bh // H, pid_bh % H
    length = tl.minimum(tl.load(cache_seqlens + b), S).to(tl.int32)   # clamped before an int64 narrows
    lo = tl.maximum(length - window, 0) + split * chunk
    hi = tl.minimum(length, lo + chunk)
    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, HEAD_DIM)
    head_ok = offs_g < G
    hq = h * G + offs_g
    q_tile = tl.load(q + b.to(tl.int64) * stride_qb + hq[:, None] * stride_qh + offs_d[None, :],
                     mask=head_ok[:, None], other=0.0)
    offs_n0 = tl.arange(0, BLOCK_N)
    k_base = k_cache + b.to(tl.int64) * stride_kb + h * stride_kh
    v_base = v_cache + b.to(tl.int64) * stride_vb + h * stride_vh
    acc = tl.zeros([BLOCK_G, HEAD_DIM], dtype=tl.float32)
    l_i = tl.zeros([BLOCK_G], dtype=tl.float32)
    m_i = tl.full([BLOCK_G], NEG_BIG, dtype=tl.float32)
    for n0 in range(lo, hi, BLOCK_N):
        key_ok = n0 + offs_n0 < hi
        rows = tl.minimum(n0 + offs_n0, hi - 1).to(tl.int64)   # clamped, not masked: see _block_offsets
        k = tl.load(k_base + rows[:, None] * stride_ks + offs_d[None, :])
        v = tl.load(v_base + rows[:, None] * stride_vs + offs_d[None, :])
        s = tl.where(key_ok[None, :], tl.dot(q_tile, tl.trans(k), input_precision=PRECISION), float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
        p = tl.math.exp2(s * qk_scale - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=PRECISION)
        m_i = m_new
    has_keys = l_i > 0.0
    l_i = tl.where(has_keys, l_i, 1.0)
    row = (b * HQ + hq).to(tl.int64)
    o_ptrs = o + row[:, None] * HEAD_DIM + offs_d[None, :]
    if SPLITS == 1:
        tl.store(o_ptrs, (acc / l_i[:, None]).to(o.dtype.element_ty), mask=head_ok[:, None])
    else:
        # Partial softmax of this split: normalised output and base-2 lse, [B * HQ, SPLITS(, D)].
        split_ptrs = o_split + (row * SPLITS)[:, None] * HEAD_DIM + offs_d[None, :]
        lse_ptrs = lse_split + row * SPLITS
        tl.store(split_ptrs + split * HEAD_DIM, acc / l_i[:, None], mask=head_ok[:, None])
        tl.store(lse_ptrs + split, tl.where(has_keys, m_i + tl.math.log2(l_i), float("-inf")), mask=head_ok)
        # The last split of (b, h) to finish merges all of them: no second launch. The barrier puts
        # every thread's stores before the (release) arrival; the counter is reset for the next call.
        tl.debug_barrier()
        arrived = tl.atomic_add(counters + pid_bh, 1, sem="acq_rel")
        if arrived == SPLITS - 1:
            acc = tl.zeros([BLOCK_G, HEAD_DIM], dtype=tl.float32)
            weight = tl.zeros([BLOCK_G], dtype=tl.float32)
            m_i = tl.full([BLOCK_G], NEG_BIG, dtype=tl.float32)
            for s_i in tl.static_range(SPLITS):
                # .cg: read the other programs' partials from L2, never from a stale L1 line.
                lse_s = tl.load(lse_ptrs + s_i, mask=head_ok, other=float("-inf"), cache_modifier=".cg")
                o_s = tl.load(split_ptrs + s_i * HEAD_DIM, mask=head_ok[:, None], other=0.0, cache_modifier=".cg")
                acc, weight, m_i = _merge_partial(acc, weight, m_i, o_s, lse_s)
            weight = tl.where(weight > 0.0, weight, 1.0)   # no keys (L = 0): zeros
            tl.store(o_ptrs, (acc / weight[:, None]).to(o.dtype.element_ty), mask=head_ok[:, None])
            tl.atomic_xchg(counters + pid_bh, 0)


# ----------------------------------------------------------------------------------------------
# Launchers (used by the templates and by kernelgen/ops/sliding_window_attention.py)
# ----------------------------------------------------------------------------------------------
_COMBINE_ROWS = 32


def _precision(dtype: torch.dtype) -> str:
    # fp32 inputs are accepted for accuracy, so their dots must not silently drop to tf32.
    return "ieee" if dtype == torch.float32 else "tf32"


def anchor_limit(dtype: torch.dtype) -> float:
    """Largest row sum of weights the anchored forward keeps: its weights reach the second product
    in the value dtype, fp16 overflows past 65504 (2^15 leaves room), bf16 and fp32 past 2^127
    (2^64 leaves room for acc = sum of weights * v)."""
    return 2.0 ** 15 if dtype == torch.float16 else 2.0 ** 64


def _check_grid(batch_heads: int) -> None:
    # B * H is the second grid axis (the first holds the many query blocks); CUDA caps it at 65535.
    if batch_heads > 65535:
        raise ValueError(f"B * H must be <= 65535 for the sliding-window kernels; got {batch_heads}")


def varlen_block_table(cu_seqlens: torch.Tensor, block: int, total: int) -> torch.Tensor:
    """int32 [upper, 2] rows (sequence, block index in it) for every block of every packed sequence,
    padded with (-1, 0) rows up to upper = cdiv(total, block) + N; built on the device, no sync."""
    n = cu_seqlens.numel() - 1
    bounds = cu_seqlens.to(torch.int64)
    blocks = (bounds[1:] - bounds[:-1] + block - 1) // block
    ends = torch.cumsum(blocks, 0)
    upper = cdiv(total, block) + n
    pid = torch.arange(upper, device=cu_seqlens.device)
    seq = torch.searchsorted(ends, pid, right=True)
    valid = seq < n
    seq = seq.clamp(max=n - 1)
    index = pid - (ends - blocks)[seq]
    return torch.stack([torch.where(valid, seq, -1), index], dim=1).to(torch.int32).contiguous()


def swa_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, scale: float,
                cu_seqlens: torch.Tensor | None, config: Config, o: torch.Tensor | None = None,
                lse: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """o [B, T, HQ, D] (q's dtype) and lse [B, HQ, T] fp32 (natural log) for contiguous q, k, v."""
    batch, length, heads_q, dim = q.shape
    heads = k.shape[2]
    o = torch.empty_like(q) if o is None else o
    lse = torch.empty(batch, heads_q, length, device=q.device, dtype=torch.float32) if lse is None else lse
    if q.numel() == 0:
        return o, lse
    window = min(window, length)
    _check_grid(batch * heads)
    block_m, block_n, splits = config["BLOCK_M"], config["BLOCK_N"], config["SPLITS"]
    if cu_seqlens is None:
        table, blocks = None, cdiv(length, block_m)
    else:
        table = varlen_block_table(cu_seqlens, block_m, length)
        blocks = table.shape[0]
    o_split = lse_split = None
    if splits > 1:
        o_split = torch.empty(splits, batch, length, heads_q, dim, device=q.device, dtype=torch.float32)
        lse_split = torch.empty(splits, batch, heads_q, length, device=q.device, dtype=torch.float32)
    grid = (blocks * (heads_q // heads), batch * heads, splits)
    fused = bool(config.get("FUSED", 0))
    # Descriptors need 16-byte aligned bases; an odd view falls back to pointer loads.
    tma = fused and bool(config.get("TMA", 0)) and tma_loads((k, v))
    if tma:
        # 2-D [tokens, H * D] views: one descriptor serves every sequence and kv head.
        k = TensorDescriptor.from_tensor(k.view(-1, heads * dim), [block_n, dim])
        v = TensorDescriptor.from_tensor(v.view(-1, heads * dim), [block_n, dim])
    _fwd_kernel[grid](q, k, v, o, lse, o_split, lse_split, cu_seqlens, table, scale * 1.4426950408889634,
                      length, window, HQ=heads_q, H=heads, HEAD_DIM=dim, BLOCK_M=block_m, BLOCK_N=block_n,
                      SPLITS=splits, FUSED=fused, TMA=tma, IS_VARLEN=cu_seqlens is not None,
                      PRECISION=_precision(q.dtype), ANCHOR=bool(config.get("ANCHOR", 0)) and splits == 1,
                      ANCHOR_LIMIT=anchor_limit(q.dtype),
                      num_warps=config["num_warps"], num_stages=config["num_stages"])
    if splits > 1:
        tokens = batch * length
        _fwd_combine_kernel[(cdiv(tokens, _COMBINE_ROWS), heads_q)](
            o_split, lse_split, o, lse, tokens, length, o_split.stride(0), lse_split.stride(0), HQ=heads_q, HEAD_DIM=dim, SPLITS=splits,
            BLOCK_R=_COMBINE_ROWS, num_warps=4)
    return o, lse


def swa_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor, lse: torch.Tensor,
                 do: torch.Tensor, window: int, scale: float, cu_seqlens: torch.Tensor | None, config: Config,
                 dq: torch.Tensor | None = None, dk: torch.Tensor | None = None, dv: torch.Tensor | None = None,
                 dlse: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv) in the inputs' dtype for contiguous q, k, v, o, do and the forward's lse; ``dlse``
    (fp32, contiguous, lse's shape) is the gradient of the lse output, when it has one."""
    batch, length, heads_q, dim = q.shape
    heads = k.shape[2]
    dq = torch.empty_like(q) if dq is None else dq
    dk = torch.empty_like(k) if dk is None else dk
    dv = torch.empty_like(v) if dv is None else dv
    if q.numel() == 0:
        return dq, dk, dv
    window = min(window, length)
    _check_grid(batch * heads)
    delta = torch.empty_like(lse)
    common = dict(HQ=heads_q, H=heads, HEAD_DIM=dim, FUSED=bool(config.get("FUSED", 0)),
                  IS_VARLEN=cu_seqlens is not None, PRECISION=_precision(q.dtype))
    qk_scale = scale * 1.4426950408889634
    # TMA for the streamed tiles (K, V of dQ; Q, dO of dK/dV) through 2-D [tokens, heads * D]
    # views; descriptors need 16-byte aligned bases, so an odd view falls back to pointer loads.
    tma = bool(config.get("TMA", 0)) and tma_loads((q, k, v, do))

    # dQ first: it also writes delta = rowsum(dO * O), which the dK/dV kernel reads.
    block_m, block_n = config["BLOCK_M_Q"], config["BLOCK_N_Q"]
    table = None if cu_seqlens is None else varlen_block_table(cu_seqlens, block_m, length)
    blocks = cdiv(length, block_m) if table is None else table.shape[0]
    k_src, v_src = k, v
    if tma:
        k_src = TensorDescriptor.from_tensor(k.view(-1, heads * dim), [block_n, dim])
        v_src = TensorDescriptor.from_tensor(v.view(-1, heads * dim), [block_n, dim])
    _bwd_dq_kernel[(blocks * (heads_q // heads), batch * heads)](
        q, k_src, v_src, o, do, lse, lse if dlse is None else dlse, delta, dq, cu_seqlens, table, qk_scale, scale,
        length, window, BLOCK_M=block_m, BLOCK_N=block_n, TMA=tma, num_warps=config["warps_q"],
        num_stages=config["stages_q"], HAS_DLSE=dlse is not None, **common)

    block_m, block_n = config["BLOCK_M_KV"], config["BLOCK_N_KV"]
    table = None if cu_seqlens is None else varlen_block_table(cu_seqlens, block_n, length)
    blocks = cdiv(length, block_n) if table is None else table.shape[0]
    q_src, do_src = q, do
    if tma:
        q_src = TensorDescriptor.from_tensor(q.view(-1, heads_q * dim), [block_m, dim])
        do_src = TensorDescriptor.from_tensor(do.view(-1, heads_q * dim), [block_m, dim])
    _bwd_dkdv_kernel[(blocks, batch * heads)](
        q_src, k, v, do_src, lse, delta, dk, dv, cu_seqlens, table, qk_scale, scale, length, window,
        BLOCK_M=block_m, BLOCK_N=block_n, TMA=tma, num_warps=config["warps_kv"], num_stages=config["stages_kv"],
        **common)
    return dq, dk, dv


# Per (device, stream): split counters (int32, zero between calls) and fp32 partials of decode.
# Stream-ordered reuse: no allocation, no memset and no second launch on the decode hot path.
_decode_workspaces: dict = {}


def _decode_workspace(device: torch.device, counters: int, floats: int) -> tuple[torch.Tensor, torch.Tensor]:
    key = (device, current_stream_handle(device))
    found = _decode_workspaces.get(key)
    if found is None or found[0].numel() < counters or found[1].numel() < floats:
        size = max(counters, 0 if found is None else found[0].numel())
        found = (torch.zeros(size, device=device, dtype=torch.int32),
                 torch.empty(max(floats, 0 if found is None else found[1].numel()), device=device,
                             dtype=torch.float32))
        _decode_workspaces[key] = found
    return found


def swa_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_seqlens: torch.Tensor,
               window: int, scale: float, config: Config, o: torch.Tensor | None = None) -> torch.Tensor:
    """o [B, HQ, D] for q [B, HQ, D] (last dim contiguous) and caches [B, S, H, D] (last dim contiguous)."""
    batch, heads_q, dim = q.shape
    cache_len, heads = k_cache.shape[1], k_cache.shape[2]
    o = torch.empty(batch, heads_q, dim, device=q.device, dtype=q.dtype) if o is None else o
    if o.numel() == 0:
        return o
    window = min(window, cache_len)
    block_n, splits = config["BLOCK_N"], config["SPLITS"]
    chunk = cdiv(cdiv(max(window, 1), splits), block_n) * block_n
    counters = o_split = lse_split = None
    if splits > 1:
        rows = batch * heads_q * splits
        counters, partials = _decode_workspace(q.device, batch * heads, rows * (dim + 1))
        o_split, lse_split = partials[:rows * dim], partials[rows * dim:rows * (dim + 1)]
    group = heads_q // heads
    _decode_kernel[(batch * heads, splits)](
        q, k_cache, v_cache, cache_seqlens, o, o_split, lse_split, counters, scale * 1.4426950408889634, window,
        cache_len, chunk, q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        HQ=heads_q, H=heads, HEAD_DIM=dim, BLOCK_G=max(16, next_pow2(group)), BLOCK_N=block_n,
        SPLITS=splits, PRECISION=_precision(q.dtype), num_warps=config["num_warps"],
        num_stages=config["num_stages"])
    return o


# ----------------------------------------------------------------------------------------------
# Templates
# ----------------------------------------------------------------------------------------------
def attended_pairs(length: int, window: int) -> int:
    """(query, key) pairs one head of one length-T sequence attends: sum_i min(i + 1, W)."""
    window = min(window, length)
    return window * length - window * (window - 1) // 2


def _limits(gpu) -> tuple[int, int]:
    if gpu is None:
        return DEFAULT_SHARED_MEMORY, DEFAULT_SMS
    return gpu.shared_memory_per_block, gpu.sms


def _head_dim_problem(dim: int) -> str | None:
    return None if dim in HEAD_DIMS else f"head size D={dim} not in {HEAD_DIMS}"


def _shrink_to_fit(config: Config, shared_memory, limit: int, order: list[tuple[str, int]]) -> Config:
    """Lower the parameters in ``order`` (stages by one, tiles by half, each down to its floor)
    until ``shared_memory(config)`` fits ``limit``: a default for a smaller GPU, or fp32 inputs."""
    config = dict(config)
    for key, floor in order:
        while shared_memory(config) > limit and config[key] > floor:
            config[key] = config[key] - 1 if key.startswith(("num_stages", "stages")) else config[key] // 2
    return config


def _randn(shape, dtype: str, device, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=generator).to(device=device, dtype=DTYPES[dtype])


class _SlidingWindowTemplate(Template):
    op = "sliding_window_attention"
    dims = ("B", "T", "HQ", "H", "D", "W")
    dtypes = ("bf16", "fp16")
    workload = [
        {"B": 8, "T": 4096, "HQ": 16, "H": 16, "D": 128, "W": 512},     # issue targets
        {"B": 8, "T": 4096, "HQ": 16, "H": 16, "D": 64, "W": 128},
        {"B": 1, "T": 65536, "HQ": 16, "H": 16, "D": 128, "W": 512},
        {"B": 2, "T": 8192, "HQ": 32, "H": 8, "D": 128, "W": 4096},     # GQA, long window
        {"B": 1, "T": 8192, "HQ": 16, "H": 4, "D": 128, "W": 8192},     # small batch, causal
        {"B": 4, "T": 4096, "HQ": 8, "H": 8, "D": 256, "W": 1024},
    ]
    quick_workload = [{"B": 8, "T": 4096, "HQ": 16, "H": 16, "D": 128, "W": 512}]
    cpu_workload = [{"B": 2, "T": 45, "HQ": 4, "H": 2, "D": 32, "W": 20}]

    def shape_of(self, **sizes: int) -> dict[str, int]:
        shape = super().shape_of(**sizes)
        shape["W"] = min(shape["W"], shape["T"])   # a window past T is causal attention: one bucket
        return shape

    def make_inputs(self, shape: Shape, dtype: str, flags: str, device, generator: torch.Generator) -> Tensors:
        B, T, HQ, H, D = (shape[d] for d in ("B", "T", "HQ", "H", "D"))
        return {"q": _randn((B, T, HQ, D), dtype, device, generator),
                "k": _randn((B, T, H, D), dtype, device, generator),
                "v": _randn((B, T, H, D), dtype, device, generator)}

    def verification_shape(self, shape: Shape) -> dict[str, int]:
        # The float64 reference walks batch by batch; two sequences check every tile path.
        return {**shape, "B": min(shape["B"], 2)}

    def _pairs(self, shape: Shape) -> int:
        return shape["B"] * shape["HQ"] * attended_pairs(shape["T"], shape["W"])


class SlidingWindowForward(_SlidingWindowTemplate):
    """o, lse of sliding-window attention; tuned: tiles, warps, stages, window split."""
    name = "sliding_window_attention.fwd"
    kernel = "fwd"
    space = {"BLOCK_M": [32, 64, 128, 256], "BLOCK_N": [32, 64, 128], "num_warps": [4, 8],
             "num_stages": [1, 2, 3, 4], "SPLITS": [1, 2, 4], "FUSED": [0, 1], "TMA": [0, 1], "ANCHOR": [0, 1]}

    def default_config(self, shape: Shape, gpu=None) -> Config:
        dim, length = shape["D"], shape["T"]
        window = min(shape["W"], length)
        # Spill-free on sm_90 (see check_config); FUSED: one pipelined key loop, mask as a branch.
        # D = 128: BLOCK_M 64 with 4 warps (fewer masked pairs, W=512: 89% useful vs 80% at 128)
        # measured 0.426 ms against 0.468 for BLOCK_M 128 / 8 warps (H100, bf16, B=8 T=4096 H=16;
        # T=65536: 0.894 vs 0.962). BLOCK_M = 256 (D <= 64, 8 warps) is in the space.
        if dim <= 128:
            config = {"BLOCK_M": 64, "BLOCK_N": 64 if window > 64 else 32, "num_warps": 4, "num_stages": 3}
        else:
            config = {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 8, "num_stages": 2}
        config["FUSED"] = 1
        # TMA K/V loads (H100, bf16, default tiles): D = 128 W = 512 B = 8 0.424 -> 0.364-0.377 ms,
        # T = 65536 0.894 -> 0.813, GQA W = 4096 1.85 -> 1.68; D = 256 0.566 -> 0.553; D = 64 W = 128
        # 0.120 -> 0.127 (slower: there the cp.async loop's address math is cheap next to the barriers).
        config["TMA"] = int(dim >= 128)
        # Too few programs to fill the GPU and a long window: split each window over programs.
        _, sms = _limits(gpu)
        programs = shape["B"] * shape["HQ"] * cdiv(length, config["BLOCK_M"])
        key_blocks = cdiv(window + config["BLOCK_M"], config["BLOCK_N"])
        splits = 1
        while splits < 4 and programs * splits < sms and key_blocks >= 4 * splits:
            splits *= 2
        config["SPLITS"] = splits
        # The row max anchored on the diagonal blocks (see _fwd_kernel), for whole windows of 4+
        # key blocks (H100, bf16, probes of rounds 155-156; D = 128 the middle of three interleaved
        # runs): D = 128 W = 512 B = 8 0.365 -> 0.357 ms, T = 65536 0.774 -> 0.751, GQA W = 4096
        # 1.66 -> 1.53, D = 256 W = 1024 0.552 -> 0.420; D = 64 W = 128 0.118 -> 0.140, slower:
        # one key block past the diagonal.
        config["ANCHOR"] = int(splits == 1 and window >= 4 * config["BLOCK_N"])
        return self.fit(config, dim, gpu, 2)

    def candidates(self, shape: Shape, gpu=None) -> list[Config]:
        # The online and the anchored loop, the latter also on 32-key blocks (three programs an
        # SM; round 156: 0.351 vs 0.357 ms at B = 8, slower at T = 65536): TPE draws few of each.
        return [{"ANCHOR": 0}, {"ANCHOR": 1}, {"ANCHOR": 1, "BLOCK_N": 32}]

    @staticmethod
    def shared_memory(config: Config, dim: int, element_size: int = 2) -> int:
        """The q tile and num_stages buffers of the K and V tiles."""
        return element_size * dim * (config["BLOCK_M"] + max(config["num_stages"], 1) * 2 * config["BLOCK_N"])

    def fit(self, config: Config, dim: int, gpu=None, element_size: int = 2) -> Config:
        """``config`` with stages, then tiles, lowered until its shared memory fits ``gpu``."""
        return _shrink_to_fit(config, lambda c: self.shared_memory(c, dim, element_size), _limits(gpu)[0],
                              [("num_stages", 1), ("BLOCK_N", 16), ("BLOCK_M", 16)])

    def check_config(self, config: Config, shape: Shape, gpu=None) -> str | None:
        dim = shape["D"]
        problem = _head_dim_problem(dim)
        if problem:
            return problem
        shared, _ = _limits(gpu)
        block_m, block_n, warps = config["BLOCK_M"], config["BLOCK_N"], config["num_warps"]
        smem = self.shared_memory(config, dim)
        if smem > shared:
            return f"shared memory {smem} B > {shared} B"
        registers = block_m * (dim + block_n) // (32 * warps)
        if registers > FWD_TILE_REGISTERS:
            return f"accumulator + score tiles need {registers} fp32 registers per thread > {FWD_TILE_REGISTERS}"
        if config.get("TMA", 0) and not config.get("FUSED", 0):
            return "TMA loads are only in the fused key loop (FUSED=1)"
        if config.get("ANCHOR", 0) and config["SPLITS"] > 1:
            return "ANCHOR needs each program's whole window (SPLITS=1): a split may miss the diagonal"
        window = min(shape["W"], shape["T"])
        if config["SPLITS"] > 1 and cdiv(window + block_m, block_n) < 2 * config["SPLITS"]:
            return f"window of {window} keys is too short for {config['SPLITS']} splits of {block_n}-key blocks"
        return None

    def flops(self, shape: Shape, dtype: str, flags: str = "") -> float:
        return 4.0 * shape["D"] * self._pairs(shape)

    def bytes(self, shape: Shape, dtype: str, flags: str = "") -> float:
        B, T, HQ, H, D = (shape[d] for d in ("B", "T", "HQ", "H", "D"))
        size = DTYPES[dtype].itemsize
        return size * B * T * D * (2 * HQ + 2 * H) + 4 * B * HQ * T

    def allocate_outputs(self, inputs: Tensors, shape: Shape, dtype: str, flags: str) -> Tensors:
        q = inputs["q"]
        return {"o": torch.empty_like(q),
                "lse": torch.empty(q.shape[0], q.shape[2], q.shape[1], device=q.device, dtype=torch.float32)}

    def launch(self, config: Config, inputs: Tensors, outputs: Tensors, shape: Shape, flags: str) -> None:
        swa_forward(inputs["q"], inputs["k"], inputs["v"], shape["W"], shape["D"] ** -0.5, None, config,
                    o=outputs["o"], lse=outputs["lse"])

    def reference(self, inputs: Tensors, shape: Shape, flags: str) -> Tensors:
        o, lse = reference.sliding_window_attention_ref(inputs["q"], inputs["k"], inputs["v"], shape["W"])
        return {"o": o, "lse": lse}


class SlidingWindowBackward(_SlidingWindowTemplate):
    """dq, dk, dv: a dK/dV kernel per key block and a dQ kernel per query block, tuned separately."""
    name = "sliding_window_attention.bwd"
    kernel = "bwd"
    quick_workload = [{"B": 8, "T": 4096, "HQ": 16, "H": 16, "D": 128, "W": 512}]
    workload = [
        {"B": 8, "T": 4096, "HQ": 16, "H": 16, "D": 128, "W": 512},
        {"B": 8, "T": 4096, "HQ": 16, "H": 16, "D": 64, "W": 128},
        {"B": 2, "T": 8192, "HQ": 32, "H": 8, "D": 128, "W": 4096},
        {"B": 4, "T": 4096, "HQ": 8, "H": 8, "D": 256, "W": 1024},
    ]
    space = {"BLOCK_M_KV": [16, 32, 64], "BLOCK_N_KV": [32, 64, 128], "warps_kv": [4, 8], "stages_kv": [1, 2, 3],
             "BLOCK_M_Q": [64, 128], "BLOCK_N_Q": [32, 64], "warps_q": [4, 8], "stages_q": [1, 2, 3], "FUSED": [0, 1],
             "TMA": [0, 1]}

    def default_config(self, shape: Shape, gpu=None) -> Config:
        # Spill-free on sm_90 (see check_config).
        if shape["D"] <= 64:
            config = {"BLOCK_M_KV": 64, "BLOCK_N_KV": 128, "warps_kv": 8, "stages_kv": 2,
                      "BLOCK_M_Q": 128, "BLOCK_N_Q": 64, "warps_q": 8, "stages_q": 2}
        elif shape["D"] == 128:
            # H100, bf16, B=8 T=4096 H=16 W=512: 1.27 ms with one fused loop, TMA loads and 64-key
            # blocks on 4 warps; 1.55 for the three loops with pointer loads (this tile set with
            # 128-key blocks, 8 warps); TMA without FUSED 1.92, FUSED without TMA 1.58. 64-query
            # dK/dV steps (N = 64 in the two products over queries, half the shared-memory reads
            # a FLOP): dK/dV 0.69-0.73 -> 0.648 ms, T = 65536 1.51 -> 1.34 (round 182).
            config = {"BLOCK_M_KV": 64, "BLOCK_N_KV": 64, "warps_kv": 4, "stages_kv": 2,
                      "BLOCK_M_Q": 64, "BLOCK_N_Q": 64, "warps_q": 4, "stages_q": 2, "FUSED": 1, "TMA": 1}
        else:
            config = {"BLOCK_M_KV": 32, "BLOCK_N_KV": 32, "warps_kv": 8, "stages_kv": 2,
                      "BLOCK_M_Q": 128, "BLOCK_N_Q": 32, "warps_q": 8, "stages_q": 2}
        # other head sizes keep the measured three-loop pointer kernels until timed otherwise
        config.setdefault("TMA", 0)
        config.setdefault("FUSED", 0)
        return self.fit(config, shape["D"], gpu, 2)

    def candidates(self, shape: Shape, gpu=None) -> list[Config]:
        # A third dK/dV stage: the winner of session 5's 10-trial study at D = 128 (1.205 vs 1.268
        # ms), which round 160's 6-trial study never drew.
        return [{"stages_kv": 3}]

    @staticmethod
    def shared_memory(config: Config, dim: int, element_size: int = 2) -> tuple[int, int]:
        """(dK/dV kernel, dQ kernel): K, V held and Q, dO streamed; Q, dO held and K, V streamed."""
        return (element_size * dim * 2 * (config["BLOCK_N_KV"] + max(config["stages_kv"], 1) * config["BLOCK_M_KV"]),
                element_size * dim * 2 * (config["BLOCK_M_Q"] + max(config["stages_q"], 1) * config["BLOCK_N_Q"]))

    def fit(self, config: Config, dim: int, gpu=None, element_size: int = 2) -> Config:
        limit = _limits(gpu)[0]
        config = _shrink_to_fit(config, lambda c: self.shared_memory(c, dim, element_size)[0], limit,
                                [("stages_kv", 1), ("BLOCK_M_KV", 16), ("BLOCK_N_KV", 16)])
        return _shrink_to_fit(config, lambda c: self.shared_memory(c, dim, element_size)[1], limit,
                              [("stages_q", 1), ("BLOCK_N_Q", 16), ("BLOCK_M_Q", 16)])

    def check_config(self, config: Config, shape: Shape, gpu=None) -> str | None:
        dim = shape["D"]
        problem = _head_dim_problem(dim)
        if problem:
            return problem
        shared, _ = _limits(gpu)
        smem_kv, smem_q = self.shared_memory(config, dim)
        block_m, block_n, warps = config["BLOCK_M_KV"], config["BLOCK_N_KV"], config["warps_kv"]
        smem = smem_kv
        if smem > shared:
            return f"dK/dV kernel shared memory {smem} B > {shared} B"
        registers = (3 * block_n * dim + 2 * block_n * block_m) // (32 * warps)
        if dim >= 256:
            budget = DKDV_D256_REGISTERS
        elif config.get("FUSED", 0):
            budget = DKDV_TILE_REGISTERS
        else:
            budget = DKDV_THREE_LOOP_REGISTERS
        if registers > budget:
            return f"dK/dV kernel tiles need {registers} registers per thread > {budget}"
        block_m, block_n, warps = config["BLOCK_M_Q"], config["BLOCK_N_Q"], config["warps_q"]
        smem = smem_q
        if smem > shared:
            return f"dQ kernel shared memory {smem} B > {shared} B"
        registers = (2 * block_m * dim + 2 * block_m * block_n) // (32 * warps)
        if registers > DQ_TILE_REGISTERS:
            return f"dQ kernel tiles need {registers} registers per thread > {DQ_TILE_REGISTERS}"
        return None

    def flops(self, shape: Shape, dtype: str, flags: str = "") -> float:
        return 2.5 * 4.0 * shape["D"] * self._pairs(shape)   # dQ, dK, dV and the recomputed P

    def bytes(self, shape: Shape, dtype: str, flags: str = "") -> float:
        B, T, HQ, H, D = (shape[d] for d in ("B", "T", "HQ", "H", "D"))
        size = DTYPES[dtype].itemsize
        return size * B * T * D * (4 * HQ + 4 * H) + 4 * B * HQ * T

    def tolerance(self, dtype: str, output: str) -> float:
        return {"fp32": 1e-4, "fp16": 1e-2, "bf16": 5e-2}[dtype]

    def make_inputs(self, shape: Shape, dtype: str, flags: str, device, generator: torch.Generator) -> Tensors:
        inputs = super().make_inputs(shape, dtype, flags, device, generator)
        inputs["do"] = _randn(inputs["q"].shape, dtype, device, generator)
        config = FORWARD.fit(FORWARD.default_config(shape), shape["D"], None, DTYPES[dtype].itemsize)
        inputs["o"], inputs["lse"] = swa_forward(inputs["q"], inputs["k"], inputs["v"], shape["W"],
                                                 shape["D"] ** -0.5, None, config)
        return inputs

    def allocate_outputs(self, inputs: Tensors, shape: Shape, dtype: str, flags: str) -> Tensors:
        return {"dq": torch.empty_like(inputs["q"]), "dk": torch.empty_like(inputs["k"]),
                "dv": torch.empty_like(inputs["v"])}

    def launch(self, config: Config, inputs: Tensors, outputs: Tensors, shape: Shape, flags: str) -> None:
        swa_backward(inputs["q"], inputs["k"], inputs["v"], inputs["o"], inputs["lse"], inputs["do"], shape["W"],
                     shape["D"] ** -0.5, None, config, dq=outputs["dq"], dk=outputs["dk"], dv=outputs["dv"])

    def reference(self, inputs: Tensors, shape: Shape, flags: str) -> Tensors:
        dq, dk, dv = reference.sliding_window_attention_backward_ref(
            inputs["q"], inputs["k"], inputs["v"], inputs["do"], shape["W"])
        return {"dq": dq, "dk": dk, "dv": dv}


class SlidingWindowDecode(Template):
    """One new query per sequence against a [B, S, H, D] cache, window split over programs."""
    name = "sliding_window_attention.decode"
    op = "sliding_window_attention"
    kernel = "decode"
    dims = ("B", "HQ", "H", "D", "W")
    dtypes = ("bf16", "fp16")
    space = {"BLOCK_N": [32, 64, 128], "SPLITS": [1, 2, 4, 8, 16, 32], "num_warps": [2, 4, 8], "num_stages": [1, 2, 3]}
    workload = [
        {"B": 8, "HQ": 32, "H": 8, "D": 128, "W": 4096},
        {"B": 64, "HQ": 16, "H": 16, "D": 128, "W": 512},
        {"B": 1, "HQ": 32, "H": 8, "D": 128, "W": 8192},
        {"B": 16, "HQ": 16, "H": 16, "D": 64, "W": 128},
    ]
    quick_workload = [{"B": 8, "HQ": 32, "H": 8, "D": 128, "W": 4096}]
    cpu_workload = [{"B": 3, "HQ": 4, "H": 2, "D": 32, "W": 24}]

    def default_config(self, shape: Shape, gpu=None) -> Config:
        _, sms = _limits(gpu)
        block_n = 64 if shape["D"] <= 128 else 32
        programs = shape["B"] * shape["H"]
        splits = 1
        while splits < 32 and programs * splits < 2 * sms and shape["W"] >= 4 * block_n * splits:
            splits *= 2
        return self.fit({"BLOCK_N": block_n, "SPLITS": splits, "num_warps": 4, "num_stages": 2}, shape["D"], gpu, 2)

    @staticmethod
    def shared_memory(config: Config, dim: int, element_size: int = 2) -> int:
        return element_size * dim * (16 + max(config["num_stages"], 1) * 2 * config["BLOCK_N"])

    def fit(self, config: Config, dim: int, gpu=None, element_size: int = 2) -> Config:
        return _shrink_to_fit(config, lambda c: self.shared_memory(c, dim, element_size), _limits(gpu)[0],
                              [("num_stages", 1), ("BLOCK_N", 16)])

    def check_config(self, config: Config, shape: Shape, gpu=None) -> str | None:
        problem = _head_dim_problem(shape["D"])
        if problem:
            return problem
        shared, _ = _limits(gpu)
        smem = self.shared_memory(config, shape["D"])
        if smem > shared:
            return f"shared memory {smem} B > {shared} B"
        if config["SPLITS"] > 1 and shape["W"] < config["SPLITS"] * config["BLOCK_N"]:
            return f"window of {shape['W']} keys is too short for {config['SPLITS']} splits of {config['BLOCK_N']}"
        registers = (16 + config["BLOCK_N"]) * shape["D"] // (32 * config["num_warps"])
        if registers > FWD_TILE_REGISTERS:
            return f"tiles need {registers} registers per thread > {FWD_TILE_REGISTERS}"
        return None

    def verification_shape(self, shape: Shape) -> dict[str, int]:
        return {**shape, "B": min(shape["B"], 8)}   # the reference loops over sequences in Python

    def flops(self, shape: Shape, dtype: str, flags: str = "") -> float:
        return 4.0 * shape["B"] * shape["HQ"] * shape["W"] * shape["D"]

    def bytes(self, shape: Shape, dtype: str, flags: str = "") -> float:
        size = DTYPES[dtype].itemsize
        return size * shape["B"] * shape["D"] * (2 * shape["W"] * shape["H"] + 2 * shape["HQ"])

    def make_inputs(self, shape: Shape, dtype: str, flags: str, device, generator: torch.Generator) -> Tensors:
        B, HQ, H, D, W = (shape[d] for d in ("B", "HQ", "H", "D", "W"))
        cache_len = 2 * W
        # Every sequence holds at least W tokens, so each one reads exactly W cache rows.
        lengths = torch.randint(W, cache_len + 1, (B,), generator=generator, dtype=torch.int32)
        return {"q": _randn((B, HQ, D), dtype, device, generator),
                "k_cache": _randn((B, cache_len, H, D), dtype, device, generator),
                "v_cache": _randn((B, cache_len, H, D), dtype, device, generator),
                "cache_seqlens": lengths.to(device)}

    def allocate_outputs(self, inputs: Tensors, shape: Shape, dtype: str, flags: str) -> Tensors:
        return {"o": torch.empty_like(inputs["q"])}

    def launch(self, config: Config, inputs: Tensors, outputs: Tensors, shape: Shape, flags: str) -> None:
        swa_decode(inputs["q"], inputs["k_cache"], inputs["v_cache"], inputs["cache_seqlens"], shape["W"],
                   shape["D"] ** -0.5, config, o=outputs["o"])

    def reference(self, inputs: Tensors, shape: Shape, flags: str) -> Tensors:
        return {"o": reference.sliding_window_attention_decode_ref(
            inputs["q"], inputs["k_cache"], inputs["v_cache"], inputs["cache_seqlens"], shape["W"])}


FORWARD = register(SlidingWindowForward())
BACKWARD = register(SlidingWindowBackward())
DECODE = register(SlidingWindowDecode())
