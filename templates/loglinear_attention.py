"""Chunked Fenwick-tree log-linear attention: Triton kernels, launchers and the tunable templates.

Math (kernelgen/reference/loglinear_attention.py): o_t = scale·Σ_{s≤t} λ[t, lvl(t,s)]·e^{G_t−G_s}·(q_t·k_s)·v_s
with lvl(t,s) = bit_length(t XOR s). Tokens are cut into aligned chunks of C = 2^c positions.

Inside a chunk every pair has level ≤ c: a dense causal q·kᵀ, weighted by λ[t, bit_length(i XOR j)]
and the decay, times v (tensor cores). Between chunks m < n the level is c + j with the *chunk
level* j = bit_length(n XOR m), so the earlier chunks seen by chunk n at level j form one aligned
block: the left half [P − 2^(j−1), P) of n's aligned 2^j block, P = n with its low j−1 bits cleared
(non-empty when bit j−1 of n is set). That block is the Fenwick-tree node of index P, so there is
exactly one block state per chunk index P, its level fixed by lowbit(P):

    Block(P) = Σ_{s in chunks [P − lowbit(P), P)} e^{G_end(P−1) − G_s} k_s v_sᵀ          [K, V]
    o_t    += scale·λ[t, c+j]·e^{G_t − G_end(P_j−1)}·q_t·Block(P_j)   for every set bit j−1 of n

Forward, two kernels:
  1. ``_fwd_level_scan_kernel``: one program per (K×V tile, chunk level j, sequence·head) walks the
     chunks once: in left halves it accumulates k·vᵀ into a 2D register tile and emits Block(P) when
     the half ends; in right halves it only tracks the log decay since that block (``ldec``), which
     the output kernel needs. Levels are a grid axis (no per-level code), each program carries one
     state tile, and programs of every level run in parallel. The same pass writes the final state.
     Sequences that start at position 0 with no state out (training) take
     ``_fwd_block_stack_kernel`` instead: one program per (K×V tile, sequence·head) walks the
     chunks once and closes Block(n + 1) after chunk n from chunk n's own k·vᵀ and the live blocks
     of n's trailing set bits (a Fenwick carry), kept in an fp32 stack: one k·vᵀ per chunk in all,
     where the per-level scans do one per chunk per level they accumulate. Config ``stack``.
     With few (tile, sequence·head) programs the pass also splits into segments of chunks
     (``stack_segment``), and ``_fwd_block_segments_kernel`` carries the segment totals across.
     ``stack_pairs`` walks the chunks two a step: half as many dependent steps, and the level-0
     block never leaves registers.
  2. ``_fwd_output_kernel``: one program per (chunk, V tile, head): intra-chunk part plus one
     q·Block matmul per set bit of the chunk index (log2 of the chunk count at most).

Backward: the blocks are recomputed (kernel 1), then
  3. ``_bwd_level_scan_kernel``: the mirror image. Keys in chunk m see later chunks at level j in
     the right half [R, R + lowbit(R)) of m's aligned 2^j block; its λ-weighted query state
     RBlock(R) = Σ_t scale·λ[t, c+j]·e^{G_t − G_end(R−1)}·q_t·dO_tᵀ is accumulated per level
     (λ depends on the level, so levels never merge here) and emitted at R.
  4. ``_bwd_dqk_kernel``: dq (intra + do·Blockᵀ per level, each summed over the V tiles before
     its dq update and dλ row reduction; the level-1 block optionally from the previous chunk's
     rows, as the output kernel does), dk (intra + v·ΣRBlockᵀ), dλ, and the
     per-token dG = q·dq − k·dk (λ does not depend on g, so the identity of decayed linear
     attention holds); 5. ``_bwd_dv_kernel``: dv; 6. ``reverse_cumsum`` (reverse_cumsum.py): dg = Σ_{t'≥t} dG.

Sequences may start at any position (an initial state at position P0): chunks stay aligned to
absolute positions, the first chunk is partial, the initial per-level states seed each level's
accumulator (levels below the level's own merge into it), and the first chunk reads them with the
per-row weight λ[t, max(l, bit_length(t XOR P0))].
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from kernelgen.grid import MAX_GRID_YZ, grid_groups
from kernelgen.launch import cdiv, tma_loads, next_pow2
from kernelgen.template import DTYPES, Config, Template, Tensors
from kernelgen.reference import loglinear_attention as ref

from .chunk_common import causal_decay, load_log_decay, sequence_bounds
from .reverse_cumsum import reverse_cumsum
from . import register


# =============================================================================================
# building blocks
# =============================================================================================


# chunk indices stay below 2^INDEX_BITS (int32 positions over chunks of 16 or more)
INDEX_BITS = tl.constexpr(28)


@triton.jit
def _bit_length(x, NBITS: tl.constexpr):
    """bit_length of a non-negative integer tensor whose value is below 2^NBITS."""
    out = x * 0
    for bit in tl.static_range(NBITS):
        out = tl.where((x >> bit) > 0, bit + 1, out)
    return out


@triton.jit
def _popcount(x, NBITS: tl.constexpr):
    """Set bits of a non-negative integer scalar below 2^NBITS."""
    out = x * 0
    for bit in tl.static_range(NBITS):
        out += (x >> bit) & 1
    return out


@triton.jit
def _pop_lowest(m):
    """(the lowest set bit of ``m``, ``m`` without it, that bit's level: its index + 1)."""
    low = m & -m
    return low, m ^ low, _bit_length(low, INDEX_BITS)


@triton.jit
def _sequence(i_n, cu_seqlens, seq_pos, seq_slot0, T, NC, IS_VARLEN: tl.constexpr, TABLE: tl.constexpr):
    """(first token row, length, start position, first chunk slot) of sequence ``i_n``, int64."""
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    if TABLE:
        start = tl.load(seq_pos + i_n).to(tl.int64)
        slot0 = tl.load(seq_slot0 + i_n).to(tl.int64)
    else:
        start = bos * 0
        slot0 = i_n.to(tl.int64) * NC
    return bos, eos - bos, start, slot0


@triton.jit
def _chunk_rows(n, start, end, bos, C: tl.constexpr):
    """Rows of absolute chunk ``n``: in-chunk offsets, validity (inside [start, end)) and token row."""
    offs = tl.arange(0, C)
    pos = offs.to(tl.int64) + n * C             # n may be a plain int under the interpreter
    valid = (pos >= start) & (pos < end)
    return offs, pos, valid, bos + pos - start


@triton.jit
def _slot_chunk(i_s, slot_seq, slot_chunk, cu_seqlens, seq_pos, seq_slot0, T, NC, C: tl.constexpr,
                LOG_C: tl.constexpr, IS_VARLEN: tl.constexpr, TABLE: tl.constexpr):
    """Chunk slot ``i_s`` of a per-chunk kernel: (sequence, absolute chunk index n, first token
    row, start position, first slot, first and last chunk index, and chunk n's rows as
    ``_chunk_rows`` gives them)."""
    if TABLE:
        i_n = tl.load(slot_seq + i_s)
        n = tl.load(slot_chunk + i_s)
    else:
        i_n = i_s // NC
        n = i_s % NC
    bos, length, start, slot0 = _sequence(i_n, cu_seqlens, seq_pos, seq_slot0, T, NC, IS_VARLEN, TABLE)
    end = start + length
    offs, pos, valid, tok = _chunk_rows(n, start, end, bos, C)
    return (i_n, n, bos, start, slot0, (start >> LOG_C).to(tl.int32), ((end - 1) >> LOG_C).to(tl.int32),
            offs, pos, valid, tok)


@triton.jit
def _lam_column(lam, row_base, valid, level, L):
    """λ[t, level] of each row as [C] fp32 (0 past L or outside the chunk), gathered. Picking a
    column out of a loaded [C, LP] tile costs a cross-thread reduction per column (sm_90 SASS:
    the output kernel's shuffles 261 -> 5 with gathers)."""
    return tl.load(lam + row_base + level, mask=tl.where(valid, level, L) < L, other=0.0).to(tl.float32)


@triton.jit
def _level_column(b_lam, cols, level):
    """Column ``level`` (a scalar) of a [C, LP] level-scale tile, as [C]."""
    return tl.sum(tl.where(cols[None, :] == level, b_lam, 0.0), 1)


@triton.jit
def _intra_level_weights(lam, row_base, valid, L, offs, C: tl.constexpr, LOG_C: tl.constexpr,
                         TRANSPOSED: tl.constexpr = False):
    """[C, C]: λ[t, bit_length(t XOR s)] for in-chunk offsets t (rows) and s (columns), or the
    transpose (rows s, columns t) with TRANSPOSED, for key-major products. Rows gather their λ
    columns (``lam``, ``row_base``: the level-scale pointer and each row's offset); TRANSPOSED
    picks them out of the chunk's [C, LP] tile (``lam``; ``row_base``: its column indices), since
    a gathered column laid along rows is loaded once per thread that holds it (H100, dv kernel
    at K = V = 128: 0.62 vs 0.49 ms)."""
    x = offs[:, None] ^ offs[None, :]               # symmetric in t and s
    w = tl.zeros([C, C], tl.float32)
    for lvl in tl.static_range(0, LOG_C + 1):
        if TRANSPOSED:
            lam_ts = _level_column(lam, row_base, lvl)[None, :]
        else:
            lam_ts = _lam_column(lam, row_base, valid, lvl, L)[:, None]
        # x ≥ 2^(lvl−1) ⇔ bit_length(x) ≥ lvl (level 0: every pair); later levels overwrite earlier ones
        w = tl.where(x >= ((1 << lvl) >> 1), lam_ts, w)
    return w


# =============================================================================================
# forward
# =============================================================================================


@triton.jit(do_not_specialize=["T", "NC", "NJ", "L_IN", "L_OUT"])
def _fwd_level_scan_kernel(
    k, v, g, blocks, ldec, h0, ht, cu_seqlens, seq_pos, seq_slot0,
    T, NC, NJ, L_IN, L_OUT,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, LOG_C: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr, NV: tl.constexpr,
    IS_VARLEN: tl.constexpr, TABLE: tl.constexpr, HAS_INIT: tl.constexpr, STORE_FINAL: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """Block states of chunk level j = program_id(1) + 1 for one (K×V tile, sequence·head).
    program_id(1) == NJ (only with STORE_FINAL) writes the final state's in-chunk levels instead."""
    i_kv, i_lv, i_nh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_n, i_h = i_nh // H, i_nh % H
    i_k, i_v = i_kv // NV, i_kv % NV
    bos, length, start, slot0 = _sequence(i_n, cu_seqlens, seq_pos, seq_slot0, T, NC, IS_VARLEN, TABLE)
    end = start + length
    n0 = (start >> LOG_C).to(tl.int32)
    n_last = tl.where(length > 0, (end - 1) >> LOG_C, (start >> LOG_C) - 1).to(tl.int32)
    n_full = (end >> LOG_C).to(tl.int32)     # chunks below n_full are complete

    offs_k = i_k * BK + tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    m_kv = (offs_k < K)[:, None] & (offs_v < V)[None, :]
    tile = offs_k[:, None] * V + offs_v[None, :]
    state_base = (i_n * H + i_h).to(tl.int64)          # [N, H, L, K, V] states

    if i_lv < NJ:
        j = i_lv + 1
        half = 1 << (j - 1)
        acc = tl.zeros([BK, BV], dtype=tl.float32)
        ld = tl.full([], 0.0, tl.float32)               # log decay since the current block ended
        if HAS_INIT:
            if ((n0 >> (j - 1)) & 1) == 1:
                # the call starts in a right half: the block is the initial state's level c + j
                if LOG_C + j < L_IN:
                    acc = tl.load(h0 + ((state_base * L_IN + LOG_C + j) * K * V) + tile, mask=m_kv, other=0.0)
            else:
                # inside a left half: every earlier token of it sits at a lower level of the state
                for lvl in range(1, tl.minimum(LOG_C + j, L_IN)):
                    acc += tl.load(h0 + ((state_base * L_IN + lvl) * K * V) + tile, mask=m_kv, other=0.0)
        # aligned 2^j-chunk blocks: accumulate the left half, then walk the right half's decays.
        # Loads sit in plain loops (no per-chunk branch) so the compiler can pipeline them.
        for a in range(n0 >> j, (n_last >> j) + 1):
            base = a << j
            mid = base + half
            if a > (n0 >> j):
                acc = acc * 0.0                         # a new left half begins
            for n in range(tl.maximum(base, n0), tl.minimum(mid, n_last + 1)):
                offs, pos, valid, tok = _chunk_rows(n, start, end, bos, C)
                b_g = load_log_decay(g, tok * H + i_h, valid, 0.0, True, False)
                b_G = tl.cumsum(b_g, 0)
                g_sum = tl.sum(b_g, 0)
                b_kt = tl.load(k + (tok[None, :] * H + i_h) * K + offs_k[:, None],
                               mask=(offs_k < K)[:, None] & valid[None, :], other=0.0)
                b_v = tl.load(v + (tok[:, None] * H + i_h) * V + offs_v[None, :],
                              mask=valid[:, None] & (offs_v < V)[None, :], other=0.0)
                b_vd = (b_v * tl.exp(g_sum - b_G)[:, None]).to(b_kt.dtype)
                acc = acc * tl.exp(g_sum) + tl.dot(b_kt, b_vd, input_precision=DOT_PREC)
            if (mid - 1 >= n0) & (mid <= n_full):
                # the left half ended inside this call: it is Block(mid), read by the right half
                if mid <= n_last:
                    tl.store(blocks + ((slot0 + (mid - n0)) * H + i_h) * K * V + tile,
                             acc.to(blocks.dtype.element_ty), mask=m_kv)
                ld = ld * 0.0
            for n in range(tl.maximum(mid, n0), tl.minimum(base + 2 * half, n_last + 1)):
                offs, pos, valid, tok = _chunk_rows(n, start, end, bos, C)
                g_sum = tl.sum(load_log_decay(g, tok * H + i_h, valid, 0.0, True, False), 0)
                if i_kv == 0:
                    tl.store(ldec + ((slot0 + (n - n0)) * H + i_h) * NJ + (j - 1), ld)
                ld += g_sum
        if STORE_FINAL:
            if LOG_C + j < L_OUT:
                if ((n_full >> (j - 1)) & 1) == 1:
                    fin = acc * tl.exp(ld)
                else:
                    fin = acc * 0.0
                tl.store(ht + ((state_base * L_OUT + LOG_C + j) * K * V) + tile, fin, mask=m_kv)
    else:
        # final state, levels 1..c: the tokens of the open (partial) chunk, by their level
        # relative to the end position, plus the initial state's in-chunk levels re-bucketed
        n_open = n_full
        offs, pos, valid, tok = _chunk_rows(n_open, start, end, bos, C)
        b_g = load_log_decay(g, tok * H + i_h, valid, 0.0, True, False)
        b_G = tl.cumsum(b_g, 0)
        g_sum = tl.sum(b_g, 0)
        lvl_end = _bit_length(pos ^ end, LOG_C)
        b_kt = tl.load(k + (tok[None, :] * H + i_h) * K + offs_k[:, None],
                       mask=(offs_k < K)[:, None] & valid[None, :], other=0.0)
        b_v = tl.load(v + (tok[:, None] * H + i_h) * V + offs_v[None, :],
                      mask=valid[:, None] & (offs_v < V)[None, :], other=0.0)
        d_end = _bit_length((end ^ start) & (C - 1), LOG_C)
        for lvl in tl.static_range(1, LOG_C + 1):
            w = tl.where(valid & (lvl_end == lvl), tl.exp(g_sum - b_G), 0.0)
            fin = tl.dot(b_kt, (b_v * w[:, None]).to(b_kt.dtype), input_precision=DOT_PREC)
            if HAS_INIT:
                if n_open == n0:
                    for lp in range(1, tl.minimum(LOG_C + 1, L_IN)):
                        if tl.maximum(lp, d_end) == lvl:
                            fin += tl.exp(g_sum) * tl.load(h0 + ((state_base * L_IN + lp) * K * V) + tile,
                                                           mask=m_kv, other=0.0)
            if lvl < L_OUT:
                tl.store(ht + ((state_base * L_OUT + lvl) * K * V) + tile, fin, mask=m_kv)


@triton.jit
def _tile_program(i_kv, i_nh, cu_seqlens, seq_slot0, T, NC, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
                  C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, NV: tl.constexpr, IS_VARLEN: tl.constexpr,
                  TABLE: tl.constexpr):
    """A (K×V tile, sequence·head) program of the stacked block pass: (head, first token row, last
    chunk index (-1 for an empty sequence), first slot, the tile's K and V offsets, its mask, its
    offsets in a [K, V] block and in a [BK, BV] scratch tile, the program's index)."""
    i_n, i_h = i_nh // H, i_nh % H
    i_k, i_v = i_kv // NV, i_kv % NV
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    n_last = ((eos - bos + C - 1) // C - 1).to(tl.int32)
    if TABLE:
        slot0 = tl.load(seq_slot0 + i_n).to(tl.int64)
    else:
        slot0 = i_n.to(tl.int64) * NC
    offs_k = i_k * BK + tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    m_kv = (offs_k < K)[:, None] & (offs_v < V)[None, :]
    tile = offs_k[:, None] * V + offs_v[None, :]
    own = tl.arange(0, BK)[:, None] * BV + tl.arange(0, BV)[None, :]
    return i_h, bos, n_last, slot0, offs_k, offs_v, m_kv, tile, own, (i_nh * tl.num_programs(0) + i_kv).to(tl.int64)


@triton.jit
def _load_chunk(k, v, g, rows, present, offs_k, offs_v, i_h, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr):
    """One chunk's log decays [C], keys transposed [BK, C] and values [C, BV] (zeros unless
    ``present``)."""
    in_seq = (rows * 0 + present.to(tl.int32)) > 0     # [C]: the interpreter masks with tensors only
    b_g = tl.load(g + rows * H + i_h, mask=in_seq, other=0.0).to(tl.float32)
    b_kt = tl.load(k + (rows[None, :] * H + i_h) * K + offs_k[:, None],
                   mask=(offs_k < K)[:, None] & in_seq[None, :], other=0.0)
    b_v = tl.load(v + (rows[:, None] * H + i_h) * V + offs_v[None, :],
                  mask=(offs_v < V)[None, :] & in_seq[:, None], other=0.0)
    return b_g, b_kt, b_v


@triton.jit
def _own_block(b_g, b_kt, b_v, DOT_PREC: tl.constexpr):
    """(the chunk's total log decay, its k·vᵀ decayed to the chunk's end) in fp32."""
    b_G = tl.cumsum(b_g, 0)
    g_sum = tl.sum(b_g, 0)
    b_vd = (b_v * tl.exp(g_sum - b_G)[:, None]).to(b_kt.dtype)
    return g_sum, tl.dot(b_kt, b_vd, input_precision=DOT_PREC)


@triton.jit
def _store_block(block_at, acc, m_kv, z_all, SKIP_L1: tl.constexpr):
    """Store a closed block, unless SKIP_L1 and it is a level-1 block (z_all = 0: one chunk's own)."""
    if SKIP_L1:
        if z_all > 0:
            tl.store(block_at, acc.to(block_at.dtype.element_ty), mask=m_kv)
    else:
        tl.store(block_at, acc.to(block_at.dtype.element_ty), mask=m_kv)


@triton.jit
def _close_block(acc, z, z_all, carry, ldv, lv, g_sum, seg_g, block_at, m_kv, stack_base, own, seg_total_at,
                 seg_decay_at, i_kv, child_at, CARRY: tl.constexpr, NL: tl.constexpr, LOG_S: tl.constexpr,
                 BK: tl.constexpr, BV: tl.constexpr, SEGMENTED: tl.constexpr, SKIP_L1: tl.constexpr,
                 IN_BLOCKS: tl.constexpr):
    """Block(n + 1) at level z: ``acc`` (what closes it, decayed to chunk n's end) plus the live
    blocks of the levels below z, the one at level CARRY from registers (``carry``), the ones above
    from the stack; stored to ``block_at``, and kept live at level z (registers, stack, or the
    segment's total at LOG_S). IN_BLOCKS: the live block at level i is read back from where it was
    stored, Block(n + 1 − 2^i) at ``block_at − 2^i·child_at`` (in the blocks' dtype), and the stack
    is not written. Returns the register carry."""
    if z > CARRY:
        acc += tl.exp(tl.sum(tl.where(lv == CARRY, ldv, 0.0), 0) + g_sum) * carry
    for i in tl.static_range(CARRY + 1, NL):
        if i < z:
            decay = tl.sum(tl.where(lv == i, ldv, 0.0), 0) + g_sum
            if IN_BLOCKS:
                live = tl.load(block_at - (1 << i) * child_at, mask=m_kv, other=0.0).to(tl.float32)
            else:
                live = tl.load(stack_base + i * BK * BV + own)
            acc += tl.exp(decay) * live
    if SEGMENTED:
        if z_all <= LOG_S:
            _store_block(block_at, acc, m_kv, z_all, SKIP_L1)
        if z == LOG_S:
            tl.store(seg_total_at, acc)
            if i_kv == 0:
                tl.store(seg_decay_at, seg_g)
        elif z == CARRY:
            carry = acc
        elif not IN_BLOCKS:
            tl.store(stack_base + z * BK * BV + own, acc)
    else:
        _store_block(block_at, acc, m_kv, z_all, SKIP_L1)
        if z == CARRY:
            carry = acc
        elif not IN_BLOCKS:
            tl.store(stack_base + z * BK * BV + own, acc)
    return carry


@triton.jit
def _close_chunk(n, acc, g_sum, carry, ldv, lv, seg_g, blocks, ldec, slot0, i_h, tile, m_kv, stack_base, own,
                 seg_total_at, seg_decay_at, i_kv, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
                 NJ: tl.constexpr, CARRY: tl.constexpr, NL: tl.constexpr, LOG_S: tl.constexpr, BK: tl.constexpr,
                 BV: tl.constexpr, SEGMENTED: tl.constexpr, SKIP_L1: tl.constexpr, IN_BLOCKS: tl.constexpr):
    """Chunk n's step once ``acc`` holds what closes Block(n + 1): n's decays to the live blocks
    (ldec), the block closed and kept live (``_close_block``), the live decays moved past n.
    Returns (the register carry, the live decays)."""
    if i_kv == 0:
        tl.store(ldec + ((slot0 + n) * H + i_h) * NJ + lv, ldv, mask=lv < NJ)
    # n's trailing set bits 0..z-1 are the levels Block(n + 1) absorbs; it lives at level z.
    # Inside a segment z stops at LOG_S: there the block is the segment's total.
    z_all = _bit_length((n + 1) & (-(n + 1)), NJ + 1) - 1
    if SEGMENTED:
        z = tl.minimum(z_all, LOG_S)
    else:
        z = z_all
    block_at = blocks + ((slot0 + n + 1) * H + i_h) * K * V + tile
    carry = _close_block(acc, z, z_all, carry, ldv, lv, g_sum, seg_g, block_at, m_kv, stack_base, own, seg_total_at,
                         seg_decay_at, i_kv, H * K * V, CARRY, NL, LOG_S, BK, BV, SEGMENTED, SKIP_L1, IN_BLOCKS)
    # the next step's threads read what this one stored
    tl.debug_barrier()
    return carry, tl.where(lv == z, 0.0, ldv + g_sum)


@triton.jit(do_not_specialize=["T", "NC"])
def _fwd_block_stack_kernel(
    k, v, g, blocks, ldec, stack, seg_total, seg_decay, cu_seqlens, seq_slot0, T, NC,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, NJ: tl.constexpr, NJP: tl.constexpr,
    LOG_S: tl.constexpr, NL: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, NV: tl.constexpr,
    SEGMENTED: tl.constexpr, PAIRS: tl.constexpr, SKIP_L1: tl.constexpr, IS_VARLEN: tl.constexpr,
    TABLE: tl.constexpr, DOT_PREC: tl.constexpr, IN_BLOCKS: tl.constexpr = False,
):
    """Block(P) and ldec of one (K×V tile, sequence·head) for the chunks of segment program_id(2)
    (S = 2^LOG_S chunks), for sequences that start at position 0. Block(n + 1) closes after chunk
    n: chunk n's own k·vᵀ plus the live blocks of n's trailing set bits (the Fenwick children it
    covers), kept decayed to their own end in an fp32 stack of NL = min(NJ, LOG_S) levels, or
    (IN_BLOCKS, config ``stack_in_blocks``) read back from where they were stored. One
    k·vᵀ per chunk instead of one per level. A block that reaches before the segment (its lowbit
    above S) is finished by ``_fwd_block_segments_kernel`` from the segment totals this writes;
    the decays of levels above the segment's count from its start, and that kernel adds the rest.
    PAIRS: two chunks a step (config ``stack_pairs``). SKIP_L1: level-1 blocks (Block(P), P odd:
    one chunk's own k·vᵀ) are not stored; the output kernel builds them (``out_inline_l1``)."""
    i_kv, i_nh, i_s = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_h, bos, n_last, slot0, offs_k, offs_v, m_kv, tile, own, program = _tile_program(
        i_kv, i_nh, cu_seqlens, seq_slot0, T, NC, H, K, V, C, BK, BV, NV, IS_VARLEN, TABLE)
    seg_lo = i_s << LOG_S
    if seg_lo > n_last:
        return
    seg_end = tl.minimum(seg_lo + (1 << LOG_S), n_last)      # Block(n + 1) for n in [seg_lo, seg_end)

    stack_base = stack + (program * tl.num_programs(2) + i_s) * NL * BK * BV
    lv = tl.arange(0, NJP)
    ldv = tl.zeros([NJP], tl.float32)       # per level: log decay from its live block's end
    seg_g = tl.full([], 0.0, tl.float32)      # the segment's log decay (SEGMENTED)
    seg_total_at = seg_total + (program * tl.num_programs(2) + i_s) * BK * BV + own
    seg_decay_at = seg_decay + i_nh.to(tl.int64) * tl.num_programs(2) + i_s
    # chunks before n_last are full; each step loads the next step's rows while it works
    rows = bos + seg_lo * C + tl.arange(0, C)
    nxt_g, nxt_kt, nxt_v = _load_chunk(k, v, g, rows, seg_lo < seg_end, offs_k, offs_v, i_h, H, K, V)
    if PAIRS:
        nxt_g2, nxt_kt2, nxt_v2 = _load_chunk(k, v, g, rows + C, seg_lo + 1 < seg_end, offs_k, offs_v, i_h, H, K, V)
    # The most frequently merged live blocks stay in registers: level 0 (merged by the very next
    # chunk), or with PAIRS level 1 (level 0 never outlives its pair); the stack in memory holds
    # the levels above.
    carry = tl.zeros([BK, BV], dtype=tl.float32)
    if PAIRS:
        # Two chunks a step: A = 2a closes Block(A + 1) from its own k·vᵀ alone, B = 2a + 1 closes
        # Block(B + 1) from its own, A's and the live blocks above. The two products are independent
        # and the chain of dependent steps is half as long.
        for a in range(seg_lo // 2, (seg_end + 1) // 2):
            n_a = 2 * a
            b_g, b_kt, b_v = nxt_g, nxt_kt, nxt_v
            b_g2, b_kt2, b_v2 = nxt_g2, nxt_kt2, nxt_v2
            rows += 2 * C
            nxt_g, nxt_kt, nxt_v = _load_chunk(k, v, g, rows, n_a + 2 < seg_end, offs_k, offs_v, i_h, H, K, V)
            nxt_g2, nxt_kt2, nxt_v2 = _load_chunk(k, v, g, rows + C, n_a + 3 < seg_end, offs_k, offs_v, i_h,
                                                  H, K, V)
            g_a, kv_a = _own_block(b_g, b_kt, b_v, DOT_PREC)
            g_b, kv_b = _own_block(b_g2, b_kt2, b_v2, DOT_PREC)
            seg_g += g_a
            if i_kv == 0:
                tl.store(ldec + ((slot0 + n_a) * H + i_h) * NJ + lv, ldv, mask=lv < NJ)
            if not SKIP_L1:
                tl.store(blocks + ((slot0 + n_a + 1) * H + i_h) * K * V + tile, kv_a.to(blocks.dtype.element_ty),
                         mask=m_kv)
            ldv = tl.where(lv == 0, 0.0, ldv + g_a)
            if n_a + 1 < seg_end:
                seg_g += g_b
                carry, ldv = _close_chunk(n_a + 1, kv_b + tl.exp(g_b) * kv_a, g_b, carry, ldv, lv, seg_g, blocks,
                                          ldec, slot0, i_h, tile, m_kv, stack_base, own, seg_total_at,
                                          seg_decay_at, i_kv, H, K, V, NJ, 1, NL, LOG_S, BK, BV, SEGMENTED,
                                          SKIP_L1, IN_BLOCKS)
    else:
        for n in range(seg_lo, seg_end):
            b_g, b_kt, b_v = nxt_g, nxt_kt, nxt_v
            rows += C
            nxt_g, nxt_kt, nxt_v = _load_chunk(k, v, g, rows, n + 1 < seg_end, offs_k, offs_v, i_h, H, K, V)
            g_sum, acc = _own_block(b_g, b_kt, b_v, DOT_PREC)
            seg_g += g_sum
            carry, ldv = _close_chunk(n, acc, g_sum, carry, ldv, lv, seg_g, blocks, ldec, slot0, i_h, tile, m_kv,
                                      stack_base, own, seg_total_at, seg_decay_at, i_kv, H, K, V, NJ, 0, NL, LOG_S,
                                      BK, BV, SEGMENTED, SKIP_L1, IN_BLOCKS)
    if (i_kv == 0) & (n_last < seg_lo + (1 << LOG_S)):    # n_last is this segment's
        tl.store(ldec + ((slot0 + n_last) * H + i_h) * NJ + lv, ldv, mask=lv < NJ)


@triton.jit(do_not_specialize=["T", "NC", "NS"])
def _fwd_block_segments_kernel(
    blocks, ldec, stack, seg_total, seg_decay, cu_seqlens, seq_slot0, T, NC, NS,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, NJ: tl.constexpr, NJP: tl.constexpr,
    LOG_S: tl.constexpr, NL2: tl.constexpr, NL2P: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    NV: tl.constexpr, IS_VARLEN: tl.constexpr, TABLE: tl.constexpr,
):
    """The levels above the segments for one (K×V tile, sequence·head): the same Fenwick carry
    over segment totals (no products), writing the blocks that span segments, and each chunk's
    decay to a live block before its segment completed by the decay from that block to the
    segment's start."""
    i_kv, i_nh = tl.program_id(0), tl.program_id(1)
    i_h, bos, n_last, slot0, offs_k, offs_v, m_kv, tile, own, program = _tile_program(
        i_kv, i_nh, cu_seqlens, seq_slot0, T, NC, H, K, V, C, BK, BV, NV, IS_VARLEN, TABLE)
    stack_base = stack + program * NL2 * BK * BV
    ls = tl.arange(0, NL2P)
    ldvs = tl.zeros([NL2P], tl.float32)     # per segment level: log decay from its live block's end
    cols = tl.arange(0, NJP)
    in_chunk = tl.arange(0, 1 << LOG_S)
    carry = tl.zeros([BK, BV], dtype=tl.float32)
    for s in range(0, (n_last >> LOG_S) + 1):
        seg_lo = s << LOG_S
        if (i_kv == 0) & (s > 0):
            # level LOG_S + i of a chunk in segment s: add the decay before the segment (bit i of s)
            lvl = cols - LOG_S
            before = tl.sum(tl.where(ls[None, :] == lvl[:, None], ldvs[None, :], 0.0), 1)
            before = tl.where((lvl >= 0) & (((s >> tl.maximum(lvl, 0)) & 1) == 1), before, 0.0)
            n = seg_lo + in_chunk
            at = ((slot0 + n) * H + i_h)[:, None] * NJ + cols[None, :]
            m = (n <= n_last)[:, None] & (cols < NJ)[None, :]
            tl.store(ldec + at, tl.load(ldec + at, mask=m, other=0.0) + before[None, :], mask=m)
        if seg_lo + (1 << LOG_S) <= n_last:
            acc = tl.load(seg_total + (program * NS + s) * BK * BV + own)
            g_seg = tl.load(seg_decay + i_nh.to(tl.int64) * NS + s)
            low = (s + 1) & (-(s + 1))
            z = _bit_length(low, NL2 + 1) - 1
            if z > 0:
                acc += tl.exp(tl.sum(tl.where(ls == 0, ldvs, 0.0), 0) + g_seg) * carry
            for i in tl.static_range(1, NL2):
                if i < z:
                    decay = tl.sum(tl.where(ls == i, ldvs, 0.0), 0) + g_seg
                    acc += tl.exp(decay) * tl.load(stack_base + i * BK * BV + own)
            if z > 0:       # z == 0: the segment's own total, written by the segment's program
                tl.store(blocks + ((slot0 + ((s + 1) << LOG_S)) * H + i_h) * K * V + tile,
                         acc.to(blocks.dtype.element_ty), mask=m_kv)
                if z < NL2:
                    tl.store(stack_base + z * BK * BV + own, acc)
            else:
                carry = acc
            tl.debug_barrier()
            ldvs = tl.where(ls == z, 0.0, ldvs + g_seg)


@triton.jit(do_not_specialize=["T", "NC", "NJ", "L", "L_IN"])
def _fwd_output_kernel(
    q, k, v, g, lam, blocks, ldec, h0, o, cu_seqlens, seq_pos, seq_slot0, slot_seq, slot_chunk, k_rows, v_rows,
    scale, T, NC, NJ, L, L_IN,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, KP: tl.constexpr, C: tl.constexpr,
    LOG_C: tl.constexpr, BV: tl.constexpr, INLINE_L1: tl.constexpr,
    IS_VARLEN: tl.constexpr, TABLE: tl.constexpr, HAS_INIT: tl.constexpr, DOT_PREC: tl.constexpr,
    TMA_BLOCKS: tl.constexpr = False, TMA_ROWS: tl.constexpr = False,
):
    """o for one (chunk slot, V tile, head): intra-chunk part + one q·Block per set bit of n.
    INLINE_L1 (sequences from position 0, no initial state): an odd chunk's level-1 block, chunk
    n − 1's own k·vᵀ, comes from that chunk's rows here; the block pass then never stores it.
    TMA_BLOCKS (no initial state, K a power of two): ``blocks`` is a [slots·H·K, V] tensor
    descriptor, so a block tile goes to shared memory without passing through registers. TMA_ROWS
    (with INLINE_L1, K a power of two): so are the inline level-1 block's rows, from ``k_rows``,
    ``v_rows`` ([tokens, H·K], [tokens, H·V] descriptors)."""
    i_s, i_v, i_h = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_n, n, bos, start, slot0, n0, n_last, offs, pos, valid, tok = _slot_chunk(
        i_s, slot_seq, slot_chunk, cu_seqlens, seq_pos, seq_slot0, T, NC, C, LOG_C, IS_VARLEN, TABLE)
    offs_k = tl.arange(0, KP)
    offs_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = offs_k < K, offs_v < V
    m_qk = valid[:, None] & m_k[None, :]
    b_q = tl.load(q + (tok[:, None] * H + i_h) * K + offs_k[None, :], mask=m_qk, other=0.0)
    b_k = tl.load(k + (tok[:, None] * H + i_h) * K + offs_k[None, :], mask=m_qk, other=0.0)
    b_v = tl.load(v + (tok[:, None] * H + i_h) * V + offs_v[None, :], mask=valid[:, None] & m_v[None, :], other=0.0)
    lam_row = (tok * H + i_h) * L
    b_g = load_log_decay(g, tok * H + i_h, valid, 0.0, True, False)
    b_G = tl.cumsum(b_g, 0)
    dt = b_q.dtype

    # intra-chunk: level-weighted, decayed causal scores
    b_s = tl.dot(b_q, tl.trans(b_k), input_precision=DOT_PREC)
    b_s = b_s * causal_decay(b_G, C, True) * _intra_level_weights(lam, lam_row, valid, L, offs, C, LOG_C)
    b_o = tl.dot(b_s.to(dt), b_v, input_precision=DOT_PREC)

    # inter-chunk: one state per set bit of n (the initial state's levels on a continued first chunk)
    e_q = tl.exp(b_G)
    slot = slot0 + (n - n0)
    if HAS_INIT:
        n_first = n0
    else:
        n_first = n0 * 0 - 1                             # no chunk is a continued first chunk
    if n == n_first:
        dist = _bit_length((pos ^ start) & (C - 1), LOG_C)
        for lvl in range(1, tl.minimum(L_IN, L)):
            w = _lam_column(lam, lam_row, valid, tl.maximum(dist, lvl), L) * e_q
            b_h = tl.load(h0 + (((i_n * H + i_h).to(tl.int64) * L_IN + lvl) * K + offs_k[:, None]) * V
                          + offs_v[None, :], mask=m_k[:, None] & m_v[None, :], other=0.0)
            b_o += w[:, None] * tl.dot(b_q, b_h.to(dt), input_precision=DOT_PREC)
    else:
        # one q·Block per set bit of n, lowest first, in a loop without branches: its block loads
        # pipeline (behind a per-level `if`, each load waited for the previous product)
        m = n
        if INLINE_L1:
            if (n & 1) == 1:
                # Block(n) = Σ_s e^{G_end(n−1) − G_s}·k_s·v_sᵀ over chunk n − 1 (full: the sequence
                # starts at 0), ending where chunk n starts: q·Block(n) = (q·kᵀ weighted)·v
                rows_p = tok - C
                if TMA_ROWS:
                    # chunk n − 1 is whole and in this sequence: no row of it needs a mask
                    row_p = (bos + (n - 1) * C - start).to(tl.int32)
                    b_kp = k_rows.load([row_p, i_h * K])
                    b_vp = v_rows.load([row_p, i_h * V + i_v * BV])
                else:
                    b_kp = tl.load(k + (rows_p[:, None] * H + i_h) * K + offs_k[None, :], mask=m_k[None, :],
                                   other=0.0)
                    b_vp = tl.load(v + (rows_p[:, None] * H + i_h) * V + offs_v[None, :], mask=m_v[None, :],
                                   other=0.0)
                b_gp = load_log_decay(g, rows_p * H + i_h, rows_p >= 0, 0.0, True, False)
                b_Gp = tl.cumsum(b_gp, 0)
                w_1 = _lam_column(lam, lam_row, valid, LOG_C + 1, L) * e_q
                b_sp = (tl.dot(b_q, tl.trans(b_kp), input_precision=DOT_PREC) * w_1[:, None]
                        * tl.exp(tl.sum(b_gp, 0) - b_Gp)[None, :])
                b_o += tl.dot(b_sp.to(dt), b_vp, input_precision=DOT_PREC)
            m = n & -2
        for _ in range(0, _popcount(m, INDEX_BITS)):
            src = m                                      # Block(src) ends where n's level-j bucket ends
            low, m, j = _pop_lowest(m)
            decay = tl.load(ldec + (slot * H + i_h) * NJ + (j - 1))
            w = _lam_column(lam, lam_row, valid, LOG_C + j, L) * tl.exp(b_G + decay)
            m_kv = m_k[:, None] & m_v[None, :]
            if HAS_INIT:
                from_init = src <= n_first
                b_h = tl.where(from_init, tl.load(
                    h0 + (((i_n * H + i_h).to(tl.int64) * L_IN + LOG_C + j) * K + offs_k[:, None]) * V
                    + offs_v[None, :], mask=m_kv & (offs_k * 0 + src <= n_first)[:, None]
                    & (offs_k * 0 + LOG_C + j < L_IN)[:, None], other=0.0).to(dt),
                    tl.load(blocks + (((slot0 + src - n0) * H + i_h) * K + offs_k[:, None]) * V + offs_v[None, :],
                            mask=m_kv & (offs_k * 0 + src > n_first)[:, None], other=0.0).to(dt))
            elif TMA_BLOCKS:
                b_h = blocks.load([((slot0 + src - n0) * H + i_h).to(tl.int32) * K, i_v * BV]).to(dt)
            else:
                b_h = tl.load(blocks + (((slot0 + src - n0) * H + i_h) * K + offs_k[:, None]) * V + offs_v[None, :],
                              mask=m_kv, other=0.0).to(dt)
            b_o += w[:, None] * tl.dot(b_q, b_h, input_precision=DOT_PREC)
    tl.store(o + (tok[:, None] * H + i_h) * V + offs_v[None, :], (b_o * scale).to(o.dtype.element_ty),
             mask=valid[:, None] & m_v[None, :])


# =============================================================================================
# backward
# =============================================================================================


@triton.jit(do_not_specialize=["T", "NC", "NJ", "L"])
def _bwd_level_scan_kernel(
    q, do, g, lam, rblocks, rdec, cu_seqlens, seq_pos, seq_slot0,
    scale, T, NC, NJ, L,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, LOG_C: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr, NV: tl.constexpr,
    IS_VARLEN: tl.constexpr, TABLE: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """RBlock(R) of chunk level j = program_id(1) + 1, walking the chunks backwards: the right half
    [R, R + 2^(j−1)) of each aligned 2^j block, as Σ scale·λ[t, c+j]·e^{G_t − G_end(R−1)}·q_t·dO_tᵀ."""
    i_kv, i_lv, i_nh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_n, i_h = i_nh // H, i_nh % H
    i_k, i_v = i_kv // NV, i_kv % NV
    bos, length, start, slot0 = _sequence(i_n, cu_seqlens, seq_pos, seq_slot0, T, NC, IS_VARLEN, TABLE)
    end = start + length
    n0 = (start >> LOG_C).to(tl.int32)
    n_last = tl.where(length > 0, (end - 1) >> LOG_C, (start >> LOG_C) - 1).to(tl.int32)
    j = i_lv + 1
    half = 1 << (j - 1)
    offs_k = i_k * BK + tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    m_kv = (offs_k < K)[:, None] & (offs_v < V)[None, :]
    acc = tl.zeros([BK, BV], dtype=tl.float32)
    # Right halves (the chunks with bit j - 1 set), last chunk first, as one flat loop whose loads
    # do not wait on the running sum, so they pipeline: iteration i is chunk n of run a = n >> j,
    # at offset o from the run's top; a run's sum restarts at its top and is stored at its
    # bottom (mid). Chunks past n_last at the top are skipped, and runs whose mid is before n0
    # (never stored: another call's) are not walked: a call continuing at position P would walk
    # ~P / C empty chunks per level otherwise.
    a_hi = n_last >> j
    top = (a_hi << j) + 2 * half - 1
    first = tl.minimum(half, top - n_last)
    a_lo = (tl.maximum(n0 - half, 0) + (1 << j) - 1) >> j
    count = (a_hi - a_lo + 1) * half
    for i in range(first, count):
        o = i & (half - 1)
        n = top - (i >> (j - 1) << j) - o
        offs, pos, valid, tok = _chunk_rows(n, start, end, bos, C)
        b_g = load_log_decay(g, tok * H + i_h, valid, 0.0, True, False)
        b_G = tl.cumsum(b_g, 0)
        g_sum = tl.sum(b_g, 0)
        b_lj = tl.load(lam + (tok * H + i_h) * L + LOG_C + j, mask=valid, other=0.0).to(tl.float32)
        b_qt = tl.load(q + (tok[None, :] * H + i_h) * K + offs_k[:, None],
                       mask=(offs_k < K)[:, None] & valid[None, :], other=0.0)
        b_do = tl.load(do + (tok[:, None] * H + i_h) * V + offs_v[None, :],
                       mask=valid[:, None] & (offs_v < V)[None, :], other=0.0)
        b_qw = (b_qt * (scale * b_lj * tl.exp(b_G))[None, :]).to(b_do.dtype)
        acc = acc * tl.where(o == 0, 0.0, tl.exp(g_sum)) + tl.dot(b_qw, b_do, input_precision=DOT_PREC)
        # the run's bottom is mid; its RBlock is this call's when mid is (a run cut by n0 is not)
        if (o == half - 1) & (n >= n0):
            tl.store(rblocks + (((slot0 + (n - n0)) * H + i_h) * K + offs_k[:, None]) * V + offs_v[None, :],
                     acc.to(rblocks.dtype.element_ty), mask=m_kv)
    if i_kv == 0:
        # left halves, last chunk first: decay from the right half's start back to each chunk's end
        for i_a in range(0, a_hi - (n0 >> j) + 1):
            base = (a_hi - i_a) << j
            l_lo = tl.maximum(base, n0)
            l_hi = tl.minimum(base + half, n_last + 1)
            rld = tl.full([], 0.0, tl.float32)
            for i_l in range(0, l_hi - l_lo):
                n = l_hi - 1 - i_l
                offs, pos, valid, tok = _chunk_rows(n, start, end, bos, C)
                g_sum = tl.sum(load_log_decay(g, tok * H + i_h, valid, 0.0, True, False), 0)
                tl.store(rdec + ((slot0 + (n - n0)) * H + i_h) * NJ + (j - 1), rld)
                rld += g_sum


@triton.jit
def _later_query_states(rblocks, rdec, n, n_last, slot, slot0, n0, i_h, NJ, offs_k, offs_v, m_kv,
                        H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """Σ_j e^{rdec_j}·RBlock(R_j) over the later chunks chunk n's keys see at level c + j, one per
    unset bit j − 1 of n below NJ: the right half starting at R_j = n with bit j − 1 set and the
    bits below cleared, where it exists (R_j grows with j, so the missing ones are the last)."""
    b_rs = tl.zeros([BK, BV], dtype=tl.float32)
    u = ~n & ((1 << NJ) - 1)
    for _ in range(0, _popcount(u, INDEX_BITS)):
        low, u, j = _pop_lowest(u)
        rsrc = (n | low) & ~(low - 1)
        live = (offs_k * 0 + rsrc) <= n_last             # [BK]: the interpreter masks with tensors only
        decay = tl.load(rdec + (slot * H + i_h) * NJ + (j - 1))
        b_rs += tl.where(live[:, None], tl.exp(decay), 0.0) * tl.load(
            rblocks + (((slot0 + rsrc - n0) * H + i_h) * K + offs_k[:, None]) * V + offs_v[None, :],
            mask=m_kv & live[:, None], other=0.0).to(tl.float32)
    return b_rs


@triton.jit
def _earlier_block_product(blocks, b_do, src, slot0, n0, i_h, offs_k, offs_v, m_kv, dt,
                           H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, DOT_PREC: tl.constexpr,
                           k0=0, v0=0, TMA: tl.constexpr = False):
    """dO·Block(src)ᵀ over one V tile, [C, BK]. A block that ends at or before the call's first
    chunk holds none of its tokens (a continued call: the op differentiates the initial state's
    share itself), so it reads as zero. TMA (sequences from position 0, so every block is live;
    K tiles that divide K): ``blocks`` is a [slots·H·K, V] tensor descriptor read at (k0, v0)."""
    if TMA:
        b_h = blocks.load([((slot0 + src - n0) * H + i_h).to(tl.int32) * K + k0, v0]).to(dt)
    else:
        live = (offs_k * 0 + src) > n0
        b_h = tl.load(blocks + (((slot0 + src - n0) * H + i_h) * K + offs_k[:, None]) * V + offs_v[None, :],
                      mask=m_kv & live[:, None], other=0.0).to(dt)
    return tl.dot(b_do, tl.trans(b_h), input_precision=DOT_PREC)


@triton.jit
def _earlier_level_grads(b_dq, b_dlam, b_r, b_q, b_G, decay, lam, lam_row, valid, offs, cols, src, n0, j, L, scale,
                         LOG_C: tl.constexpr):
    """dq and dλ[:, c + j] of the earlier chunk src at level c + j, from r = dO·Block(src)ᵀ and the
    block's log decay to the chunk's start."""
    e_j = tl.where((offs * 0 + src) > n0, scale * tl.exp(b_G + decay), 0.0)
    b_dq += (_lam_column(lam, lam_row, valid, LOG_C + j, L) * e_j)[:, None] * b_r
    part = tl.sum(b_q.to(tl.float32) * b_r, 1) * e_j
    b_dlam += tl.where(cols[None, :] == LOG_C + j, part[:, None], 0.0)
    return b_dq, b_dlam


@triton.jit
def _intra_chunk_grads(b_dq, b_dk, b_dlam, b_dA, b_q, b_k, b_G, lam, lam_row, valid, offs, cols, L, scale,
                       C: tl.constexpr, LOG_C: tl.constexpr, WITH_DK: tl.constexpr, DOT_PREC: tl.constexpr):
    """The in-chunk pairs' share of dq (and dk) and dλ from dA = dO·vᵀ; returns them with the
    (t, t) pairs' weights, which stay out of the sums dG is taken from: each token's own pair is
    in both q·dq and k·dk and cancels in dG exactly; under strong decay it is nearly all of them,
    so it is added to dq, dk afterwards (otherwise dG keeps only its rounding: fp32, g = -20, 60x
    relative error)."""
    dt = b_q.dtype
    b_s = tl.dot(b_q, tl.trans(b_k), input_precision=DOT_PREC)
    b_D = causal_decay(b_G, C, True) * scale
    b_W = _intra_level_weights(lam, lam_row, valid, L, offs, C, LOG_C)
    b_dAM = b_dA * b_D * b_W
    on_diag = offs[:, None] == offs[None, :]
    b_diag = tl.sum(tl.where(on_diag, b_dAM, 0.0), 1)
    b_dAM = tl.where(on_diag, 0.0, b_dAM)
    b_dq += tl.dot(b_dAM.to(dt), b_k, input_precision=DOT_PREC)
    if WITH_DK:
        b_dk += tl.dot(tl.trans(b_dAM.to(dt)), b_q, input_precision=DOT_PREC)
    b_P = b_dA * b_s * b_D                              # dλ[t, lvl(t,s)] gathers these per row
    x = offs[:, None] ^ offs[None, :]
    for lvl in tl.static_range(0, LOG_C + 1):
        in_lvl = (x < (1 << lvl)) & (x >= ((1 << lvl) >> 1))     # bit_length(x) == lvl
        part = tl.sum(tl.where(in_lvl, b_P, 0.0), 1)
        b_dlam += tl.where(cols[None, :] == lvl, part[:, None], 0.0)
    return b_dq, b_dk, b_dlam, b_diag


@triton.jit(do_not_specialize=["T", "NC", "NJ", "L", "TOKENS"])
def _bwd_dqk_kernel(
    q, k, v, g, lam, do, blocks, ldec, rblocks, rdec, dq, dk, dlam, dG,
    cu_seqlens, seq_pos, seq_slot0, slot_seq, slot_chunk,
    scale, T, NC, NJ, L, TOKENS,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, LOG_C: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr, LP: tl.constexpr, WITH_DK: tl.constexpr,
    IS_VARLEN: tl.constexpr, TABLE: tl.constexpr, DOT_PREC: tl.constexpr, LEVELS_OUTER: tl.constexpr = True,
    INLINE_L1: tl.constexpr = False, TMA_BLOCKS: tl.constexpr = False, INTRA_FIRST: tl.constexpr = False,
):
    """dq (and dk with WITH_DK; else the dv kernel writes it) for one (chunk slot, K tile, head),
    and this K tile's share of dλ and of dG (q·dq, minus k·dk with WITH_DK). INTRA_FIRST: the
    in-chunk pairs before the earlier chunks' levels, so dA and k are not live through those
    products (k is read again for the (t, t) pairs)."""
    i_s, i_k, i_h = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_n, n, bos, start, slot0, n0, n_last, offs, pos, valid, tok = _slot_chunk(
        i_s, slot_seq, slot_chunk, cu_seqlens, seq_pos, seq_slot0, T, NC, C, LOG_C, IS_VARLEN, TABLE)
    offs_k = i_k * BK + tl.arange(0, BK)
    m_k = offs_k < K
    cols = tl.arange(0, LP)
    m_qk = valid[:, None] & m_k[None, :]
    b_q = tl.load(q + (tok[:, None] * H + i_h) * K + offs_k[None, :], mask=m_qk, other=0.0)
    b_k = tl.load(k + (tok[:, None] * H + i_h) * K + offs_k[None, :], mask=m_qk, other=0.0)
    lam_row = (tok * H + i_h) * L
    b_g = load_log_decay(g, tok * H + i_h, valid, 0.0, True, False)
    b_G = tl.cumsum(b_g, 0)
    g_sum = tl.sum(b_g, 0)
    dt = b_q.dtype
    slot = slot0 + (n - n0)
    e_q = tl.exp(b_G)
    e_k = tl.exp(g_sum - b_G)

    b_dA = tl.zeros([C, C], dtype=tl.float32)
    b_dq = tl.zeros([C, BK], dtype=tl.float32)
    b_dk = tl.zeros([C, BK], dtype=tl.float32)
    b_dlam = tl.zeros([C, LP], dtype=tl.float32)
    for v0 in range(0, V, BV):
        offs_v = v0 + tl.arange(0, BV)
        m_v = offs_v < V
        m_tv = valid[:, None] & m_v[None, :]
        m_kv = m_k[:, None] & m_v[None, :]
        b_do = tl.load(do + (tok[:, None] * H + i_h) * V + offs_v[None, :], mask=m_tv, other=0.0)
        b_v = tl.load(v + (tok[:, None] * H + i_h) * V + offs_v[None, :], mask=m_tv, other=0.0)
        b_dA += tl.dot(b_do, tl.trans(b_v), input_precision=DOT_PREC)
        if not LEVELS_OUTER:
            # earlier chunks at level c + j, one per set bit of n: dq and dλ through Block(src).
            m = n
            for _ in range(0, _popcount(n, INDEX_BITS)):
                src = m
                low, m, j = _pop_lowest(m)
                b_r = _earlier_block_product(blocks, b_do, src, slot0, n0, i_h, offs_k, offs_v, m_kv, dt,
                                             H, K, V, DOT_PREC)
                decay = tl.load(ldec + (slot * H + i_h) * NJ + (j - 1))
                b_dq, b_dlam = _earlier_level_grads(b_dq, b_dlam, b_r, b_q, b_G, decay, lam, lam_row, valid, offs,
                                                    cols, src, n0, j, L, scale, LOG_C)
        if WITH_DK:
            b_rs = _later_query_states(rblocks, rdec, n, n_last, slot, slot0, n0, i_h, NJ, offs_k, offs_v, m_kv,
                                       H, K, V, BK, BV)
            b_vd = (b_v * e_k[:, None]).to(dt)
            b_dk += tl.dot(b_vd, tl.trans(b_rs.to(dt)), input_precision=DOT_PREC)
    if INTRA_FIRST:
        # the in-chunk pairs before the levels: dA and k are not live through them
        b_dq, b_dk, b_dlam, b_diag = _intra_chunk_grads(b_dq, b_dk, b_dlam, b_dA, b_q, b_k, b_G, lam, lam_row, valid,
                                                        offs, cols, L, scale, C, LOG_C, WITH_DK, DOT_PREC)
    if LEVELS_OUTER:
        # The same products with the V tiles summed first: one dq update and one dλ row reduction
        # per level, not one per (level, V tile); dO tiles are read again per level (from cache).
        m = n
        if INLINE_L1:
            if (n & 1) == 1:
                # Block(n) = Σ_s e^{G_end(n−1) − G_s}·k_s·v_sᵀ over chunk n − 1 (full: the sequence
                # starts at 0), ending where chunk n starts; the block pass did not store it:
                # dO·Block(n)ᵀ = ((dO·v_{n−1}ᵀ) weighted)·k_{n−1}
                rows_p = tok - C
                b_gp = load_log_decay(g, rows_p * H + i_h, rows_p >= 0, 0.0, True, False)
                b_ep = tl.exp(tl.sum(b_gp, 0) - tl.cumsum(b_gp, 0))
                b_a = tl.zeros([C, C], dtype=tl.float32)
                for v0 in range(0, V, BV):
                    offs_v = v0 + tl.arange(0, BV)
                    m_v = offs_v < V
                    b_do = tl.load(do + (tok[:, None] * H + i_h) * V + offs_v[None, :],
                                   mask=valid[:, None] & m_v[None, :], other=0.0)
                    b_vp = tl.load(v + (rows_p[:, None] * H + i_h) * V + offs_v[None, :], mask=m_v[None, :],
                                   other=0.0)
                    b_a += tl.dot(b_do, tl.trans(b_vp), input_precision=DOT_PREC)
                b_kp = tl.load(k + (rows_p[:, None] * H + i_h) * K + offs_k[None, :], mask=m_k[None, :], other=0.0)
                b_r = tl.dot((b_a * b_ep[None, :]).to(dt), b_kp, input_precision=DOT_PREC)
                b_dq, b_dlam = _earlier_level_grads(b_dq, b_dlam, b_r, b_q, b_G, 0.0, lam, lam_row, valid, offs,
                                                    cols, n, n0, 1, L, scale, LOG_C)
            m = n & -2
        for _ in range(0, _popcount(m, INDEX_BITS)):
            src = m
            low, m, j = _pop_lowest(m)
            b_r = tl.zeros([C, BK], dtype=tl.float32)
            for v0 in range(0, V, BV):
                offs_v = v0 + tl.arange(0, BV)
                m_v = offs_v < V
                b_do = tl.load(do + (tok[:, None] * H + i_h) * V + offs_v[None, :],
                               mask=valid[:, None] & m_v[None, :], other=0.0)
                b_r += _earlier_block_product(blocks, b_do, src, slot0, n0, i_h, offs_k, offs_v,
                                              m_k[:, None] & m_v[None, :], dt, H, K, V, DOT_PREC, i_k * BK, v0,
                                              TMA_BLOCKS)
            decay = tl.load(ldec + (slot * H + i_h) * NJ + (j - 1))
            b_dq, b_dlam = _earlier_level_grads(b_dq, b_dlam, b_r, b_q, b_G, decay, lam, lam_row, valid, offs,
                                                cols, src, n0, j, L, scale, LOG_C)

    if not INTRA_FIRST:
        b_dq, b_dk, b_dlam, b_diag = _intra_chunk_grads(b_dq, b_dk, b_dlam, b_dA, b_q, b_k, b_G, lam, lam_row, valid,
                                                        offs, cols, L, scale, C, LOG_C, WITH_DK, DOT_PREC)
    else:
        # k's rows again for the (t, t) pairs: not held through the levels
        b_k = tl.load(k + (tok[:, None] * H + i_h) * K + offs_k[None, :], mask=m_qk, other=0.0)

    b_dG = tl.sum(b_q.to(tl.float32) * b_dq, 1)
    b_dq += b_diag[:, None] * b_k.to(tl.float32)
    tl.store(dq + (tok[:, None] * H + i_h) * K + offs_k[None, :], b_dq.to(dq.dtype.element_ty), mask=m_qk)
    if WITH_DK:
        b_dG -= tl.sum(b_k.to(tl.float32) * b_dk, 1)
        b_dk += b_diag[:, None] * b_q.to(tl.float32)
        tl.store(dk + (tok[:, None] * H + i_h) * K + offs_k[None, :], b_dk.to(dk.dtype.element_ty), mask=m_qk)
    part_base = i_k.to(tl.int64) * TOKENS * H
    tl.store(dlam + (part_base + tok[:, None] * H + i_h) * L + cols[None, :], b_dlam.to(dlam.dtype.element_ty),
             mask=valid[:, None] & (cols < L)[None, :])
    tl.store(dG + part_base + tok * H + i_h, b_dG, mask=valid)


@triton.jit
def _key_major_weights(b_st, b_G, b_lam, cols, valid, L, offs, scale, C: tl.constexpr, LOG_C: tl.constexpr):
    """Aᵀ [s, t] from the key-major scores k_s·q_t: decay, level weights and scale. Built key-major,
    never transposed in registers: with one K tile and 8 warps, triton 3.6 gave the C×C
    accumulator a warp-replicated wgmma layout, and tl.trans of it left dv NaN on the H100."""
    return (b_st * causal_decay(b_G, C, True, True)
            * _intra_level_weights(b_lam, cols, valid, L, offs, C, LOG_C, True) * scale)


@triton.jit(do_not_specialize=["T", "NC", "NJ", "L"])
def _bwd_dv_kernel(
    q, k, v, g, lam, do, rblocks, rdec, dv, dk, dG, cu_seqlens, seq_pos, seq_slot0, slot_seq, slot_chunk,
    scale, T, NC, NJ, L,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, LOG_C: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr, LP: tl.constexpr, WITH_DK: tl.constexpr,
    IS_VARLEN: tl.constexpr, TABLE: tl.constexpr, DOT_PREC: tl.constexpr, CHAIN: tl.constexpr = False,
    TMA_RBLOCKS: tl.constexpr = False, AT_FIRST: tl.constexpr = False,
):
    """dv for one (chunk slot, V tile, head): Aᵀ·dO inside the chunk + (k decayed)·ΣRBlock.
    WITH_DK (one V tile spans V): also dk = (dA masked)ᵀ·q + (v decayed)·ΣRBlockᵀ per K tile,
    from the same ΣRBlock tiles, and −k·dk into dG's last partial. CHAIN: one product per RBlock,
    its scalar decay on k (rounded to k's dtype), chained on dv's accumulator (with WITH_DK a
    second, the decay on v, on dk's), instead of an fp32 [BK, BV] sum in registers; TMA_RBLOCKS
    (K tiles that divide K): ``rblocks`` is a [slots·H·K, V] tensor descriptor. AT_FIRST: the
    scores kᵀq in a loop of their own over the K tiles and Aᵀ·dO first, so neither they nor dO
    stay live through the main loop (q and k tiles are read twice)."""
    i_s, i_v, i_h = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_n, n, bos, start, slot0, n0, n_last, offs, pos, valid, tok = _slot_chunk(
        i_s, slot_seq, slot_chunk, cu_seqlens, seq_pos, seq_slot0, T, NC, C, LOG_C, IS_VARLEN, TABLE)
    offs_v = i_v * BV + tl.arange(0, BV)
    m_v = offs_v < V
    m_tv = valid[:, None] & m_v[None, :]
    cols = tl.arange(0, LP)
    b_do = tl.load(do + (tok[:, None] * H + i_h) * V + offs_v[None, :], mask=m_tv, other=0.0)
    b_lam = tl.load(lam + (tok[:, None] * H + i_h) * L + cols[None, :],
                    mask=valid[:, None] & (cols < L)[None, :], other=0.0).to(tl.float32)
    b_g = load_log_decay(g, tok * H + i_h, valid, 0.0, True, False)
    b_G = tl.cumsum(b_g, 0)
    g_sum = tl.sum(b_g, 0)
    dt = b_do.dtype
    slot = slot0 + (n - n0)
    e_k = tl.exp(g_sum - b_G)

    b_st = tl.zeros([C, C], dtype=tl.float32)      # key-major scores: [s, t] = k_s·q_t
    b_dv = tl.zeros([C, BV], dtype=tl.float32)
    if WITH_DK:
        b_v = tl.load(v + (tok[:, None] * H + i_h) * V + offs_v[None, :], mask=m_tv, other=0.0)
        # key-major dA masked like A: [s, t] = dO_t·v_s · D · W · scale; the (t, t) pairs stay out
        # of the sum dG takes from k·dk (see _bwd_dqk_kernel) and join dk afterwards. The weights
        # are computed again for A below rather than held through the K loop (registers).
        b_dAt = (tl.dot(b_v, tl.trans(b_do), input_precision=DOT_PREC) * causal_decay(b_G, C, True, True)
                 * _intra_level_weights(b_lam, cols, valid, L, offs, C, LOG_C, True) * scale)
        on_diag = offs[:, None] == offs[None, :]
        b_diag = tl.sum(tl.where(on_diag, b_dAt, 0.0), 1)
        b_dAt = tl.where(on_diag, 0.0, b_dAt).to(dt)
        b_vd = (b_v * e_k[:, None]).to(dt)
        b_dG = tl.zeros([C], dtype=tl.float32)
    if AT_FIRST:
        for k0 in range(0, K, BK):
            offs_k = k0 + tl.arange(0, BK)
            m_tk = valid[:, None] & (offs_k < K)[None, :]
            b_q = tl.load(q + (tok[:, None] * H + i_h) * K + offs_k[None, :], mask=m_tk, other=0.0)
            b_k = tl.load(k + (tok[:, None] * H + i_h) * K + offs_k[None, :], mask=m_tk, other=0.0)
            b_st += tl.dot(b_k, tl.trans(b_q), input_precision=DOT_PREC)
        b_dv = tl.dot(_key_major_weights(b_st, b_G, b_lam, cols, valid, L, offs, scale, C, LOG_C).to(dt), b_do,
                      input_precision=DOT_PREC)
    for k0 in range(0, K, BK):
        offs_k = k0 + tl.arange(0, BK)
        m_k = offs_k < K
        m_tk = valid[:, None] & m_k[None, :]
        m_kv = m_k[:, None] & m_v[None, :]
        b_q = tl.load(q + (tok[:, None] * H + i_h) * K + offs_k[None, :], mask=m_tk, other=0.0)
        b_k = tl.load(k + (tok[:, None] * H + i_h) * K + offs_k[None, :], mask=m_tk, other=0.0)
        if not AT_FIRST:
            b_st += tl.dot(b_k, tl.trans(b_q), input_precision=DOT_PREC)
        if CHAIN:
            if WITH_DK:
                b_dk = tl.dot(b_dAt, b_q, input_precision=DOT_PREC)
            for j in range(1, NJ + 1):
                if ((n >> (j - 1)) & 1) == 0:
                    rsrc = ((n >> (j - 1)) | 1) << (j - 1)
                    if rsrc <= n_last:
                        decay = tl.load(rdec + (slot * H + i_h) * NJ + (j - 1))
                        if TMA_RBLOCKS:
                            b_rb = rblocks.load([((slot0 + rsrc - n0) * H + i_h).to(tl.int32) * K + k0,
                                                 i_v * BV]).to(dt)
                        else:
                            b_rb = tl.load(rblocks + (((slot0 + rsrc - n0) * H + i_h) * K + offs_k[:, None]) * V
                                           + offs_v[None, :], mask=m_kv, other=0.0).to(dt)
                        e_j = (e_k * tl.exp(decay))[:, None]
                        b_dv = tl.dot((b_k * e_j).to(dt), b_rb, b_dv, input_precision=DOT_PREC)
                        if WITH_DK:
                            b_dk = tl.dot((b_v * e_j).to(dt), tl.trans(b_rb), b_dk, input_precision=DOT_PREC)
        else:
            # the same sum as _later_query_states, as a branch per level: its loop without branches
            # made this kernel slower (H100, K = V = 128: 0.58 vs 0.49 ms), unlike dq/dk's
            b_rs = tl.zeros([BK, BV], dtype=tl.float32)
            for j in range(1, NJ + 1):
                if ((n >> (j - 1)) & 1) == 0:
                    rsrc = ((n >> (j - 1)) | 1) << (j - 1)
                    if rsrc <= n_last:
                        decay = tl.load(rdec + (slot * H + i_h) * NJ + (j - 1))
                        b_rs += tl.exp(decay) * tl.load(
                            rblocks + (((slot0 + rsrc - n0) * H + i_h) * K + offs_k[:, None]) * V + offs_v[None, :],
                            mask=m_kv, other=0.0).to(tl.float32)
            b_kd = (b_k * e_k[:, None]).to(dt)
            b_dv += tl.dot(b_kd, b_rs.to(dt), input_precision=DOT_PREC)
            if WITH_DK:
                b_dk = tl.dot(b_vd, tl.trans(b_rs.to(dt)), input_precision=DOT_PREC)
                b_dk = tl.dot(b_dAt, b_q, b_dk, input_precision=DOT_PREC)
        if WITH_DK:
            b_dG -= tl.sum(b_k.to(tl.float32) * b_dk, 1)
            b_dk += b_diag[:, None] * b_q.to(tl.float32)
            tl.store(dk + (tok[:, None] * H + i_h) * K + offs_k[None, :], b_dk.to(dk.dtype.element_ty), mask=m_tk)
    if not AT_FIRST:
        b_At = _key_major_weights(b_st, b_G, b_lam, cols, valid, L, offs, scale, C, LOG_C)
        b_dv += tl.dot(b_At.to(dt), b_do, input_precision=DOT_PREC)
    tl.store(dv + (tok[:, None] * H + i_h) * V + offs_v[None, :], b_dv.to(dv.dtype.element_ty), mask=m_tv)
    if WITH_DK:
        tl.store(dG + tok * H + i_h, b_dG, mask=valid)


# =============================================================================================
# decode step
# =============================================================================================


@triton.jit
def _step_kernel(q, k, v, g, lam, states, new_states, position, o, scale, L, LS,
                 H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, KP: tl.constexpr, BV: tl.constexpr,
                 LP: tl.constexpr, ALL_LEVELS: tl.constexpr):
    """One token at position P for one (V tile, sequence·head). Reads every level (o), then merges
    levels 1..p (p = trailing ones of P) and the token into level p + 1; other levels decay.
    ``new_states`` may be ``states`` (in place: levels above P + 1's bit length are zero and stay
    untouched) or another buffer (ALL_LEVELS: every level is written)."""
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n = i_nh // H
    offs_k = tl.arange(0, KP)
    offs_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = offs_k < K, offs_v < V
    m_kv = m_k[:, None] & m_v[None, :]
    cols = tl.arange(0, LP)
    b_q = tl.load(q + i_nh * K + offs_k, mask=m_k, other=0.0).to(tl.float32)
    b_k = tl.load(k + i_nh * K + offs_k, mask=m_k, other=0.0).to(tl.float32)
    b_v = tl.load(v + i_nh * V + offs_v, mask=m_v, other=0.0).to(tl.float32)
    b_lam = tl.load(lam + i_nh * L + cols, mask=cols < L, other=0.0).to(tl.float32)
    decay = tl.exp(tl.load(g + i_nh).to(tl.float32))
    p = tl.load(position + i_n)
    target = _bit_length(p ^ (p + 1), 63)               # p + 1 in the docstring's terms
    top = _bit_length(p + 1, 63)                        # levels above this stay zero
    b_o = tl.sum(tl.where(cols == 0, b_lam, 0.0), 0) * tl.sum(b_q * b_k, 0) * b_v
    merged = tl.zeros([KP, BV], dtype=tl.float32)
    base = i_nh.to(tl.int64) * LS
    if ALL_LEVELS:
        last = top * 0 + LS
    else:
        last = tl.minimum(top + 1, LS)
    tile = offs_k[:, None] * V + offs_v[None, :]
    if ALL_LEVELS:
        tl.store(new_states + base * K * V + tile, tl.zeros([KP, BV], tl.float32), mask=m_kv)
    for lvl in range(1, last):
        b_h = tl.load(states + (base + lvl) * K * V + tile, mask=m_kv, other=0.0)
        lam_l = tl.sum(tl.where(cols == lvl, b_lam, 0.0), 0)
        b_o += (lam_l * decay) * tl.sum(b_q[:, None] * b_h, 0)
        if lvl < target:
            merged += b_h
            b_h = b_h * 0.0
        elif lvl == target:
            b_h = decay * merged + b_k[:, None] * b_v[None, :]
        else:
            b_h = b_h * decay
        tl.store(new_states + (base + lvl) * K * V + tile, b_h, mask=m_kv)
    tl.store(o + i_nh * V + offs_v, (b_o * scale).to(o.dtype.element_ty), mask=m_v)


# =============================================================================================
# launchers
# =============================================================================================


def _dot_precision(dtype: torch.dtype) -> str:
    # fp32 inputs get exact fp32 products (tf32 would cost ~1e-3 relative error); halves ignore it
    return "ieee" if dtype == torch.float32 else "tf32"


def block_dtype(dtype: torch.dtype) -> torch.dtype:
    """Storage of the per-chunk block states: bf16 inputs keep bf16 (the tensor-core operand it
    becomes anyway; accumulation stays fp32 in registers), fp16 and fp32 keep fp32 (range)."""
    return torch.bfloat16 if dtype == torch.bfloat16 else torch.float32


@dataclass
class ChunkPlan:
    """Where the sequences and chunks of one call live. Dense calls (batch rows starting at
    position 0) need no tables; continued or packed sequences get small device tables."""
    chunk: int
    num_seqs: int                # N
    num_slots: int               # chunk slots over all sequences
    levels: int                  # NJ: chunk levels (bit length of the largest chunk index reached)
    slots_per_seq: int           # dense only
    table: bool
    seq_pos: torch.Tensor | None = None      # [N] int64 start positions
    seq_slot0: torch.Tensor | None = None    # [N] int64 first slot of each sequence
    slot_seq: torch.Tensor | None = None     # [S] int32 sequence of each slot
    slot_chunk: torch.Tensor | None = None   # [S] int32 absolute chunk index of each slot
    from_start: bool = True      # every sequence starts at position 0 (no partial first chunk)


def make_plan(batch: int, seq_len: int, chunk: int, lengths: list[int] | None, starts: list[int] | None,
              device) -> ChunkPlan:
    """Plan for ``lengths`` (packed sequences; None: ``batch`` rows of ``seq_len``) starting at
    ``starts`` (None: all at position 0)."""
    log_c = chunk.bit_length() - 1
    if lengths is None and starts is None:
        nc = cdiv(seq_len, chunk)
        return ChunkPlan(chunk, batch, batch * nc, max(1, (seq_len >> log_c).bit_length()), nc, False)
    lengths = lengths if lengths is not None else [seq_len] * batch
    starts = starts if starts is not None else [0] * len(lengths)
    slot0, slot_seq, slot_chunk = [], [], []
    levels = 1
    for i, (n, p0) in enumerate(zip(lengths, starts)):
        slot0.append(len(slot_seq))
        if n > 0:
            first, last = p0 >> log_c, (p0 + n - 1) >> log_c
            slot_seq.extend([i] * (last - first + 1))
            slot_chunk.extend(range(first, last + 1))
        levels = max(levels, ((p0 + n) >> log_c).bit_length())
    as_tensor = lambda x, dt: torch.tensor(x, dtype=dt, device=device)  # noqa: E731
    return ChunkPlan(chunk, len(lengths), len(slot_seq), levels, 0, True,
                     as_tensor(starts, torch.int64), as_tensor(slot0, torch.int64),
                     as_tensor(slot_seq, torch.int32), as_tensor(slot_chunk, torch.int32),
                     from_start=not any(starts))


def _plan_args(plan: ChunkPlan, dummy):
    return (plan.seq_pos if plan.table else dummy, plan.seq_slot0 if plan.table else dummy)


def _slot_args(plan: ChunkPlan, dummy):
    return (plan.slot_seq if plan.table else dummy, plan.slot_chunk if plan.table else dummy)


# CUDA caps a grid's y and z extents at 65535. The level scans, the stacked block pass and the
# decode step hold one program per (sequence, head) on one of them, so past the cap they launch
# once per group of whole sequences; a program reads only its own sequence, so the results are the
# same bits. MAX_GRID_YZ is read at every launch (tests lower it to run split launches on the CPU).


def launch_groups(num_seqs: int, heads: int) -> list[tuple[int, int]]:
    """(first sequence, sequence count) of each launch whose grid holds one program per
    (sequence, head) on axis y or z: whole sequences, at most MAX_GRID_YZ pairs a launch."""
    # (the per-chunk kernels hold the heads alone on axis z: grid_groups' bound on H covers them)
    return [(first, stop - first) for first, stop in grid_groups(num_seqs, heads, MAX_GRID_YZ)]


@dataclass
class SequenceGroup:
    """One launch's share of a call: views of the call's tensors in which sequence i is the call's
    sequence ``first + i``, as the kernels index them. Packed token rows (cu_seqlens) and tabled
    slots (``seq_slot0``) are absolute, so those tensors pass whole and only the tables are cut."""
    first: int
    count: int
    whole: bool             # the only group: every tensor passes unchanged (no host cost)
    packed: bool            # token rows come from cu_seqlens
    tabled: bool            # slots come from the plan's tables
    slots_per_seq: int      # dense slots: this many per sequence, in sequence order

    def per_sequence(self, x: torch.Tensor | None) -> torch.Tensor | None:
        """A tensor with one leading row per sequence (states, positions, a plan table)."""
        return x if x is None or self.whole else x.narrow(0, self.first, self.count)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """A [B, T, H, *] token tensor: batch rows are the sequences; packed rows stay absolute."""
        return x if self.packed else self.per_sequence(x)

    def slots(self, x: torch.Tensor) -> torch.Tensor:
        """A [S, H, *] tensor of chunk slots (blocks, their decays)."""
        if self.whole or self.tabled:
            return x
        return x.narrow(0, self.first * self.slots_per_seq, self.count * self.slots_per_seq)

    def cu_seqlens(self, cu_seqlens: torch.Tensor | None) -> torch.Tensor | None:
        """The group's count + 1 sequence bounds, values unchanged (token rows stay absolute)."""
        return cu_seqlens if cu_seqlens is None or self.whole else cu_seqlens.narrow(0, self.first, self.count + 1)

    def plan_args(self, plan: ChunkPlan, dummy):
        """The plan's per-sequence tables (start positions, first slots) for the group."""
        return tuple(x if x is dummy else self.per_sequence(x) for x in _plan_args(plan, dummy))


def sequence_groups(num_seqs: int, heads: int, plan: ChunkPlan | None = None,
                    cu_seqlens: torch.Tensor | None = None) -> list[SequenceGroup]:
    """The launch groups of a call over ``num_seqs`` sequences of ``heads`` heads (``launch_groups``)."""
    bounds = launch_groups(num_seqs, heads)
    return [SequenceGroup(first, count, len(bounds) == 1, cu_seqlens is not None,
                          plan is not None and plan.table, plan.slots_per_seq if plan is not None else 0)
            for first, count in bounds]


def level_scan_tiles(config) -> tuple[int, int]:
    """(BK, BV) of the backward's level scans before clipping to K, V: rscan_bk / rscan_bv where
    set, else (0) the block pass's scan tiles, which spill at 64 x 128 where the scans do not."""
    return (int(config.get("rscan_bk", 0)) or int(config["scan_bk"]),
            int(config.get("rscan_bv", 0)) or int(config["scan_bv"]))


def _register_cap(config, key: str, x: torch.Tensor) -> dict:
    """Launch options capping a kernel's registers at config[key] (0: none), so more programs fit
    on an SM. The caps are sized for 16-bit tiles; fp32 ones would spill under them."""
    cap = int(config.get(key, 0)) if x.element_size() == 2 else 0
    return {"maxnreg": cap} if cap else {}


def _tile(size: int, block: int) -> int:
    return min(int(block), max(16, next_pow2(size)))


def _auto_segment(programs: int) -> int:
    """Chunks per segment of the stacked block pass for ``stack_segment`` 0: whole sequences when
    the (tile, sequence·head) programs alone fill the GPU, else 32-chunk segments, one program each
    (H100, bf16: 512 programs whole 0.34-0.40 ms vs 0.39 in segments; 32 programs at B=2 T=16384
    K=V=64 0.546 whole vs 0.146; 64 at B=1 T=131072 K=V=128 4.04 vs 1.67)."""
    return 1 << 30 if programs >= 512 else 32


def _stacked_block_states(k, v, g, blocks, ldec, plan: ChunkPlan, config, cu_seqlens, bk: int,
                          bv: int, skip_level1: bool = False) -> None:
    """Kernel 1 for sequences that start at position 0 with no state in or out: one Fenwick-carry
    pass per tile (per segment of chunks, then a carry across segments) writes ``blocks`` and
    ``ldec``."""
    T, H, K = k.shape[1:]
    V = v.shape[-1]
    chunk = plan.chunk
    nk, nv = cdiv(K, bk), cdiv(V, bv)
    dummy = blocks
    nj = plan.levels
    nc_max = plan.slots_per_seq if not plan.table else cdiv(T, chunk)
    programs = plan.num_seqs * H * nk * nv      # the whole call's: split launches run the same segments
    seg = int(config.get("stack_segment", 0)) or _auto_segment(programs)
    seg = min(seg, next_pow2(max(nc_max, 2)))
    # segments sit on the grid's z axis: long enough that they fit it
    seg = max(seg, next_pow2(cdiv(nc_max, MAX_GRID_YZ)))
    log_s = seg.bit_length() - 1
    ns = cdiv(nc_max, seg)
    nl = max(1, min(nj, log_s))
    nl2 = max(1, nj - log_s)
    in_blocks = bool(int(config.get("stack_in_blocks", 1)))
    common = dict(H=H, K=K, V=V, C=chunk, NJ=nj, NJP=max(2, next_pow2(nj)), LOG_S=log_s,
                  BK=bk, BV=bv, NV=nv, IS_VARLEN=cu_seqlens is not None, TABLE=plan.table,
                  num_warps=int(config["scan_warps"]))
    for group in sequence_groups(plan.num_seqs, H, plan, cu_seqlens):
        # scratch per (tile, sequence·head) program of the group, which numbers its programs from 0
        group_programs = group.count * H * nk * nv
        # the fp32 stack of live blocks; with stack_in_blocks they are read back from ``blocks``
        stack = (torch.empty(group_programs * ns, nl, bk, bv, device=k.device, dtype=torch.float32)
                 if not in_blocks else dummy)
        seg_total = (torch.empty(group_programs, ns, bk, bv, device=k.device, dtype=torch.float32)
                     if ns > 1 else stack)
        seg_decay = torch.empty(group.count * H, ns, device=k.device, dtype=torch.float32) if ns > 1 else stack
        cu = group.cu_seqlens(cu_seqlens) if cu_seqlens is not None else dummy
        slot0 = group.per_sequence(plan.seq_slot0) if plan.table else dummy
        group_blocks, group_ldec = group.slots(blocks), group.slots(ldec)
        _fwd_block_stack_kernel[(nk * nv, group.count * H, ns)](
            group.tokens(k), group.tokens(v), group.tokens(g), group_blocks, group_ldec, stack, seg_total,
            seg_decay, cu, slot0, T, plan.slots_per_seq,
            NL=nl, SEGMENTED=ns > 1, PAIRS=bool(int(config.get("stack_pairs", 0))), SKIP_L1=skip_level1,
            IN_BLOCKS=in_blocks,
            DOT_PREC=_dot_precision(k.dtype),
            num_stages=int(config["num_stages"]),
            **common)
        if ns > 1:
            stack2 = torch.empty(group_programs, nl2, bk, bv, device=k.device, dtype=torch.float32)
            _fwd_block_segments_kernel[(nk * nv, group.count * H)](
                group_blocks, group_ldec, stack2, seg_total, seg_decay, cu, slot0, T, plan.slots_per_seq, ns,
                NL2=nl2, NL2P=max(2, next_pow2(nl2)), num_stages=1, **common)


def _takes_stacked_pass(plan: ChunkPlan, config, init=None, final=None) -> bool:
    """Whether ``block_states`` builds the blocks in the stacked pass (the one that can skip the
    level-1 blocks): sequences from position 0, no state in or out, config ``stack``."""
    return plan.from_start and init is None and final is None and bool(int(config.get("stack", 1)))


def _forward_skips_level1(plan: ChunkPlan, config, init=None) -> bool:
    """The forward's output kernel builds an odd chunk's level-1 block from the previous chunk's
    rows (``out_inline_l1``; sequences from position 0), so the block pass may leave it out."""
    return bool(int(config.get("out_inline_l1", 0))) and plan.from_start and init is None


def _backward_builds_level1(plan: ChunkPlan, config) -> bool:
    """The same in the backward's dq kernel (``dq_inline_l1``, with the levels-outer dq)."""
    return (bool(int(config.get("dq_inline_l1", 0))) and bool(int(config.get("dqk_levels_outer", 1)))
            and _takes_stacked_pass(plan, config))


def backward_can_read_blocks(plan: ChunkPlan, fwd_config, bwd_config) -> bool:
    """Whether a backward with ``bwd_config`` can read the blocks the forward built with
    ``fwd_config`` (``save_blocks``): the same chunk, and the level-1 blocks either stored or
    built inline by the backward too. The forward keeps them only from position 0 with no state
    in or out (its blocks then hold the call's own tokens only, as the backward's do)."""
    return (plan.from_start and int(fwd_config["chunk"]) == int(bwd_config["chunk"])
            and (not _forward_skips_level1(plan, fwd_config) or _backward_builds_level1(plan, bwd_config)))


@dataclass
class SavedBlocks:
    """The forward's Block(P) states and log decays, kept for the backward (op: ``save_blocks``):
    the backward then skips kernel 1. ``config``: the forward's, which built them."""
    blocks: torch.Tensor
    ldec: torch.Tensor
    config: dict


def block_states(k, v, g, plan: ChunkPlan, config, cu_seqlens, init=None, final=None, skip_level1=False):
    """Kernel 1: Block(P) for every chunk slot [S, H, K, V] and the log decays ldec [S, H, NJ];
    writes ``final`` [N, H, L_out, K, V] (fp32, zero-filled) when given. ``skip_level1``: the
    stacked pass may leave the level-1 blocks (P odd) unwritten."""
    B, T, H, K = k.shape
    V = v.shape[-1]
    chunk = plan.chunk
    bk, bv = _tile(K, config["scan_bk"]), _tile(V, config["scan_bv"])
    nk, nv = cdiv(K, bk), cdiv(V, bv)
    blocks = torch.empty(max(plan.num_slots, 1), H, K, V, device=k.device, dtype=block_dtype(k.dtype))
    ldec = torch.empty(max(plan.num_slots, 1), H, plan.levels, device=k.device, dtype=torch.float32)
    dummy = blocks
    if _takes_stacked_pass(plan, config, init, final):
        _stacked_block_states(k, v, g, blocks, ldec, plan, config, cu_seqlens, bk, bv, skip_level1)
        return blocks, ldec
    levels_axis = plan.levels + (1 if final is not None else 0)
    for group in sequence_groups(plan.num_seqs, H, plan, cu_seqlens):
        _fwd_level_scan_kernel[(nk * nv, levels_axis, group.count * H)](
            group.tokens(k), group.tokens(v), group.tokens(g), group.slots(blocks), group.slots(ldec),
            group.per_sequence(init) if init is not None else dummy,
            group.per_sequence(final) if final is not None else dummy,
            group.cu_seqlens(cu_seqlens) if cu_seqlens is not None else dummy, *group.plan_args(plan, dummy),
            T, plan.slots_per_seq, plan.levels,
            init.shape[2] if init is not None else 0, final.shape[2] if final is not None else 0,
            H=H, K=K, V=V, C=chunk, LOG_C=chunk.bit_length() - 1, BK=bk, BV=bv, NV=nv,
            IS_VARLEN=cu_seqlens is not None, TABLE=plan.table, HAS_INIT=init is not None,
            STORE_FINAL=final is not None, DOT_PREC=_dot_precision(k.dtype),
            num_warps=int(config["scan_warps"]), num_stages=int(config["num_stages"]))
    return blocks, ldec


def forward(q, k, v, g, lam, scale: float, config, plan: ChunkPlan, cu_seqlens=None, init=None,
            final_levels: int = 0, out=None, keep_blocks=None):
    """o [B, T, H, V] (q's dtype) and the final states [N, H, final_levels, K, V] fp32 (or None).
    All tensors contiguous; ``init`` [N, H, L_in, K, V] fp32 or None. ``keep_blocks``: a list that
    receives the blocks this call built (``SavedBlocks``) when there is no state in or out (the
    caller checks ``backward_can_read_blocks`` first)."""
    B, T, H, K = q.shape
    V, L = v.shape[-1], lam.shape[-1]
    o = torch.empty_like(v) if out is None else out
    final = (torch.zeros(plan.num_seqs, H, final_levels, K, V, device=q.device, dtype=torch.float32)
             if final_levels else None)
    # an odd chunk's level-1 block from the previous chunk's rows (sequences from position 0)
    inline_level1 = _forward_skips_level1(plan, config, init)
    blocks, ldec = block_states(k, v, g, plan, config, cu_seqlens, init, final, skip_level1=inline_level1)
    if keep_blocks is not None and init is None and final is None and plan.from_start:
        keep_blocks.append(SavedBlocks(blocks, ldec, config))
    if plan.num_slots == 0:
        return o, final
    bv = _tile(V, config["out_bv"])
    dummy = blocks
    kp = max(16, next_pow2(K))
    tma = (bool(int(config.get("out_tma", 0))) and init is None and kp == K
           and tma_loads((blocks,)))
    block_src = TensorDescriptor.from_tensor(blocks.view(-1, V), [kp, bv]) if tma else blocks
    # The inline level-1 rows by descriptor too (out_tma_rows): fewer registers under the cap, but
    # each descriptor costs every launch host time (~45 us on the lent H100's host).
    tma_rows = tma and inline_level1 and bool(int(config.get("out_tma_rows", 0))) and tma_loads((k, v))
    k_rows = TensorDescriptor.from_tensor(k.view(-1, H * K), [plan.chunk, kp]) if tma_rows else k
    v_rows = TensorDescriptor.from_tensor(v.view(-1, H * V), [plan.chunk, bv]) if tma_rows else v
    _fwd_output_kernel[(plan.num_slots, cdiv(V, bv), H)](
        q, k, v, g, lam, block_src, ldec, init if init is not None else dummy, o,
        cu_seqlens if cu_seqlens is not None else dummy, *_plan_args(plan, dummy), *_slot_args(plan, dummy),
        k_rows, v_rows, float(scale), T, plan.slots_per_seq, plan.levels, L, init.shape[2] if init is not None else 0,
        H=H, K=K, V=V, KP=kp, C=plan.chunk,
        LOG_C=plan.chunk.bit_length() - 1, BV=bv, INLINE_L1=inline_level1,
        IS_VARLEN=cu_seqlens is not None, TABLE=plan.table, HAS_INIT=init is not None,
        DOT_PREC=_dot_precision(q.dtype), TMA_BLOCKS=tma, TMA_ROWS=tma_rows,
        num_warps=int(config["out_warps"]), num_stages=int(config["num_stages"]),
        **_register_cap(config, "out_maxnreg", q))
    return o, final


def backward(q, k, v, g, lam, do, scale: float, config, plan: ChunkPlan, cu_seqlens=None, out=None,
             saved: SavedBlocks | None = None):
    """(dq, dk, dv, dg, dλ) of the call's own tokens (sequences may start at the plan's positions;
    an initial state's share is not included); dq/dk/dv in q's dtype, dg and dλ in the dtypes of
    g and level_scales. ``out``: the five buffers to write, or None. ``saved``: the forward's
    blocks (same chunk, from position 0, no initial state), used instead of recomputing them when
    this config's kernels can read them (its dq kernel must build the level-1 blocks inline if
    the forward skipped them)."""
    B, T, H, K = q.shape
    V, L = v.shape[-1], lam.shape[-1]
    device = q.device
    tokens = B * T
    chunk, log_c = plan.chunk, plan.chunk.bit_length() - 1
    if out is None:
        out = (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(g),
               torch.empty_like(lam))
    dq, dk, dv, dg, dlam_out = out
    if plan.num_slots == 0:
        for x in out:
            x.zero_()
        return out
    # dq_inline_l1 (with the levels-outer dq): an odd chunk's level-1 block from the previous chunk's
    # rows, as the forward's output kernel does; the block pass then skips those stores
    levels_outer = bool(int(config.get("dqk_levels_outer", 1)))
    inline_level1 = _backward_builds_level1(plan, config)
    if saved is not None and backward_can_read_blocks(plan, saved.config, config):
        blocks, ldec = saved.blocks, saved.ldec
    else:
        blocks, ldec = block_states(k, v, g, plan, config, cu_seqlens, skip_level1=inline_level1)
    dot_prec = _dot_precision(q.dtype)
    lp = max(2, next_pow2(L))
    common = dict(H=H, K=K, V=V, C=chunk, LOG_C=log_c, IS_VARLEN=cu_seqlens is not None,
                  TABLE=plan.table, DOT_PREC=dot_prec, num_stages=int(config["num_stages"]))
    dummy = blocks
    cu = cu_seqlens if cu_seqlens is not None else dummy

    # 3: λ-weighted query states of right halves, per level
    sbk, sbv = (_tile(size, block) for size, block in zip((K, V), level_scan_tiles(config)))
    snv = cdiv(V, sbv)
    rblocks = torch.empty(plan.num_slots, H, K, V, device=device, dtype=block_dtype(q.dtype))
    rdec = torch.empty(plan.num_slots, H, plan.levels, device=device, dtype=torch.float32)
    for group in sequence_groups(plan.num_seqs, H, plan, cu_seqlens):
        _bwd_level_scan_kernel[(cdiv(K, sbk) * snv, plan.levels, group.count * H)](
            group.tokens(q), group.tokens(do), group.tokens(g), group.tokens(lam), group.slots(rblocks),
            group.slots(rdec), group.cu_seqlens(cu_seqlens) if cu_seqlens is not None else dummy,
            *group.plan_args(plan, dummy), float(scale), T, plan.slots_per_seq, plan.levels, L,
            BK=sbk, BV=sbv, NV=snv, num_warps=int(config["scan_warps"]),
            # their own pipeline depth (configs from before the knob: the shared one)
            **common | {"num_stages": int(config.get("scan_stages", config["num_stages"]))})

    # 4: dq (and dk), dλ and dG (partial over K tiles)
    kbk, kbv = _tile(K, config["dqk_bk"]), _tile(V, config["dqk_bv"])
    nk = cdiv(K, kbk)
    vbk, vbv = _tile(K, config["dv_bk"]), _tile(V, config["dv_bv"])
    # dk_with_dv: the dv kernel also writes dk (it needs the whole V per program; check_config
    # refuses the rest, and a config that slips through keeps dk in the dq/dk kernel)
    dk_with_dv = bool(int(config.get("dk_with_dv", 0))) and cdiv(V, vbv) == 1
    # K tiles each hold a share of dλ and dG; one tile writes dλ straight into the output
    dlam_part = dlam_out if nk == 1 else torch.empty(nk, tokens, H, L, device=device, dtype=torch.float32)
    dG_part = torch.empty(nk + dk_with_dv, tokens, H, device=device, dtype=torch.float32)
    # the levels-outer dq reads its blocks by tensor descriptor (every block live from position 0)
    tma = (bool(int(config.get("dqk_tma", 0))) and levels_outer and plan.from_start and K % kbk == 0
           and tma_loads((blocks,)))
    block_src = TensorDescriptor.from_tensor(blocks.view(-1, V), [kbk, kbv]) if tma else blocks
    _bwd_dqk_kernel[(plan.num_slots, nk, H)](
        q, k, v, g, lam, do, block_src, ldec, rblocks, rdec, dq, dk, dlam_part, dG_part,
        cu, *_plan_args(plan, dummy), *_slot_args(plan, dummy),
        float(scale), T, plan.slots_per_seq, plan.levels, L, tokens,
        BK=kbk, BV=kbv, LP=lp, WITH_DK=not dk_with_dv, LEVELS_OUTER=levels_outer,
        INLINE_L1=inline_level1, TMA_BLOCKS=tma, num_warps=int(config["dqk_warps"]),
        INTRA_FIRST=bool(int(config.get("dq_intra_first", 0))), **common)

    # 5: dv (and dk)
    # dv_chain: one product per later-query state chained on dv (no fp32 sum of them in registers),
    # the states by tensor descriptor where the K tiles divide K
    chain = bool(int(config.get("dv_chain", 0)))
    tma_r = chain and K % vbk == 0 and tma_loads((rblocks,))
    rblock_src = TensorDescriptor.from_tensor(rblocks.view(-1, V), [vbk, vbv]) if tma_r else rblocks
    _bwd_dv_kernel[(plan.num_slots, cdiv(V, vbv), H)](
        q, k, v, g, lam, do, rblock_src, rdec, dv, dk, dG_part[nk] if dk_with_dv else dummy,
        cu, *_plan_args(plan, dummy), *_slot_args(plan, dummy),
        float(scale), T, plan.slots_per_seq, plan.levels, L,
        BK=vbk, BV=vbv, LP=lp, WITH_DK=dk_with_dv, CHAIN=chain, TMA_RBLOCKS=tma_r,
        AT_FIRST=bool(int(config.get("dv_at_first", 0))),
        num_warps=int(config["dv_warps"]), **common)

    # 6: dg = reverse cumsum of dG inside each sequence
    reverse_cumsum(dG_part, dg, cu_seqlens, plan.num_seqs, T, H, partials=nk + dk_with_dv)
    if nk > 1:
        dlam_out.copy_(dlam_part.sum(0).view_as(dlam_out))
    return dq, dk, dv, dg, dlam_out


def step(q, k, v, g, lam, states, position, scale: float, config, out=None, new_states=None):
    """One decode token per sequence. q, k [N, H, K]; v [N, H, V]; g [N, H]; lam [N, H, L];
    states [N, H, LS, K, V] fp32, updated in place unless ``new_states`` is given; position [N]
    int64 (not advanced here)."""
    N, H, K = q.shape
    V, L, LS = v.shape[-1], lam.shape[-1], states.shape[2]
    o = torch.empty_like(v) if out is None else out
    bv = _tile(V, config["block_v"])
    for group in sequence_groups(N, H):
        rows = group.per_sequence
        _step_kernel[(cdiv(V, bv), group.count * H)](
            rows(q), rows(k), rows(v), rows(g), rows(lam), rows(states),
            rows(states if new_states is None else new_states), rows(position), rows(o), float(scale), L, LS,
            H=H, K=K, V=V, KP=max(16, next_pow2(K)), BV=bv, LP=max(2, next_pow2(L)),
            ALL_LEVELS=new_states is not None, num_warps=int(config["num_warps"]))
    return o


# =============================================================================================
# templates
# =============================================================================================

# Bound on _estimate's register count per kernel kind, set from ptxas on sm_90 (triton 3.9): above
# it the kernel spilled. The estimate counts only the named tiles; layouts and addresses roughly
# double it, differently per kernel. "out", "dqk" and "dv" from triton 3.6 on the H100 (session 8):
# out estimates of 328-336 compiled to 202-243 registers without spills; dqk 212 and 264 to 255
# with 20 and 80 spilled and still the fastest, 424 to 366 spilled (slow); dv 360 to 255 with 2.
# Session 17: dq alone on the whole V at K = V = 128 (estimate 296) to 255 with 48 spilled, the
# fastest dq there (0.637 vs 0.676 ms on 64-wide V tiles).
# The bounds drop what cannot fit and leave the rest to the tuner's clock.
MAX_REGISTERS = {"scan": 120, "rscan": 120, "out": 340, "dqk": 300, "dv": 370}
DEFAULT_SHARED_MEMORY = 227 * 1024


def _pow2(x: int) -> int:
    return max(16, next_pow2(int(x)))


def chunk_levels(seq_len: int, chunk: int) -> int:
    """NJ: chunk levels a sequence of ``seq_len`` tokens reaches (the level-axis grid size)."""
    return max(1, (seq_len // chunk).bit_length())


def _randn(shape, dtype: torch.dtype, device, generator: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape, generator=generator) * scale).to(device=device, dtype=dtype)


def make_gates(shape, device, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Model-like fp32 log decays (log-sigmoid, mostly near 0) and level scales in (0.5, 1.5)."""
    B, T, H, L = shape
    g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, generator=generator) + 4.0)
    lam = torch.rand(B, T, H, L, generator=generator) + 0.5
    return g.to(device), lam.to(device)


class _LogLinearTemplate(Template):
    op = "loglinear_attention"
    dims = ("B", "T", "H", "K", "V", "L")
    dtypes = ("bf16", "fp16")
    workload = [
        {"B": 8, "T": 4096, "H": 16, "K": 128, "V": 128, "L": 13},      # issue targets
        {"B": 8, "T": 4096, "H": 16, "K": 64, "V": 64, "L": 13},
        {"B": 2, "T": 16384, "H": 16, "K": 64, "V": 64, "L": 15},
        {"B": 1, "T": 131072, "H": 16, "K": 128, "V": 128, "L": 18},
        {"B": 4, "T": 2048, "H": 8, "K": 256, "V": 256, "L": 12},
    ]
    quick_workload = [{"B": 8, "T": 4096, "H": 16, "K": 128, "V": 128, "L": 13},
                      {"B": 8, "T": 4096, "H": 16, "K": 64, "V": 64, "L": 13}]
    cpu_workload = [{"B": 2, "T": 45, "H": 2, "K": 16, "V": 16, "L": 7}]

    def source_files(self) -> list[Path]:
        # The kernels inline chunk_common's helpers, and the backward ends in reverse_cumsum's:
        # a change there is a change here.
        return [Path(__file__)] + [Path(__file__).with_name(f) for f in ("chunk_common.py", "reverse_cumsum.py")]

    def make_inputs(self, shape, dtype: str, flags: str, device, generator: torch.Generator) -> Tensors:
        B, T, H, K, V, L = (shape[d] for d in self.dims)
        g, lam = make_gates((B, T, H, L), device, generator)
        return {"q": _randn((B, T, H, K), DTYPES[dtype], device, generator),
                "k": _randn((B, T, H, K), DTYPES[dtype], device, generator),
                "v": _randn((B, T, H, V), DTYPES[dtype], device, generator),
                "g": g, "level_scales": lam}

    def verification_shape(self, shape) -> dict[str, int]:
        # the float64 reference is O(T^2): verify one sequence and two heads at the full length
        return {**shape, "B": 1, "H": min(shape["H"], 2)}

    def _powers_ok(self, config) -> str | None:
        """Chunks, tiles and segments index bits and aranges: each must be a power of two (a
        segment of 0 means automatic, a level-scan tile of 0 the block pass's). Catches hand-edited
        tuned files before a launch does."""
        for name in self.space:
            if name.endswith(("_bk", "_bv")) or name in ("chunk", "stack_segment"):
                may_be_zero = name == "stack_segment" or name.startswith("rscan_")
                value = int(config.get(name, 0 if may_be_zero else 16))
                if not (value == 0 and may_be_zero) and (value < 2 or value & (value - 1)):
                    return f"{name}={value} is not a power of two"
        return None

    def _chunk_ok(self, config, shape) -> str | None:
        problem = self._powers_ok(config)
        if problem:
            return problem
        chunk, T = int(config["chunk"]), shape["T"]
        if chunk > max(min(self.space["chunk"]), next_pow2(T)):
            return f"chunk {chunk} > next power of two of T={T}"
        return None

    def _pairs_ok(self, config) -> str | None:
        # H100, Triton 3.6: this one stacked pair-pass layout hits an out-of-range shared address
        # (compute-sanitizer, round 61); 32x32, 32x64, 128x64 and 8 warps run clean
        if (int(config.get("stack_pairs", 0)) and int(config["scan_bv"]) == 32 and int(config["scan_bk"]) >= 64
                and int(config["scan_warps"]) <= 4):
            return "stack_pairs with scan_bv=32 under scan_bk>=64 on <=4 warps is miscompiled by Triton 3.6 (sm_90)"
        return None

    def _tile_ok(self, name: str, config, size: int) -> str | None:
        tile = int(config.get(name, 0))     # 0: a knob that defers to another (rscan_*)
        if tile > max(min(self.space[name]), _pow2(size)):
            return f"{name}={tile} > padded size {_pow2(size)}"
        return None


def _estimate(kind: str, config, shape, elt: int) -> tuple[float, int]:
    """(fp32 registers per thread, shared-memory bytes) of one kernel's live tiles. Dot operands
    are staged in shared memory (num_stages copies of what a loop streams)."""
    C, KP, VP, LP = int(config["chunk"]), _pow2(shape["K"]), _pow2(shape["V"]), _pow2(shape["L"])
    stages = max(1, int(config.get("num_stages", 1)))
    dk_with_dv = int(config.get("dk_with_dv", 0))
    if kind in ("scan", "rscan"):     # the block pass; the backward's level scans (rscan)
        tiles = level_scan_tiles(config) if kind == "rscan" else (int(config["scan_bk"]), int(config["scan_bv"]))
        bk, bv, warps = min(tiles[0], KP), min(tiles[1], VP), int(config["scan_warps"])
        regs = 4 * bk * bv + elt * C * (bk + bv)
        if kind == "scan" and int(config.get("stack_pairs", 0)):    # a second chunk's product and rows
            regs += 4 * bk * bv + elt * C * (bk + bv)
        if kind == "rscan":
            stages = max(1, int(config.get("scan_stages", stages)))
        smem = stages * elt * C * (bk + bv)
    elif kind == "out":
        bv, warps = min(int(config["out_bv"]), VP), int(config["out_warps"])
        regs = 2 * elt * C * KP + elt * C * bv + 3 * 4 * C * C + 4 * C * bv + elt * KP * bv
        smem = elt * (2 * C * KP + C * bv + C * C) + stages * elt * KP * bv
    elif kind == "dqk":
        bk, bv, warps = min(int(config["dqk_bk"]), KP), min(int(config["dqk_bv"]), VP), int(config["dqk_warps"])
        regs = 2 * elt * C * bk + 3 * 4 * C * bk + 2 * 4 * C * C + 2 * elt * C * bv + 4 * bk * bv + 4 * C * LP
        if dk_with_dv:      # no dk accumulator, no ΣRBlock tile
            regs -= 4 * C * bk + 4 * bk * bv
        if int(config.get("dq_intra_first", 0)):     # dA gone before the levels' products
            regs -= 4 * C * C
        # the levels stream dO and a block per stage; v too only where dk is computed here
        smem = elt * (2 * C * bk + C * C) + stages * elt * ((1 + (not dk_with_dv)) * C * bv + bk * bv)
    else:   # dv
        bk, bv, warps = min(int(config["dv_bk"]), KP), min(int(config["dv_bv"]), VP), int(config["dv_warps"])
        regs = elt * C * bv + 4 * C * bv + 2 * 4 * C * C + 2 * elt * C * bk + 4 * bk * bv
        if dk_with_dv:      # v, the masked dAᵀ and its weights, a dk tile
            regs += elt * C * bv + (elt + 4) * C * C + 4 * C * bk
        if int(config.get("dv_chain", 0)):     # no ΣRBlock tile: one state at a time, in shared memory
            regs -= 4 * bk * bv
        smem = elt * (C * bv + C * C) + stages * elt * (2 * C * bk + bk * bv)
    return regs / 4 / (32 * warps), smem


def _fits(kinds, config, shape, gpu, dtype_bytes: int = 2) -> str | None:
    shared = gpu.shared_memory_per_block if gpu is not None else DEFAULT_SHARED_MEMORY
    for kind in kinds:
        regs, smem = _estimate(kind, config, shape, dtype_bytes)
        if regs > MAX_REGISTERS[kind]:
            return f"{kind} kernel needs ~{regs:.0f} registers per thread > {MAX_REGISTERS[kind]}"
        if smem > shared:
            return f"{kind} kernel needs ~{smem} B of shared memory > {shared} B"
    return None


def _default_chunk(shape) -> int:
    # 64 fills tensor cores and keeps the level count low; short sequences get smaller chunks
    chunk = 64 if shape["K"] <= 128 and shape["V"] <= 128 else 32
    return max(16, min(chunk, next_pow2(max(1, shape["T"])) // 4))




class LogLinearForward(_LogLinearTemplate):
    """o of log-linear attention: level scans (block states) + chunk outputs; tuned together."""
    name = "loglinear_attention.fwd"
    kernel = "fwd"
    space = {"chunk": [16, 32, 64, 128], "scan_bk": [32, 64, 128], "scan_bv": [32, 64, 128],
             "scan_warps": [2, 4, 8], "out_bv": [32, 64, 128], "out_warps": [4, 8], "num_stages": [1, 2, 3],
             "stack": [1, 0], "stack_segment": [0, 8, 16, 32], "stack_pairs": [0, 1], "out_inline_l1": [0, 1],
             "stack_in_blocks": [0, 1], "out_tma": [1, 0], "out_tma_rows": [1, 0], "out_maxnreg": [0, 128, 168]}

    def candidates(self, shape, gpu=None) -> list[Config]:
        # level-1 blocks stored by the block pass instead of built by the output kernel, and the
        # stacked block pass two chunks a step (its registers ask for 8 warps; at K = V = 64 with
        # level-1 blocks inline: 0.276 ms against 0.329, H100 bf16)
        return [{"out_inline_l1": 0}, {"stack_pairs": 1, "scan_warps": 8},
                {"stack_pairs": 1, "scan_warps": 8, "out_inline_l1": 1}, {"stack_in_blocks": 0}]

    def default_config(self, shape, gpu=None) -> Config:
        KP, VP = _pow2(shape["K"]), _pow2(shape["V"])
        # H100, bf16 (session 8): the output kernel with the whole V on 4 warps (202 registers, two
        # programs per SM) 0.50 ms against 0.74 for 64 on 8 warps at K = V = 128, 0.20 vs 0.27 at 64.
        # The stacked block pass runs one program per (tile, sequence·head), and per segment of
        # chunks when those are few (stack_segment 0: see _auto_segment); below 128 sequence·heads
        # on 32-wide V tiles (B=2 T=16384 K=V=64: 0.137 vs 0.146 ms). One stage (session 9): the
        # output kernel's pipelined block loads need shared memory for a second block, which leaves
        # one program per SM (0.62 vs 0.44 ms at K = V = 128). Level-1 blocks built by the output
        # kernel (session 10): forward 0.84 -> 0.69 ms at K = V = 128, 0.33 -> 0.28 at 64. Live
        # blocks read back from the stored blocks, no fp32 stack (session 11): the block pass 0.27
        # -> 0.21 ms at 128 (forward 0.69 -> 0.63), 0.10 -> 0.08 at 64; errors against float64
        # unchanged to three digits (bf16, model-like gates). Level blocks by tensor descriptor,
        # which frees the registers a block tile took on its way to shared memory (at 128 the
        # inline level-1 rows too: without, 10 registers spill under the cap, 0.345 -> 0.367 ms;
        # not at 64, where the launch's host time would show: a descriptor costs ~45 us there), and
        # a register cap for three programs per SM at K = V = 128 (168) or four at 64 (128)
        # (session 12): output kernel 0.418 -> 0.345 ms at 128 (forward 0.632 -> 0.563), 0.180 ->
        # 0.164 at 64.
        small = KP <= 128 and VP <= 128
        many = shape["B"] * shape["H"] >= 128
        return {"chunk": _default_chunk(shape), "scan_bk": min(64, KP), "scan_bv": min(64 if many else 32, VP),
                "scan_warps": 4, "out_bv": min(128, VP) if small else 64, "out_warps": 4 if small else 8,
                "num_stages": 1, "stack": 1, "stack_segment": 0, "stack_pairs": 0, "out_inline_l1": int(small),
                "stack_in_blocks": 1, "out_tma": 1, "out_tma_rows": int(max(KP, VP) >= 128),
                "out_maxnreg": 128 if max(KP, VP) <= 64 else 168 if small else 0}

    def check_config(self, config, shape, gpu=None) -> str | None:
        return (self._chunk_ok(config, shape) or self._tile_ok("scan_bk", config, shape["K"])
                or self._tile_ok("scan_bv", config, shape["V"]) or self._tile_ok("out_bv", config, shape["V"])
                or self._pairs_ok(config) or _fits(("scan", "out"), config, shape, gpu))

    def flops(self, shape, dtype: str, flags: str = "") -> float:
        B, T, H, K, V, _ = (shape[d] for d in self.dims)
        chunk = 64
        levels = chunk_levels(T, chunk)
        # intra-chunk (causal half of C×C, q·k and ·v) + per-level q·Block + the level scans' k·vᵀ
        return B * T * H * (chunk * (K + V) + 2.0 * levels * K * V)

    def bytes(self, shape, dtype: str, flags: str = "") -> float:
        B, T, H, K, V, L = (shape[d] for d in self.dims)
        size = DTYPES[dtype].itemsize
        return B * T * H * (size * (2 * K + 2 * V) + 4 * (1 + L))

    def allocate_outputs(self, inputs, shape, dtype: str, flags: str) -> Tensors:
        return {"o": torch.empty_like(inputs["v"])}

    def launch(self, config, inputs, outputs, shape, flags: str) -> None:
        q = inputs["q"]
        B, T = q.shape[:2]
        plan = make_plan(B, T, int(config["chunk"]), None, None, q.device)
        forward(q, inputs["k"], inputs["v"], inputs["g"], inputs["level_scales"], q.shape[-1] ** -0.5,
                config, plan, out=outputs["o"])

    def reference(self, inputs, shape, flags: str) -> Tensors:
        o, _ = ref.loglinear_attention_reference(inputs["q"], inputs["k"], inputs["v"], inputs["g"],
                                                 inputs["level_scales"])
        return {"o": o}


class LogLinearBackward(_LogLinearTemplate):
    """dq, dk, dv, dg, dλ: block recompute, reverse level scans, a dq/dk/dλ kernel, a dv kernel."""
    name = "loglinear_attention.bwd"
    kernel = "bwd"
    workload = _LogLinearTemplate.workload[:3] + _LogLinearTemplate.workload[4:]
    space = {"chunk": [16, 32, 64], "scan_bk": [32, 64, 128], "scan_bv": [32, 64, 128], "scan_warps": [2, 4, 8],
             "dqk_bk": [32, 64, 128], "dqk_bv": [32, 64, 128], "dqk_warps": [4, 8], "dqk_levels_outer": [1, 0],
             "dq_inline_l1": [0, 1],
             "dv_bk": [32, 64, 128], "dv_bv": [32, 64, 128], "dv_warps": [4, 8], "num_stages": [1, 2, 3],
             "stack": [1, 0], "stack_segment": [0, 8, 16, 32], "dk_with_dv": [0, 1], "stack_pairs": [0, 1],
             "scan_stages": [1, 2, 3], "stack_in_blocks": [0, 1], "dqk_tma": [1, 0], "dv_chain": [0, 1],
             "dv_at_first": [0, 1], "dq_intra_first": [0, 1],
             "rscan_bk": [0, 32, 64, 128], "rscan_bv": [0, 32, 64, 128]}

    def default_config(self, shape, gpu=None) -> Config:
        KP, VP = _pow2(shape["K"]), _pow2(shape["V"])
        # dqk_tma (session 12): the levels-outer dq reads its blocks by tensor descriptor; with three
        # stages dq/dk 1.53 -> 1.45 ms at K = V = 128 (backward 2.64 -> 2.59), even at 64. dv_chain:
        # dv 0.49 -> 0.44 ms at K = V = 128 (backward 2.58-2.60 -> 2.53, round 121: the default
        # there since session 15), 0.25 -> 0.27 at 64 (backward 1.10 -> 1.12: a candidate there).
        # scan_stages: the level scans' pipelined loads (their loop is one flat walk since session
        # 10: H100 bf16 K = V = 128, 0.52 -> 0.40 ms at two stages). dqk_levels_outer (session 11):
        # each level's dO·Blockᵀ summed over the V tiles before its dq update and dλ row reduction,
        # dq/dk 1.67 -> 1.52 ms at K = V = 128 (spills 30 -> 8 registers); even at 64 (one V tile).
        # dq_inline_l1: dq builds the level-1 blocks, the block pass skips them: 0.39 -> 0.27 ms for
        # the block pass at K = V = 128, dq/dk unchanged (backward 2.84 -> 2.71); at 64 dq spills
        # more (1.22 vs 1.13 ms), so not there. stack_in_blocks: as in the forward (2.71 -> 2.66).
        if KP > 128 or VP > 128:
            # measured without spills on sm_90 at K = V = 256 (chunk 32)
            return {"chunk": _default_chunk(shape), "scan_bk": 64, "scan_bv": 64, "scan_warps": 4,
                    "dqk_bk": 64, "dqk_bv": 32, "dqk_warps": 8, "dv_bk": 64, "dv_bv": 64, "dv_warps": 8,
                    "num_stages": 2, "stack": 1, "stack_segment": 0, "dk_with_dv": 0, "stack_pairs": 0,
                    "scan_stages": 2, "dqk_levels_outer": 1, "dq_inline_l1": 0, "stack_in_blocks": 1, "dqk_tma": 1}
        # H100, bf16 (session 8, B=8 T=4096 H=16): K = V = 128 dq/dk on 128 × 64 tiles and 8 warps
        # 3.37 ms for the whole backward against 5.42 on 64 × 32; dv on whole tiles and 4 warps a
        # further −0.25. K = V = 64: dq/dk on 4 warps 1.44 against 1.95. Session 9: one stage at
        # K = V = 64 (1.16 vs 1.23 ms; dq/dk spills less), two at 128 (3.13 vs 3.17).
        # dk_with_dv (session 16, K = V = 128): dq alone in the dq/dk kernel (0.91 ms), dk and dv
        # in one kernel with both chains (0.91 on 64-wide K tiles, 4 warps; the two kernels took
        # 1.46 + 0.44): backward 2.56 -> 2.47 ms; with dv_at_first on the whole K (its scores and
        # Aᵀ·dO before the states' products: 116 -> 38 spilled registers) 0.67, backward 2.24.
        # dq_intra_first: dq's in-chunk pairs before the levels, so dA and k are not live through
        # them, which lets dq alone run on 4 warps (two programs per SM): 0.92 -> 0.68 ms, backward
        # 2.23 -> 2.00 (on 8 warps it changes nothing: 0.94). Session 17 (rounds 146-151): three
        # stages for the level scans (0.401 -> 0.377 ms), dq on the whole V (0.676 -> 0.637: 48
        # spilled registers against 58) and the level scans on 64 x 128 tiles of their own (0.377 ->
        # 0.361; the block pass spills on those): backward 2.00 -> 1.93.
        big = KP == 128 and VP == 128
        return {"chunk": _default_chunk(shape), "scan_bk": min(64, KP), "scan_bv": min(64, VP), "scan_warps": 4,
                "dqk_bk": KP, "dqk_bv": VP if big else min(64, VP), "dqk_warps": 8 if KP >= 128 and not big else 4,
                # K = V = 64: the tuner's pick in two studies (1.067 vs 1.101 ms, rounds 145 and 152)
                "dq_intra_first": int(big or (KP == 64 and VP == 64)),
                # one K tile with 32-wide V tiles once gave a wrong dv (triton 3.6, sm_90): not a default
                "dv_bk": KP if VP >= 64 else min(64, KP), "dv_bv": VP, "dv_warps": 4, "dv_at_first": int(big),
                "num_stages": 3 if KP >= 128 else 1, "stack": 1, "stack_segment": 0, "dk_with_dv": int(big),
                "stack_pairs": 0,
                "scan_stages": 3 if big else 2, "dqk_levels_outer": 1, "dq_inline_l1": int(big),
                "stack_in_blocks": 1, "dqk_tma": 1, "dv_chain": int(big), "rscan_bk": 0, "rscan_bv": VP if big else 0}

    def candidates(self, shape, gpu=None) -> list[Config]:
        # dk where the default does not write it: by the dv kernel (the whole V per program, so K
        # in tiles; the dq/dk kernel then holds dq alone), with dv's and dk's later-query states
        # chained on their accumulators or summed in registers, or by the dq/dk kernel. And the
        # level scans unpipelined (one stage: K = V = 64 measured even in session 10); and dq/dλ
        # per (level, V tile), the layout before session 11; and dq building the level-1 blocks
        # the block pass then skips (its stores; at K = V = 64 dq spills more for it on sm_90); and
        # dq's in-chunk pairs before its levels (dq_intra_first) or after them; and
        # dv the other way than the default: one chained product per later-query state, without
        # their fp32 sum in registers, or that sum; and the dv kernel's scores before its main
        # loop (dv_at_first) or in it.
        KP, VP = _pow2(shape["K"]), _pow2(shape["V"])
        default = self.default_config(shape, gpu)
        dv_other = {"dv_chain": 1 - int(default.get("dv_chain", 0))}
        if int(default.get("dk_with_dv", 0)):
            # the states summed: on narrower K tiles (the sum tile's registers), scores in the loop
            dv_other = {"dv_chain": 0, "dv_at_first": 0, "dv_bk": min(64, KP)}
            dk_moves = [{"dk_with_dv": 0, "dv_at_first": 0, "dv_bk": KP, "dv_bv": VP, "dv_warps": 4, "dqk_warps": 8,
                         "dq_intra_first": 0, "dqk_bv": min(64, VP)},
                        {"dv_at_first": 0, "dv_bk": min(64, KP)}]
        elif VP > max(self.space["dv_bv"]):
            dk_moves = []
        else:
            # with both kernels' registers freed (scores first in dv, in-chunk pairs first in dq):
            # no spills in either at K = V = 64 on sm_90 (280 spilled bytes in dq/dk by default)
            bk = min(64, KP)
            first = int(bk == KP)
            dk_moves = [{"dk_with_dv": 1, "dv_chain": chain, "dv_bv": VP, "dv_bk": bk, "dv_warps": warps,
                         "dv_at_first": at_first, "dq_intra_first": at_first}
                        for chain, warps, at_first in ((1, 4, 0), (1, 4, first), (0, 4, 0), (0, 8, 0))]
        eight_warps = {"dqk_warps": 8, "dqk_bv": min(64, VP)} if int(default.get("dk_with_dv", 0)) else {}
        intra = ([{"dq_intra_first": 0, **eight_warps}] if int(default.get("dq_intra_first", 0))
                 else [{"dq_intra_first": 1}])
        # the level scans on the block pass's tiles, two stages, dq on 64-wide V tiles (session 16)
        tiles = [{"scan_stages": 2, "rscan_bv": 0, "dqk_bv": min(64, VP)}] if int(default.get("rscan_bv", 0)) else []
        return ([{"scan_stages": 1}, {"dqk_levels_outer": 0}, {"dq_inline_l1": 1}, {"stack_in_blocks": 0},
                 dv_other] + dk_moves + intra + tiles)

    def check_config(self, config, shape, gpu=None) -> str | None:
        for name, dim in (("scan_bk", "K"), ("scan_bv", "V"), ("rscan_bk", "K"), ("rscan_bv", "V"),
                          ("dqk_bk", "K"), ("dqk_bv", "V"), ("dv_bk", "K"), ("dv_bv", "V")):
            problem = self._tile_ok(name, config, shape[dim])
            if problem:
                return problem
        if int(config.get("dk_with_dv", 0)) and int(config["dv_bv"]) < _pow2(shape["V"]):
            return f"dk_with_dv needs the whole V in one dv tile (dv_bv={config['dv_bv']} < {_pow2(shape['V'])})"
        # H100, Triton 3.6 (round 139): dk in the dv kernel on K tiles narrower than 64 that do not
        # span K gave a wrong dk or an illegal address (chained states on 4 and 8 warps; summed
        # ones on 4 warps at K = 32 and 64), right in the interpreter; wider tiles run clean
        if int(config.get("dk_with_dv", 0)) and int(config["dv_bk"]) < min(64, _pow2(shape["K"])):
            return (f"dk_with_dv on dv_bk={config['dv_bk']} < {min(64, _pow2(shape['K']))} is miscompiled by "
                    "Triton 3.6 (sm_90)")
        # H100, Triton 3.6 (round 140): the scores' own loop over two K tiles gave a wrong dk
        # (right in the interpreter); over one it runs clean
        if int(config.get("dv_at_first", 0)) and int(config["dv_bk"]) < _pow2(shape["K"]):
            return (f"dv_at_first on dv_bk={config['dv_bk']} < K={_pow2(shape['K'])} (several K tiles) is "
                    "miscompiled by Triton 3.6 (sm_90)")
        return (self._chunk_ok(config, shape) or self._pairs_ok(config)
                or _fits(("scan", "rscan", "dqk", "dv"), config, shape, gpu))

    def flops(self, shape, dtype: str, flags: str = "") -> float:
        return 2.5 * LogLinearForward.flops(self, shape, dtype, flags)

    def bytes(self, shape, dtype: str, flags: str = "") -> float:
        B, T, H, K, V, L = (shape[d] for d in self.dims)
        size = DTYPES[dtype].itemsize
        return B * T * H * (size * (4 * K + 4 * V) + 4 * (2 + 2 * L))

    def tolerance(self, dtype: str, output: str) -> float:
        # dg is a suffix sum of q·dq − k·dk whose full sum is exactly 0: rounding of the terms
        # shows more in it than in the other gradients
        scale = 2.0 if output == "dg" else 1.0
        return scale * {"fp32": 1e-4, "fp16": 1e-2, "bf16": 5e-2}[dtype]

    def make_inputs(self, shape, dtype: str, flags: str, device, generator: torch.Generator) -> Tensors:
        inputs = super().make_inputs(shape, dtype, flags, device, generator)
        inputs["do"] = _randn(inputs["v"].shape, DTYPES[dtype], device, generator)
        return inputs

    def allocate_outputs(self, inputs, shape, dtype: str, flags: str) -> Tensors:
        return {"dq": torch.empty_like(inputs["q"]), "dk": torch.empty_like(inputs["k"]),
                "dv": torch.empty_like(inputs["v"]), "dg": torch.empty_like(inputs["g"]),
                "dlevel_scales": torch.empty_like(inputs["level_scales"])}

    def launch(self, config, inputs, outputs, shape, flags: str) -> None:
        q = inputs["q"]
        B, T = q.shape[:2]
        plan = make_plan(B, T, int(config["chunk"]), None, None, q.device)
        backward(q, inputs["k"], inputs["v"], inputs["g"], inputs["level_scales"], inputs["do"],
                 q.shape[-1] ** -0.5, config, plan,
                 out=tuple(outputs[n] for n in ("dq", "dk", "dv", "dg", "dlevel_scales")))

    def reference(self, inputs, shape, flags: str) -> Tensors:
        names = ("q", "k", "v", "g", "level_scales")
        grads = {n: torch.empty(inputs[n].shape, dtype=torch.float64, device=inputs[n].device) for n in names}
        B, H = inputs["q"].shape[0], inputs["q"].shape[2]
        # one (sequence, head) at a time keeps the O(T^2) autograd graph small
        for b in range(B):
            for h in range(H):
                leaves = [inputs[n][b:b + 1, :, h:h + 1].detach().to(torch.float64).requires_grad_() for n in names]
                o, _ = ref.loglinear_attention_reference(*leaves)
                do = inputs["do"][b:b + 1, :, h:h + 1].to(torch.float64)
                for n, d in zip(names, torch.autograd.grad(o, leaves, do)):
                    grads[n][b:b + 1, :, h:h + 1] = d
        return {"dq": grads["q"], "dk": grads["k"], "dv": grads["v"], "dg": grads["g"],
                "dlevel_scales": grads["level_scales"]}


class LogLinearStep(Template):
    """One decode token per sequence against the per-level states."""
    name = "loglinear_attention.step"
    op = "loglinear_attention"
    kernel = "step"
    dims = ("B", "H", "K", "V", "L")
    dtypes = ("bf16", "fp16")
    space = {"block_v": [16, 32, 64, 128], "num_warps": [1, 2, 4, 8]}
    workload = [{"B": 8, "H": 16, "K": 128, "V": 128, "L": 20}, {"B": 64, "H": 16, "K": 64, "V": 64, "L": 16},
                {"B": 1, "H": 16, "K": 128, "V": 128, "L": 18}]
    quick_workload = [{"B": 8, "H": 16, "K": 128, "V": 128, "L": 20}]
    cpu_workload = [{"B": 3, "H": 2, "K": 16, "V": 16, "L": 7}]

    def default_config(self, shape, gpu=None) -> Config:
        return {"block_v": min(16 if shape["K"] > 64 else 32, _pow2(shape["V"])), "num_warps": 4}

    def check_config(self, config, shape, gpu=None) -> str | None:
        if config["block_v"] > max(16, _pow2(shape["V"])):
            return f"block_v {config['block_v']} > padded V"
        regs = 2 * _pow2(shape["K"]) * config["block_v"] / (32 * config["num_warps"])
        if regs > 64:     # two fp32 state tiles; ptxas: K=128, block_v=32, 4 warps just fits
            return f"state tiles need ~{regs:.0f} registers per thread > 64"
        return None

    def flops(self, shape, dtype: str, flags: str = "") -> float:
        B, H, K, V, L = (shape[d] for d in self.dims)
        return 4.0 * B * H * L * K * V

    def bytes(self, shape, dtype: str, flags: str = "") -> float:
        B, H, K, V, L = (shape[d] for d in self.dims)
        return B * H * (8.0 * L * K * V + DTYPES[dtype].itemsize * (2 * K + 2 * V) + 4 * (1 + L))

    def make_inputs(self, shape, dtype: str, flags: str, device, generator: torch.Generator) -> Tensors:
        B, H, K, V, L = (shape[d] for d in self.dims)
        g, lam = make_gates((B, 1, H, L), device, generator)
        # positions whose merge reaches several levels, states only where the position has bits
        position = torch.randint(1, 1 << (L - 2), (B,), generator=generator)
        position[0] = (1 << (L - 2)) - 1
        bits = torch.stack([(position >> (lvl - 1)) & 1 if lvl else position * 0 for lvl in range(L)], 1)
        states = torch.randn(B, H, L, K, V, generator=generator) * 0.1 * bits[:, None, :, None, None]
        return {"q": _randn((B, H, K), DTYPES[dtype], device, generator),
                "k": _randn((B, H, K), DTYPES[dtype], device, generator),
                "v": _randn((B, H, V), DTYPES[dtype], device, generator),
                "g": g[:, 0].contiguous(), "level_scales": lam[:, 0].contiguous(),
                "states": states.to(device), "position": position.to(device)}

    def allocate_outputs(self, inputs, shape, dtype: str, flags: str) -> Tensors:
        return {"o": torch.empty_like(inputs["v"]), "states": torch.empty_like(inputs["states"])}

    def launch(self, config, inputs, outputs, shape, flags: str) -> None:
        step(inputs["q"], inputs["k"], inputs["v"], inputs["g"], inputs["level_scales"], inputs["states"],
             inputs["position"], inputs["q"].shape[-1] ** -0.5, config, out=outputs["o"],
             new_states=outputs["states"])

    def reference(self, inputs, shape, flags: str) -> Tensors:
        os_, states = [], []
        scale = inputs["q"].shape[-1] ** -0.5
        for b, position in enumerate(inputs["position"].tolist()):
            new, o = ref.recurrent_step(inputs["states"][b].double(), *(inputs[n][b].double() for n in
                                        ("q", "k", "v", "g", "level_scales")), position, scale)
            os_.append(o)
            states.append(new)
        return {"o": torch.stack(os_), "states": torch.stack(states)}


register(LogLinearForward())
register(LogLinearBackward())
register(LogLinearStep())
