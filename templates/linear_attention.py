"""Chunked linear attention: Triton kernels, launchers and the tunable templates.

Math (see kernelgen/reference/linear_attention.py): o_t = Σ_{s≤t} Γ(s→t)·w(t,s)·v_s, optionally
divided by Σ Γ·w + 1e-6; state S = Σ Γ·φ'(k)·vᵀ [K', V] (and z = Σ Γ·φ'(k) when normalizing).

Algorithm. Tokens are cut into chunks of ``chunk`` rows. Inside a chunk the decay-masked causal
product (φq·φkᵀ ⊙ D)·v runs on tensor cores; across chunks a K'×BV state tile is carried in
registers by one program per (V tile, head, segment), looping over its chunks. A sequence can be
cut into segments of ``split_len`` tokens to get more programs than heads (long T, small B):
    1. ``_state_pass_kernel``  each segment's own end state, from zero (k, v only)
    2. ``_state_scan_kernel``  exclusive scan over segments: each segment's start state
    3. ``_fwd_kernel``         outputs, each segment starting from its start state
With ``split_len = 0`` (or ≥ T) only kernel 3 runs: states are never written to memory.
Kernel 3 carries the state transposed (Sᵀ [BV, K], left operand from registers); taylor2 and the
normalised identity map take ``_fwd_general_kernel`` instead, which carries it row-major.

Backward, two ways (``backward`` picks; see ``uses_passes``):
  * three passes of ``_fwd_kernel`` itself (identity / elu1 / relu, no normaliser, no g_gamma
    gradient): ∂L/∂φq is the forward over (dO, v, k), ∂L/∂φk the reverse-time forward over
    (v, dO, q) and dv the reverse-time forward over (k, q, dO), each with its state transposed in
    registers and no partial sums over tiles (``_backward_passes``);
  * the state-carrying kernels for every form: dq forward in time carrying S (``_bwd_dq_kernel``),
    dk and dv backward in time carrying dS = ∂L/∂S (``_bwd_dkv_kernel``).
Segments work as in the forward (reverse state pass and reverse scan on φ(q)·dOᵀ). The decay
gradient uses the identity
    dL/dG_t = Σ_s P_ts − Σ_t' P_t't    (P_ts = Γ(s→t)·w(t,s)·∂L/∂(Γw)_ts, G = cumsum g)
where the row sums are r_t = φq_t·∂L/∂φq_t and the column sums c_s = φk_s·∂L/∂φk_s (taylor2: the
same sums over pair weights and expanded features); dg = reverse cumsum of r − c (+ the final
state term ⟨dS_T, S_T⟩ on the last token), done in torch on [T, H] vectors.

taylor2 keeps three state pieces: S0 [V] (the constant feature), S1 [K, V] (√scale·x) and
S2 [K², V] ((scale/√2)·x⊗x); q-side gradients are then reduced over V tiles in fp32.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from kernelgen.checks import interpreter_on
from kernelgen.launch import cdiv, next_pow2
from kernelgen.template import DTYPES, Template
from kernelgen.reference import linear_attention as ref

from .chunk_common import (FEAT_IDENTITY, FEAT_TAYLOR2, FEATURE_CODES, causal_decay, chunk_total, feature_map,
                           feature_map_grad, feature_map_in_dtype, load_log_decay, outer_features,
                           outer_features_grad, sequence_bounds)
from .reverse_cumsum import reverse_cumsum
from . import register

NORM_EPS = 1e-6


# =============================================================================================
# kernels
# =============================================================================================

@triton.jit
def _load_state(ptr, base, V, KF: tl.constexpr, row0, offs_r, m_r, offs_v, m_v):
    """[len(offs_r), BV] fp32 tile of a state [*, KF, V] at rows row0 + offs_r."""
    p = ptr + base * KF * V + (row0 + offs_r)[:, None] * V + offs_v[None, :]
    return tl.load(p, mask=m_r[:, None] & m_v[None, :], other=0.0)


@triton.jit
def _store_state(ptr, base, V, KF: tl.constexpr, row0, offs_r, m_r, offs_v, m_v, value):
    p = ptr + base * KF * V + (row0 + offs_r)[:, None] * V + offs_v[None, :]
    tl.store(p, value, mask=m_r[:, None] & m_v[None, :])


@triton.jit
def _program_segment(cu_seqlens, T, seg_len, H: tl.constexpr, IS_VARLEN: tl.constexpr):
    """This program's V tile, (sequence, head) and segment ids, its head, and its segment's token
    range [t_lo, t_hi)."""
    i_v, i_nh, i_seg = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_n, i_h = i_nh // H, i_nh % H
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    t_lo = bos + i_seg * seg_len
    t_hi = tl.minimum(t_lo + seg_len, eos)
    return i_v, i_nh, i_seg, i_h, t_lo, t_hi


@triton.jit
def _head_gamma(g_gamma, i_h, USE_GAMMA: tl.constexpr):
    """The head's constant log decay (g_gamma), or 0 without one."""
    gamma = 0.0
    if USE_GAMMA:
        gamma = tl.load(g_gamma + i_h).to(tl.float32)
    return gamma


@triton.jit
def _tile_ranges(i_v, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """A program's chunk rows, key columns and value-tile columns, with the column masks."""
    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    return tl.arange(0, BT), offs_k, offs_k < K, offs_v, offs_v < V


@triton.jit
def _feature_multipliers(scale, FEATURE: tl.constexpr):
    """Query and key multipliers of the linear features (taylor2 splits the scale symmetrically,
    identity-like maps put it on the query), and the second-order features' (taylor2: scale/√2)."""
    if FEATURE == FEAT_TAYLOR2:
        lin_q = tl.sqrt(scale)
        lin_k = tl.sqrt(scale)
    else:
        lin_q = scale
        lin_k = 1.0
    return lin_q, lin_k, scale * 0.7071067811865476


@triton.jit
def _taylor_rows(K: tl.constexpr, BK: tl.constexpr, TAYLOR: tl.constexpr):
    """For the flat pair index i·BK + j (i, j < BK): the mask i, j < K and the row i·K + j of the
    feature x_i·x_j in the state's second-order block. Placeholders without taylor2."""
    if TAYLOR:
        offs_qq = tl.arange(0, BK * BK)
        m_qq = ((offs_qq // BK) < K) & ((offs_qq % BK) < K)
        rows_qq = (offs_qq // BK) * K + (offs_qq % BK)
    else:
        m_qq = tl.zeros([1], dtype=tl.int1)
        rows_qq = tl.zeros([1], dtype=tl.int32)
    return m_qq, rows_qq


@triton.jit
def _state_pieces(s_ptr, z_ptr, base, V, KF: tl.constexpr, K: tl.constexpr, offs_k, m_k, offs_v, m_v, m_qq,
                  rows_qq, BK: tl.constexpr, BV: tl.constexpr, LOAD: tl.constexpr, TAYLOR: tl.constexpr,
                  NORMALIZE: tl.constexpr):
    """A state (S, z) [*, KF, V] split as the kernels carry it: the linear features' rows [BK, BV]
    and z [BK]; for taylor2 also the constant row [BV] / [1] and the second-order rows [BK², BV] /
    [BK²] (placeholders otherwise). Read from s_ptr / z_ptr at ``base`` when LOAD, else zeros."""
    LIN_ROW: tl.constexpr = 1 if TAYLOR else 0
    b_s = tl.zeros([BK, BV], dtype=tl.float32)
    b_z = tl.zeros([BK], dtype=tl.float32)
    if TAYLOR:
        b_s0 = tl.zeros([BV], dtype=tl.float32)
        b_s2 = tl.zeros([BK * BK, BV], dtype=tl.float32)
        b_z0 = tl.zeros([1], dtype=tl.float32)
        b_z2 = tl.zeros([BK * BK], dtype=tl.float32)
    else:
        b_s0 = tl.zeros([1], dtype=tl.float32)
        b_s2 = tl.zeros([1], dtype=tl.float32)
        b_z0 = tl.zeros([1], dtype=tl.float32)
        b_z2 = tl.zeros([1], dtype=tl.float32)
    if LOAD:
        b_s = _load_state(s_ptr, base, V, KF, LIN_ROW, offs_k, m_k, offs_v, m_v)
        if TAYLOR:
            b_s0 = tl.load(s_ptr + base * KF * V + offs_v, mask=m_v, other=0.0)
            b_s2 = _load_state(s_ptr, base, V, KF, 1 + K, rows_qq, m_qq, offs_v, m_v)
        if NORMALIZE:
            b_z = tl.load(z_ptr + base * KF + LIN_ROW + offs_k, mask=m_k, other=0.0)
            if TAYLOR:
                b_z0 = tl.load(z_ptr + base * KF + tl.arange(0, 1))
                b_z2 = tl.load(z_ptr + base * KF + 1 + K + rows_qq, mask=m_qq, other=0.0)
    return b_s, b_z, b_s0, b_s2, b_z0, b_z2


@triton.jit
def _bwd_chunk(q, k, v, do, g, t0, t_hi, i_h, gamma, offs_t, offs_k, m_k, offs_v, m_v, H: tl.constexpr,
               K: tl.constexpr, V: tl.constexpr, USE_G: tl.constexpr, USE_GAMMA: tl.constexpr):
    """One chunk's tiles for the backward kernels: token rows and masks, q, k, v, dO, and the decay
    factors (in-chunk cumulative log decay G, its total, e^G, e^(Glast - G), e^Glast)."""
    rows = t0 + offs_t
    m_t = rows < t_hi
    hrow = rows * H + i_h
    m_tk = m_t[:, None] & m_k[None, :]
    m_tv = m_t[:, None] & m_v[None, :]
    b_q = tl.load(q + hrow[:, None] * K + offs_k[None, :], mask=m_tk, other=0.0)
    b_k = tl.load(k + hrow[:, None] * K + offs_k[None, :], mask=m_tk, other=0.0)
    b_v = tl.load(v + hrow[:, None] * V + offs_v[None, :], mask=m_tv, other=0.0)
    b_do = tl.load(do + hrow[:, None] * V + offs_v[None, :], mask=m_tv, other=0.0)
    b_g = load_log_decay(g, hrow, m_t, gamma, USE_G, USE_GAMMA)
    b_G = tl.cumsum(b_g, 0)
    b_Glast = chunk_total(b_G)
    return (hrow, m_t, m_tk, m_tv, b_q, b_k, b_v, b_do, b_G, b_Glast, tl.exp(b_G), tl.exp(b_Glast - b_G),
            tl.exp(b_Glast))


@triton.jit
def _prefetch_l2(ptrs):
    """Hint the lines at ``ptrs`` into L2. The software pipeline issues a chunk's copies only after
    the previous chunk's last product, so without a hint their DRAM latency is paid every chunk."""
    tl.inline_asm_elementwise("prefetch.global.L2 [$1]; mov.u32 $0, 0;", "=r,l", [ptrs],
                              dtype=tl.int32, is_pure=False, pack=1)


@triton.jit(do_not_specialize=["T", "seg_len", "NSEG", "TOKENS"])
def _fwd_kernel(
    q, k, v, g, g_gamma, o, den,
    s_start, z_start, s_final, z_final, cu_seqlens, x_grad, r_out,
    scale, T, seg_len, NSEG, TOKENS,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, KF: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    FEATURE: tl.constexpr, USE_G: tl.constexpr, USE_GAMMA: tl.constexpr, HAS_DECAY: tl.constexpr,
    NORMALIZE: tl.constexpr, HAS_START: tl.constexpr, STORE_FINAL: tl.constexpr, IS_VARLEN: tl.constexpr,
    DOT_PREC: tl.constexpr, PREFETCH: tl.constexpr, GRAD: tl.constexpr = False, NEED_R: tl.constexpr = False,
    REVERSE: tl.constexpr = False, X_EARLY: tl.constexpr = False, EXACT_DIAG: tl.constexpr = False,
    ROWS: tl.constexpr = False,
):
    """o for one (V tile, head, segment) with the identity, elu1 or relu map (normalised: elu1, relu).

    The state tile is carried transposed, Sᵀ [BV, BK] fp32, so the two products that read it take
    it from registers as their left operand (oᵀ = Sᵀ·φ(q)ᵀ, and Sᵀ ← Γ·Sᵀ + (Γ_k ⊙ v)ᵀ·φ(k) with
    the decayed vᵀ also built in registers): only the [BT, BT] weight tile Aᵀ is staged in shared
    memory. Decays are kept in log2 units, and every factor is exp2 of a difference that is ≤ 0.

    The backward's three passes are this loop too (see backward()):
    REVERSE: o_s = Σ_{t≥s} Γ(s→t)·w(s,t)·v_t, walking the chunks from the last (the state is then
    the one entering from later tokens); dv is the reverse pass over (k, q, dO).
    GRAD: the output is the gradient of x_grad's features, so φ applies to the "v" operand instead
    of q and k, o is multiplied by φ'(x_grad), and r_out[i_v, row] (NEED_R) gets this tile's share
    of φx_t·∂L/∂φx_t (a term of the decay gradient; negated by the reverse pass, whose term dG
    subtracts). EXACT_DIAG (fp32): the (t, t) pair is left out of that term (see the loop). dq is the forward GRAD pass over (dO, v, k)
    with x_grad = q, dk the reverse GRAD pass over (v, dO, q) with x_grad = k: K and V are then the
    value and key widths, and a program owns a key-column tile, so nothing is summed over tiles.
    ROWS (GRAD passes): the output tile is built as o [BT, BV], tokens along the products' rows, the
    state reaching its product through shared memory; φx_t·∂L/∂φx_t is then a sum along each row
    (a thread and its quad) rather than across the warps. With NEED_R and no L2 prefetch this took
    the backward with a decay gradient from 1.045 to 0.887 ms (H100; docs/PERF.md, session 13).
    """
    tl.static_assert(not ROWS or (GRAD and not NORMALIZE), "ROWS builds the GRAD passes' output")
    i_v, i_nh, i_seg, i_h, t_lo, t_hi = _program_segment(cu_seqlens, T, seg_len, H, IS_VARLEN)
    gamma = _head_gamma(g_gamma, i_h, USE_GAMMA)
    LOG2E: tl.constexpr = 1.4426950408889634

    offs_t, offs_k, m_k, offs_v, m_v = _tile_ranges(i_v, K, V, BT, BK, BV)
    m_vk = m_v[:, None] & m_k[None, :]
    if REVERSE:
        causal = offs_t[:, None] >= offs_t[None, :]    # [s, t]: key s at or after query t
    else:
        causal = offs_t[:, None] <= offs_t[None, :]    # [s, t]: key s at or before query t
    PF_K: tl.constexpr = (BK + 63) // 64                 # 128-byte (bf16) pieces of a q / k row
    offs_pf = tl.arange(0, PF_K) * 64
    base = (i_nh * NSEG + i_seg).to(tl.int64)

    b_st = tl.zeros([BV, BK], dtype=tl.float32)
    b_z = tl.zeros([BK], dtype=tl.float32)
    if HAS_START:
        b_st = tl.load(s_start + base * KF * V + offs_k[None, :] * V + offs_v[:, None], mask=m_vk, other=0.0)
        if NORMALIZE:
            b_z = tl.load(z_start + base * KF + offs_k, mask=m_k, other=0.0)

    last = t_lo + (tl.cdiv(t_hi - t_lo, BT) - 1) * BT   # the start of the segment's last chunk
    for t_step in range(t_lo, t_hi, BT):
        if REVERSE:
            t0 = last - (t_step - t_lo)
        else:
            t0 = t_step
        rows = t0 + offs_t
        m_t = rows < t_hi
        hrow = rows * H + i_h
        m_tk = m_t[:, None] & m_k[None, :]
        b_q = tl.load(q + hrow[:, None] * K + offs_k[None, :], mask=m_tk, other=0.0)
        b_k = tl.load(k + hrow[:, None] * K + offs_k[None, :], mask=m_tk, other=0.0)
        b_v = tl.load(v + hrow[:, None] * V + offs_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0.0)
        if GRAD:
            m_vt = m_v[:, None] & m_t[None, :]
            m_tv = m_t[:, None] & m_v[None, :]
            if X_EARLY:   # issued with the operands (its latency hidden, its registers held longer)
                if NEED_R or FEATURE != FEAT_IDENTITY:
                    if ROWS:
                        b_x = tl.load(x_grad + hrow[:, None] * V + offs_v[None, :], mask=m_tv, other=0.0)
                    else:
                        b_xt = tl.load(x_grad + hrow[None, :] * V + offs_v[:, None], mask=m_vt, other=0.0)
        dt = b_q.dtype
        if GRAD:   # dO and v as they are; φ on the keys, which play v
            b_qf = b_q
            b_kf = b_k
            b_v = feature_map_in_dtype(b_v, m_t[:, None] & m_v[None, :], FEATURE)
        else:
            b_qf = feature_map_in_dtype(b_q, m_tk, FEATURE)
            b_kf = feature_map_in_dtype(b_k, m_tk, FEATURE)
        if HAS_DECAY:
            b_g = load_log_decay(g, hrow, m_t, gamma, USE_G, USE_GAMMA) * LOG2E
            b_G = tl.cumsum(b_g, 0)
            b_Glast = chunk_total(b_G)
            if REVERSE:
                e_q = tl.exp2(b_Glast - b_G)       # Γ(t → chunk end)
            else:
                e_q = tl.exp2(b_G)                 # Γ(chunk start → t)

        if ROWS:
            # A[t, s] = scale·x_t·y_s·Γ(s → t) for s ≤ t (reverse: Γ(t → s) for s ≥ t), else 0
            if REVERSE:
                causal_ts = offs_t[:, None] <= offs_t[None, :]
            else:
                causal_ts = offs_t[:, None] >= offs_t[None, :]
            b_A = tl.dot(b_qf, tl.trans(b_kf), input_precision=DOT_PREC) * scale
            if HAS_DECAY:
                if REVERSE:
                    b_A = b_A * tl.exp2(tl.where(causal_ts, b_G[None, :] - b_G[:, None], float("-inf")))
                else:
                    b_A = b_A * tl.exp2(tl.where(causal_ts, b_G[:, None] - b_G[None, :], float("-inf")))
            else:
                b_A = tl.where(causal_ts, b_A, 0.0)
            if NEED_R and EXACT_DIAG:   # (see the transposed tile below)
                on_diag = offs_t[:, None] == offs_t[None, :]
                b_w_diag = tl.sum(tl.where(on_diag, b_A, 0.0), 1)
                b_A = tl.where(on_diag, 0.0, b_A)
            # o = x·S (S, carried as Sᵀ in registers, staged in shared memory), decayed, + A·z
            b_o = tl.dot(b_qf, tl.trans(b_st.to(dt)), input_precision=DOT_PREC)
            if HAS_DECAY:
                if REVERSE:
                    b_o = b_o * (e_q[:, None] * scale)
                else:
                    b_o = b_o * (tl.exp2(b_G[:, None]) * scale)
            else:
                b_o = b_o * scale
            b_o = tl.dot(b_A.to(dt), b_v, acc=b_o, input_precision=DOT_PREC)
            if not X_EARLY:
                if NEED_R or FEATURE != FEAT_IDENTITY:
                    b_x = tl.load(x_grad + hrow[:, None] * V + offs_v[None, :], mask=m_tv, other=0.0)
            if NEED_R:
                b_r = tl.sum(feature_map_in_dtype(b_x, m_tv, FEATURE).to(tl.float32) * b_o, 1)
                if REVERSE:
                    b_r = -b_r
                tl.store(r_out + i_v.to(tl.int64) * TOKENS * H + hrow, b_r, mask=m_t)
                if EXACT_DIAG:
                    b_o += b_v.to(tl.float32) * b_w_diag[:, None]
            if FEATURE != FEAT_IDENTITY:
                b_o = b_o * feature_map_grad(b_x, FEATURE)
            tl.store(o + hrow[:, None] * V + offs_v[None, :], b_o.to(o.dtype.element_ty), mask=m_tv)
            b_vt = tl.trans(b_v)
        else:
            # Aᵀ[s, t] = scale·φk_s·φq_t·Γ(s → t) for s ≤ t (reverse: Γ(t → s) for s ≥ t), else 0
            b_At = tl.dot(b_kf, tl.trans(b_qf), input_precision=DOT_PREC) * scale
            if HAS_DECAY:
                if REVERSE:
                    b_At = b_At * tl.exp2(tl.where(causal, b_G[:, None] - b_G[None, :], float("-inf")))
                else:
                    b_At = b_At * tl.exp2(tl.where(causal, b_G[None, :] - b_G[:, None], float("-inf")))
            else:
                b_At = tl.where(causal, b_At, 0.0)
            if NEED_R and EXACT_DIAG:
                # The pair (t, t) is in both the dq pass's row term and the dk pass's column term, and
                # under strong decay it is nearly all of them: leave it out of both sums (it cancels in
                # dG exactly) and add it to this tile's output after the row term is taken.
                on_diag = offs_t[:, None] == offs_t[None, :]
                b_w_diag = tl.sum(tl.where(on_diag, b_At, 0.0), 0)
                b_At = tl.where(on_diag, 0.0, b_At)
            # oᵀ: the state entering the chunk, decayed to each query, then the chunk's own tokens
            b_ot = tl.dot(b_st.to(dt), tl.trans(b_qf), input_precision=DOT_PREC)
            if HAS_DECAY:
                # (exp2 of the broadcast row: it reuses the conversion of G the decay tile made)
                if REVERSE:
                    b_ot = b_ot * (e_q[None, :] * scale)
                else:
                    b_ot = b_ot * (tl.exp2(b_G[None, :]) * scale)
            else:
                b_ot = b_ot * scale
            b_vt = tl.trans(b_v)
            b_ot = tl.dot(b_vt, b_At.to(dt), acc=b_ot, input_precision=DOT_PREC)
            if GRAD:
                if not X_EARLY:
                    if NEED_R or FEATURE != FEAT_IDENTITY:
                        b_xt = tl.load(x_grad + hrow[None, :] * V + offs_v[:, None], mask=m_vt, other=0.0)
                if NEED_R:
                    # φx_t·∂L/∂φx_t from the fp32 accumulator. The in-chunk pair terms cancel between
                    # the dq pass's rows and the dk pass's columns to fp32 rounding: both round the same
                    # fp32 weights (the same products, decays and chunks) to the operand dtype.
                    b_r = tl.sum(feature_map_in_dtype(b_xt, m_vt, FEATURE).to(tl.float32) * b_ot, 0)
                    if REVERSE:   # the dk pass's column term enters dG with a minus sign
                        b_r = -b_r
                    tl.store(r_out + i_v.to(tl.int64) * TOKENS * H + hrow, b_r, mask=m_t)
                    if EXACT_DIAG:
                        b_ot += b_vt.to(tl.float32) * b_w_diag[None, :]
                if FEATURE != FEAT_IDENTITY:
                    b_ot = b_ot * feature_map_grad(b_xt, FEATURE)
            if NORMALIZE:
                b_den = tl.sum(b_qf.to(tl.float32) * b_z[None, :], 1) * scale
                if HAS_DECAY:
                    b_den = b_den * e_q
                b_den += tl.sum(b_At, 0)
                b_ot = b_ot / (b_den + 1e-6)[None, :]
                if i_v == 0:
                    tl.store(den + hrow, b_den, mask=m_t)
            tl.store(o + hrow[None, :] * V + offs_v[:, None], b_ot.to(o.dtype.element_ty),
                     mask=m_v[:, None] & m_t[None, :])

        # Sᵀ ← Γ(chunk)·Sᵀ + Σ_s Γ(s → chunk end)·v_s·φ(k_s)ᵀ
        if HAS_DECAY:
            if REVERSE:
                e_k = tl.exp2(b_G)
            else:
                e_k = tl.exp2(b_Glast - b_G)
            e_all = tl.exp2(b_Glast)
            b_vt = (b_vt.to(tl.float32) * e_k[None, :]).to(dt)
            b_st = b_st * e_all
        b_st = tl.dot(b_vt, b_kf, acc=b_st, input_precision=DOT_PREC)
        if NORMALIZE:
            if HAS_DECAY:
                b_z = b_z * e_all + tl.sum(b_kf.to(tl.float32) * tl.where(m_t, e_k, 0.0)[:, None], 0)
            else:
                b_z += tl.sum(b_kf.to(tl.float32), 0)
        if PREFETCH:   # rows of the chunk after next (clamped into the segment), where few registers are live
            if REVERSE:
                nxt = tl.maximum(rows - 2 * BT, t_lo) * H + i_h
            else:
                nxt = tl.minimum(rows + 2 * BT, t_hi - 1) * H + i_h
            _prefetch_l2(q + (nxt * K)[:, None] + offs_pf[None, :])
            _prefetch_l2(k + (nxt * K)[:, None] + offs_pf[None, :])
            _prefetch_l2(v + nxt * V + i_v * BV)
            if GRAD:
                if NEED_R or FEATURE != FEAT_IDENTITY:
                    _prefetch_l2(x_grad + nxt * V + i_v * BV)

    if STORE_FINAL:   # (the reverse pass ends at the sequence start)
        if i_seg == (0 if REVERSE else NSEG - 1):
            i_out = i_nh.to(tl.int64)
            tl.store(s_final + i_out * KF * V + offs_k[None, :] * V + offs_v[:, None], b_st, mask=m_vk)
            if NORMALIZE:
                if i_v == 0:
                    tl.store(z_final + i_out * KF + offs_k, b_z, mask=m_k)


@triton.jit(do_not_specialize=["T", "seg_len", "NSEG"])
def _fwd_general_kernel(
    q, k, v, g, g_gamma, o, den,
    s_start, s_final, cu_seqlens,
    scale, T, seg_len, NSEG,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, KF: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    FEATURE: tl.constexpr, USE_G: tl.constexpr, USE_GAMMA: tl.constexpr, HAS_DECAY: tl.constexpr,
    NORMALIZE: tl.constexpr, HAS_START: tl.constexpr, STORE_FINAL: tl.constexpr, IS_VARLEN: tl.constexpr,
    DOT_PREC: tl.constexpr, ONES_V: tl.constexpr = False,
):
    """o for one (V tile, head, segment), any feature map, normalised or not; run for taylor2 and for
    the normalised identity map. The state pieces are carried row-major, [rows, BV], and staged in
    shared memory as the right operand of φ(q)·S each chunk; taylor2's narrow V tiles (its K² rows
    fill the registers) would be too short for the transposed kernel's tensor-core products.
    NORMALIZE: o is divided by den [tokens·H] (+1e-6), which the same kernel wrote beforehand with
    ONES_V: the normaliser is this sum for v ≡ 1 (V = 1, its state is z), so its products run on
    tensor cores too; carried here beside S as fp32 row sums over taylor2's K² features they
    spilled 2.5 KB a thread (H100, bf16, Based K=16 normalised: 7.8 ms)."""
    i_v, i_nh, i_seg, i_h, t_lo, t_hi = _program_segment(cu_seqlens, T, seg_len, H, IS_VARLEN)
    gamma = _head_gamma(g_gamma, i_h, USE_GAMMA)
    TAYLOR: tl.constexpr = FEATURE == FEAT_TAYLOR2
    LIN_ROW: tl.constexpr = 1 if TAYLOR else 0           # first state row of the linear features
    lin_q, lin_k, quad = _feature_multipliers(scale, FEATURE)

    offs_t, offs_k, m_k, offs_v, m_v = _tile_ranges(i_v, K, V, BT, BK, BV)
    m_qq, rows_qq = _taylor_rows(K, BK, TAYLOR)
    base = (i_nh * NSEG + i_seg).to(tl.int64)

    b_s, _, b_s0, b_s2, _, _ = _state_pieces(s_start, s_start, base, V, KF, K, offs_k, m_k, offs_v, m_v,
                                             m_qq, rows_qq, BK, BV, HAS_START, TAYLOR, False)

    for t0 in range(t_lo, t_hi, BT):
        rows = t0 + offs_t
        m_t = rows < t_hi
        hrow = rows * H + i_h
        m_tk = m_t[:, None] & m_k[None, :]
        b_q = tl.load(q + hrow[:, None] * K + offs_k[None, :], mask=m_tk, other=0.0)
        b_k = tl.load(k + hrow[:, None] * K + offs_k[None, :], mask=m_tk, other=0.0)
        dt = b_q.dtype
        if ONES_V:
            b_v = (m_t[:, None] & m_v[None, :]).to(dt)
        else:
            b_v = tl.load(v + hrow[:, None] * V + offs_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0.0)
        b_g = load_log_decay(g, hrow, m_t, gamma, USE_G, USE_GAMMA)
        b_G = tl.cumsum(b_g, 0)
        b_Glast = chunk_total(b_G)
        e_q = tl.exp(b_G)                  # Γ(chunk start → t)
        e_k = tl.exp(b_Glast - b_G)        # Γ(s → chunk end)
        e_all = tl.exp(b_Glast)
        b_qf = feature_map_in_dtype(b_q, m_tk, FEATURE)
        b_kf = feature_map_in_dtype(b_k, m_tk, FEATURE)

        # intra-chunk: decayed causal weights, then ·v on tensor cores
        b_A = tl.dot(b_qf, tl.trans(b_kf), input_precision=DOT_PREC) * scale
        if TAYLOR:
            b_A = 1.0 + b_A + 0.5 * b_A * b_A
        b_A = b_A * causal_decay(b_G, BT, HAS_DECAY)
        # inter-chunk (the state at the chunk start, decayed to each row), then intra-chunk
        b_o = tl.dot(b_qf, b_s.to(dt), input_precision=DOT_PREC) * (lin_q * e_q)[:, None]
        b_o = tl.dot(b_A.to(dt), b_v, acc=b_o, input_precision=DOT_PREC)
        if TAYLOR:
            b_qq = outer_features(b_q, BT, BK)
            b_o += e_q[:, None] * (b_s0[None, :] + quad * tl.dot(b_qq.to(dt), b_s2.to(dt), input_precision=DOT_PREC))
        if NORMALIZE:
            b_den = tl.load(den + hrow, mask=m_t, other=1.0)
            b_o = b_o / (b_den + 1e-6)[:, None]
        tl.store(o + hrow[:, None] * V + offs_v[None, :], b_o.to(o.dtype.element_ty),
                 mask=m_t[:, None] & m_v[None, :])

        # carry the state to the next chunk: S ← Γ(chunk)·S + Σ_s Γ(s → end)·φ(k_s)·v_sᵀ
        # (multipliers folded into the [BT, BV] operand; the dot accumulates into the state)
        b_vd = (b_v.to(tl.float32) * (lin_k * e_k)[:, None]).to(dt)
        b_s = tl.dot(tl.trans(b_kf), b_vd, acc=b_s * e_all, input_precision=DOT_PREC)
        if TAYLOR:
            b_kk = outer_features(b_k, BT, BK)
            b_s0 = b_s0 * e_all + tl.sum(b_v.to(tl.float32) * e_k[:, None], 0)
            b_vd = (b_v.to(tl.float32) * (quad * e_k)[:, None]).to(dt)
            b_s2 = tl.dot(tl.trans(b_kk), b_vd, acc=b_s2 * e_all, input_precision=DOT_PREC)

    if STORE_FINAL:
        if i_seg == NSEG - 1:
            _store_state(s_final, i_nh, V, KF, LIN_ROW, offs_k, m_k, offs_v, m_v, b_s)
            if TAYLOR:
                tl.store(s_final + i_nh * KF * V + offs_v, b_s0, mask=m_v)
                _store_state(s_final, i_nh, V, KF, 1 + K, rows_qq, m_qq, offs_v, m_v, b_s2)


@triton.jit(do_not_specialize=["T", "seg_len", "NSEG"])
def _state_pass_kernel(
    x, y, y_scale, w_row, g, g_gamma, s_out, z_out, g_out, cu_seqlens,
    scale, x_lin, T, seg_len, NSEG,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, KF: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    FEATURE: tl.constexpr, USE_G: tl.constexpr, USE_GAMMA: tl.constexpr, HAS_DECAY: tl.constexpr,
    WITH_Z: tl.constexpr, SCALE_Y: tl.constexpr, REVERSE: tl.constexpr, IS_VARLEN: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """One segment's own state, from zero, written to s_out[head, segment] (+ its total log decay).

    Forward (REVERSE=0): Σ_s Γ(s → segment end)·φ'(x_s)·y_sᵀ  with x = k, y = v, z weights 1.
    Reverse (REVERSE=1): Σ_t Γ(segment start → t)·φ'_q(x_t)·y_tᵀ with x = q, y = dO/(den+eps),
    z weights w_row = ∂L/∂den: the state gradient a segment sends to the one before it.
    ``x_lin`` multiplies the linear features (1 or scale for identity maps, √scale for taylor2).
    """
    i_v, i_nh, i_seg, i_h, t_lo, t_hi = _program_segment(cu_seqlens, T, seg_len, H, IS_VARLEN)
    gamma = _head_gamma(g_gamma, i_h, USE_GAMMA)
    TAYLOR: tl.constexpr = FEATURE == FEAT_TAYLOR2
    LIN_ROW: tl.constexpr = 1 if TAYLOR else 0
    quad = scale * 0.7071067811865476

    offs_t, offs_k, m_k, offs_v, m_v = _tile_ranges(i_v, K, V, BT, BK, BV)
    offs_one = tl.arange(0, 1)
    m_qq, rows_qq = _taylor_rows(K, BK, TAYLOR)

    b_s, b_z, b_s0, b_s2, b_z0, b_z2 = _state_pieces(s_out, z_out, 0, V, KF, K, offs_k, m_k, offs_v, m_v, m_qq,
                                                     rows_qq, BK, BV, False, TAYLOR, WITH_Z)
    g_run = tl.zeros([1], dtype=tl.float32)
    for t0 in range(t_lo, t_hi, BT):
        rows = t0 + offs_t
        m_t = rows < t_hi
        hrow = rows * H + i_h
        m_tk = m_t[:, None] & m_k[None, :]
        b_x = tl.load(x + hrow[:, None] * K + offs_k[None, :], mask=m_tk, other=0.0)
        b_y = tl.load(y + hrow[:, None] * V + offs_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0.0)
        dt = b_x.dtype
        b_g = load_log_decay(g, hrow, m_t, gamma, USE_G, USE_GAMMA)
        b_G = tl.cumsum(b_g, 0)
        b_Glast = chunk_total(b_G)
        if REVERSE:
            b_e = tl.exp(g_run + b_G)          # Γ(segment start → t)
            e_all = 1.0
        else:
            b_e = tl.exp(b_Glast - b_G)        # Γ(t → chunk end); earlier chunks decay by e_all
            e_all = tl.exp(b_Glast)
        b_e = tl.where(m_t, b_e, 0.0)
        b_yf = b_y.to(tl.float32) * b_e[:, None]
        if SCALE_Y:
            b_yf = b_yf / (tl.load(y_scale + hrow, mask=m_t, other=0.0) + 1e-6)[:, None]
        b_xf = feature_map_in_dtype(b_x, m_tk, FEATURE)
        b_s = tl.dot(tl.trans(b_xf), (b_yf * x_lin).to(dt), acc=b_s * e_all, input_precision=DOT_PREC)
        if TAYLOR:
            b_xx = outer_features(b_x, BT, BK)
            b_s0 = b_s0 * e_all + tl.sum(b_yf, 0)
            b_s2 = tl.dot(tl.trans(b_xx), (b_yf * quad).to(dt), acc=b_s2 * e_all, input_precision=DOT_PREC)
        if WITH_Z:
            if REVERSE:
                b_w = tl.load(w_row + hrow, mask=m_t, other=0.0) * b_e
            else:
                b_w = b_e
            b_z = b_z * e_all + x_lin * tl.sum(b_xf.to(tl.float32) * b_w[:, None], 0)
            if TAYLOR:
                b_z0 = b_z0 * e_all + tl.sum(b_w, 0)
                b_z2 = b_z2 * e_all + quad * tl.sum(b_xx * b_w[:, None], 0)
        g_run += b_Glast

    base = (i_nh * NSEG + i_seg).to(tl.int64)
    _store_state(s_out, base, V, KF, LIN_ROW, offs_k, m_k, offs_v, m_v, b_s)
    if TAYLOR:
        tl.store(s_out + base * KF * V + offs_v, b_s0, mask=m_v)
        _store_state(s_out, base, V, KF, 1 + K, rows_qq, m_qq, offs_v, m_v, b_s2)
    if i_v == 0:
        tl.store(g_out + base + offs_one, g_run)
        if WITH_Z:
            tl.store(z_out + base * KF + LIN_ROW + offs_k, b_z, mask=m_k)
            if TAYLOR:
                tl.store(z_out + base * KF + offs_one, b_z0)
                tl.store(z_out + base * KF + 1 + K + rows_qq, b_z2, mask=m_qq)


@triton.jit(do_not_specialize=["NSEG"])
def _state_scan_kernel(buf, g_seg, init, final, NSEG, SIZE, BLOCK: tl.constexpr,
                       HAS_INIT: tl.constexpr, STORE_FINAL: tl.constexpr, REVERSE: tl.constexpr):
    """In place over buf [heads, NSEG, SIZE]: each segment's own state -> the state entering it
    (forward: before it; reverse: after it). The state leaving the last one goes to ``final``."""
    i_b, i_nh = tl.program_id(0), tl.program_id(1)
    offs = i_b * BLOCK + tl.arange(0, BLOCK)
    mask = offs < SIZE
    run = tl.zeros([BLOCK], dtype=tl.float32)
    if HAS_INIT:
        run = tl.load(init + i_nh.to(tl.int64) * SIZE + offs, mask=mask, other=0.0)
    for j in range(NSEG):
        if REVERSE:
            jj = NSEG - 1 - j
        else:
            jj = j
        base = (i_nh * NSEG + jj).to(tl.int64)
        own = tl.load(buf + base * SIZE + offs, mask=mask, other=0.0)
        tl.store(buf + base * SIZE + offs, run, mask=mask)
        run = run * tl.exp(tl.load(g_seg + base)) + own
    if STORE_FINAL:
        tl.store(final + i_nh.to(tl.int64) * SIZE + offs, run, mask=mask)


@triton.jit(do_not_specialize=["T", "seg_len", "NSEG", "TOKENS"])
def _bwd_dq_kernel(
    q, k, v, do, g, g_gamma, den, dden, dq, r_out,
    s_start, z_start, cu_seqlens,
    scale, T, seg_len, NSEG, TOKENS,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, KF: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    FEATURE: tl.constexpr, USE_G: tl.constexpr, USE_GAMMA: tl.constexpr, HAS_DECAY: tl.constexpr,
    NORMALIZE: tl.constexpr, HAS_START: tl.constexpr, IS_VARLEN: tl.constexpr, PARTIAL: tl.constexpr,
    NEED_R: tl.constexpr, PRECISE_DG: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """dq for one (V tile, head, segment), forward in time carrying the state S (and z).

    PARTIAL: dq is this V tile's share, written to fp32 dq[i_v] and summed by the launcher.
    r_out[i_v, row] = this tile's share of φq_t·∂L/∂φq_t (the decay gradient's row term).
    """
    i_v, i_nh, i_seg, i_h, t_lo, t_hi = _program_segment(cu_seqlens, T, seg_len, H, IS_VARLEN)
    gamma = _head_gamma(g_gamma, i_h, USE_GAMMA)
    TAYLOR: tl.constexpr = FEATURE == FEAT_TAYLOR2
    lin_q, lin_k, quad = _feature_multipliers(scale, FEATURE)
    tile0 = (i_v == 0).to(tl.float32)     # terms not split over V (the normaliser) count once

    offs_t, offs_k, m_k, offs_v, m_v = _tile_ranges(i_v, K, V, BT, BK, BV)
    m_qq, rows_qq = _taylor_rows(K, BK, TAYLOR)
    base = (i_nh * NSEG + i_seg).to(tl.int64)

    b_s, b_z, b_s0, b_s2, b_z0, b_z2 = _state_pieces(s_start, z_start, base, V, KF, K, offs_k, m_k, offs_v, m_v,
                                                     m_qq, rows_qq, BK, BV, HAS_START, TAYLOR, NORMALIZE)

    for t0 in range(t_lo, t_hi, BT):
        hrow, m_t, m_tk, _, b_q, b_k, b_v, b_do, b_G, b_Glast, e_q, e_k, e_all = _bwd_chunk(
            q, k, v, do, g, t0, t_hi, i_h, gamma, offs_t, offs_k, m_k, offs_v, m_v, H, K, V, USE_G, USE_GAMMA)
        dt = b_q.dtype
        b_qf = feature_map_in_dtype(b_q, m_tk, FEATURE)
        b_kf = feature_map_in_dtype(b_k, m_tk, FEATURE)
        if NORMALIZE:
            b_inv = 1.0 / (tl.load(den + hrow, mask=m_t, other=0.0) + 1e-6)
            b_dn = (b_do.to(tl.float32) * b_inv[:, None]).to(dt)
            b_dd = tl.load(dden + hrow, mask=m_t, other=0.0) * tile0
        else:
            b_dn = b_do
        # ∂L/∂(decayed weight)_ts on this V tile
        b_dP = tl.dot(b_dn, tl.trans(b_v), input_precision=DOT_PREC)
        if NORMALIZE:
            b_dP += b_dd[:, None]
        b_dPD = b_dP * causal_decay(b_G, BT, HAS_DECAY)
        b_s_hi = b_s.to(dt)
        b_inter = tl.dot(b_dn, tl.trans(b_s_hi), input_precision=DOT_PREC)
        if PRECISE_DG:   # the state's rounding residue too (see backward())
            b_inter = tl.dot(b_dn, tl.trans((b_s - b_s_hi.to(tl.float32)).to(dt)), acc=b_inter,
                             input_precision=DOT_PREC)
        if NORMALIZE:
            b_inter += b_dd[:, None] * b_z[None, :]
        if TAYLOR:
            b_q32 = b_q.to(tl.float32)
            b_x = tl.dot(b_q, tl.trans(b_k), input_precision=DOT_PREC) * scale
            b_dq = scale * tl.dot((b_dPD * (1.0 + b_x)).to(dt), b_k, input_precision=DOT_PREC)
            b_r = tl.sum(b_dPD * (1.0 + b_x + 0.5 * b_x * b_x), 1)
            b_qq = outer_features(b_q, BT, BK)
            b_d2 = tl.dot(b_dn, tl.trans(b_s2.to(dt)), input_precision=DOT_PREC)
            b_d0 = tl.sum(b_dn.to(tl.float32) * b_s0[None, :], 1)
            if NORMALIZE:
                b_d2 += b_dd[:, None] * b_z2[None, :]
                b_d0 += b_dd * b_z0
            b_dq += e_q[:, None] * (lin_q * b_inter + quad * outer_features_grad(b_d2, b_q32, BT, BK))
            b_r += e_q * (b_d0 + lin_q * tl.sum(b_q32 * b_inter, 1) + quad * tl.sum(b_qq * b_d2, 1))
        else:
            b_dqf = (lin_q * e_q)[:, None] * b_inter
            if NEED_R:
                # the state (inter-chunk) share only, from the fp32 accumulator; the in-chunk pairs'
                # row sums are taken in _bwd_dkv_kernel from the same fp32 products as their column
                # sums, so the two cancel exactly there
                b_r = tl.sum(b_qf.to(tl.float32) * b_dqf, 1)
            b_dqf = tl.dot((b_dPD * scale).to(dt), b_kf, acc=b_dqf, input_precision=DOT_PREC)
            if FEATURE == FEAT_IDENTITY:
                b_dq = b_dqf
            else:
                b_dq = b_dqf * feature_map_grad(b_q, FEATURE)
        if PARTIAL:
            tl.store(dq + i_v.to(tl.int64) * TOKENS * H * K + hrow[:, None] * K + offs_k[None, :], b_dq, mask=m_tk)
        else:
            tl.store(dq + hrow[:, None] * K + offs_k[None, :], b_dq.to(dq.dtype.element_ty), mask=m_tk)
        if NEED_R:
            tl.store(r_out + i_v.to(tl.int64) * TOKENS * H + hrow, b_r, mask=m_t)

        # carry S (and z) forward, exactly as the forward pass does
        # (multipliers folded into the [BT, BV] operand; the dot accumulates into the state)
        b_vd32 = b_v.to(tl.float32) * (lin_k * e_k)[:, None]
        b_vd = b_vd32.to(dt)
        b_s = tl.dot(tl.trans(b_kf), b_vd, acc=b_s * e_all, input_precision=DOT_PREC)
        if PRECISE_DG:
            b_s = tl.dot(tl.trans(b_kf), (b_vd32 - b_vd.to(tl.float32)).to(dt), acc=b_s,
                         input_precision=DOT_PREC)
        if TAYLOR:
            b_kk = outer_features(b_k, BT, BK)
            b_s0 = b_s0 * e_all + tl.sum(b_v.to(tl.float32) * e_k[:, None], 0)
            b_vd = (b_v.to(tl.float32) * (quad * e_k)[:, None]).to(dt)
            b_s2 = tl.dot(tl.trans(b_kk), b_vd, acc=b_s2 * e_all, input_precision=DOT_PREC)
        if NORMALIZE:
            b_ek = tl.where(m_t, e_k, 0.0)
            b_z = b_z * e_all + lin_k * tl.sum(b_kf.to(tl.float32) * b_ek[:, None], 0)
            if TAYLOR:
                b_z0 = b_z0 * e_all + tl.sum(b_ek, 0)
                b_z2 = b_z2 * e_all + quad * tl.sum(b_kk * b_ek[:, None], 0)


@triton.jit(do_not_specialize=["T", "seg_len", "NSEG", "TOKENS"])
def _bwd_dkv_kernel(
    q, k, v, do, g, g_gamma, den, dden, dk, dv, c_out,
    ds_end, dz_end, ds0, dz0, cu_seqlens,
    scale, T, seg_len, NSEG, TOKENS,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, KF: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    FEATURE: tl.constexpr, USE_G: tl.constexpr, USE_GAMMA: tl.constexpr, HAS_DECAY: tl.constexpr,
    NORMALIZE: tl.constexpr, HAS_END: tl.constexpr, STORE_DS0: tl.constexpr, IS_VARLEN: tl.constexpr,
    PARTIAL: tl.constexpr, NEED_C: tl.constexpr, PRECISE_DG: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """dk, dv for one (V tile, head, segment), backward in time carrying dS = ∂L/∂S (and dz).

    Products are key-major (rows s, columns t) so no [BT, BT] tile needs a transpose. dv is
    complete per V tile; dk (PARTIAL) and c_out[i_v] (the decay gradient's column term
    φk_s·∂L/∂φk_s) are this tile's share. The segment-0 program writes ∂L/∂initial_state.
    """
    i_v, i_nh, i_seg, i_h, t_lo, t_hi = _program_segment(cu_seqlens, T, seg_len, H, IS_VARLEN)
    gamma = _head_gamma(g_gamma, i_h, USE_GAMMA)
    TAYLOR: tl.constexpr = FEATURE == FEAT_TAYLOR2
    LIN_ROW: tl.constexpr = 1 if TAYLOR else 0
    lin_q, lin_k, quad = _feature_multipliers(scale, FEATURE)
    tile0 = (i_v == 0).to(tl.float32)

    offs_t, offs_k, m_k, offs_v, m_v = _tile_ranges(i_v, K, V, BT, BK, BV)
    offs_one = tl.arange(0, 1)
    m_qq, rows_qq = _taylor_rows(K, BK, TAYLOR)
    base = (i_nh * NSEG + i_seg).to(tl.int64)

    b_ds, b_dz, b_ds0, b_ds2, b_dz0, b_dz2 = _state_pieces(ds_end, dz_end, base, V, KF, K, offs_k, m_k, offs_v,
                                                           m_v, m_qq, rows_qq, BK, BV, HAS_END, TAYLOR, NORMALIZE)

    n_chunks = tl.cdiv(t_hi - t_lo, BT)
    for i_c in range(0, n_chunks):
        t0 = t_lo + (n_chunks - 1 - i_c) * BT
        hrow, m_t, m_tk, m_tv, b_q, b_k, b_v, b_do, b_G, b_Glast, e_q, e_k, e_all = _bwd_chunk(
            q, k, v, do, g, t0, t_hi, i_h, gamma, offs_t, offs_k, m_k, offs_v, m_v, H, K, V, USE_G, USE_GAMMA)
        dt = b_q.dtype
        b_Dt = causal_decay(b_G, BT, HAS_DECAY, True)      # [s, t]
        b_qf = feature_map_in_dtype(b_q, m_tk, FEATURE)
        b_kf = feature_map_in_dtype(b_k, m_tk, FEATURE)
        if NORMALIZE:
            b_inv = 1.0 / (tl.load(den + hrow, mask=m_t, other=0.0) + 1e-6)
            b_dn = (b_do.to(tl.float32) * b_inv[:, None]).to(dt)
            b_dd_all = tl.load(dden + hrow, mask=m_t, other=0.0)
        else:
            b_dn = b_do
        if TAYLOR:
            # ∂L/∂(decayed weight), key-major: dPᵀ[s, t] = v_s·dn_t (+ ∂L/∂den_t)
            b_dPt = tl.dot(b_v, tl.trans(b_dn), input_precision=DOT_PREC)
            if NORMALIZE:
                b_dPt += (b_dd_all * tile0)[None, :]
            b_dPDt = b_dPt * b_Dt
            b_inter = tl.dot(b_v, tl.trans(b_ds.to(dt)), input_precision=DOT_PREC)   # [s, K]: dS·v_s
            if NORMALIZE:
                b_inter += tile0 * b_dz[None, :]
            b_k32 = b_k.to(tl.float32)
            b_xt = tl.dot(b_k, tl.trans(b_q), input_precision=DOT_PREC) * scale
            b_wt = 1.0 + b_xt + 0.5 * b_xt * b_xt
            b_dv = tl.dot((b_wt * b_Dt).to(dt), b_dn, input_precision=DOT_PREC)
            b_kk = outer_features(b_k, BT, BK)
            b_dv += e_k[:, None] * (b_ds0[None, :]
                                    + lin_k * tl.dot(b_k, b_ds.to(dt), input_precision=DOT_PREC)
                                    + quad * tl.dot(b_kk.to(dt), b_ds2.to(dt), input_precision=DOT_PREC))
            tl.store(dv + hrow[:, None] * V + offs_v[None, :], b_dv.to(dv.dtype.element_ty), mask=m_tv)
            b_dk = scale * tl.dot((b_dPDt * (1.0 + b_xt)).to(dt), b_q, input_precision=DOT_PREC)
            b_c = tl.sum(b_dPDt * b_wt, 1)
            b_e2 = tl.dot(b_v, tl.trans(b_ds2.to(dt)), input_precision=DOT_PREC)
            b_e0 = tl.sum(b_v.to(tl.float32) * b_ds0[None, :], 1)
            if NORMALIZE:
                b_e2 += tile0 * b_dz2[None, :]
                b_e0 += tile0 * b_dz0
            b_dk += e_k[:, None] * (lin_k * b_inter + quad * outer_features_grad(b_e2, b_k32, BT, BK))
            b_c += e_k * (b_e0 + lin_k * tl.sum(b_k32 * b_inter, 1) + quad * tl.sum(b_kk * b_e2, 1))
        else:
            # dv first, stored before dk starts so the two accumulators are never live together
            b_At = tl.dot(b_kf, tl.trans(b_qf), input_precision=DOT_PREC) * (b_Dt * scale)
            b_dv = tl.dot(b_kf, b_ds.to(dt), input_precision=DOT_PREC) * e_k[:, None]
            b_dv = tl.dot(b_At.to(dt), b_dn, acc=b_dv, input_precision=DOT_PREC)
            tl.store(dv + hrow[:, None] * V + offs_v[None, :], b_dv.to(dv.dtype.element_ty), mask=m_tv)
            # ∂L/∂(decayed weight), key-major: dPᵀ[s, t] = v_s·dn_t (+ ∂L/∂den_t)
            b_dPt = tl.dot(b_v, tl.trans(b_dn), input_precision=DOT_PREC)
            if NORMALIZE:
                b_dPt += (b_dd_all * tile0)[None, :]
            b_ds_hi = b_ds.to(dt)
            b_inter = tl.dot(b_v, tl.trans(b_ds_hi), input_precision=DOT_PREC)   # [s, K]: dS·v_s
            if PRECISE_DG:
                b_inter = tl.dot(b_v, tl.trans((b_ds - b_ds_hi.to(tl.float32)).to(dt)), acc=b_inter,
                                 input_precision=DOT_PREC)
            if NORMALIZE:
                b_inter += tile0 * b_dz[None, :]
            b_dkf = (lin_k * e_k)[:, None] * b_inter
            if NEED_C:
                # c_s − r_s: the state share of the column sum, plus column minus row sums of the
                # in-chunk pair products P[s, t] (fp32), so the in-chunk pairs cancel exactly
                # (the (t, t) pairs, which cancel exactly, are left out: under strong decay they
                # dominate both sums, and their rounding would not cancel: g = -20, fp32, dg was
                # 3.8 relative error with them)
                b_P = tl.where(offs_t[:, None] == offs_t[None, :], 0.0, b_At * b_dPt)
                b_c = tl.sum(b_kf.to(tl.float32) * b_dkf, 1) + tl.sum(b_P, 1) - tl.sum(b_P, 0)
            b_dkf = tl.dot((b_dPt * b_Dt * scale).to(dt), b_qf, acc=b_dkf, input_precision=DOT_PREC)
            if FEATURE == FEAT_IDENTITY:
                b_dk = b_dkf
            else:
                b_dk = b_dkf * feature_map_grad(b_k, FEATURE)
        if PARTIAL:
            tl.store(dk + i_v.to(tl.int64) * TOKENS * H * K + hrow[:, None] * K + offs_k[None, :], b_dk, mask=m_tk)
        else:
            tl.store(dk + hrow[:, None] * K + offs_k[None, :], b_dk.to(dk.dtype.element_ty), mask=m_tk)
        if NEED_C:
            tl.store(c_out + i_v.to(tl.int64) * TOKENS * H + hrow, b_c, mask=m_t)

        # carry dS (and dz) to the previous chunk: dS ← Γ(chunk)·dS + Σ_t Γ(start → t)·φ'_q(q_t)·dn_tᵀ
        b_dnq32 = b_dn.to(tl.float32) * (lin_q * e_q)[:, None]   # lin_q folded in
        b_dnq = b_dnq32.to(dt)
        b_ds = tl.dot(tl.trans(b_qf), b_dnq, acc=b_ds * e_all, input_precision=DOT_PREC)
        if PRECISE_DG:
            b_ds = tl.dot(tl.trans(b_qf), (b_dnq32 - b_dnq.to(tl.float32)).to(dt), acc=b_ds,
                          input_precision=DOT_PREC)
        if TAYLOR:
            b_qq = outer_features(b_q, BT, BK)
            b_ds0 = b_ds0 * e_all + tl.sum(b_dn.to(tl.float32) * e_q[:, None], 0)
            b_dnq = (b_dn.to(tl.float32) * (quad * e_q)[:, None]).to(dt)
            b_ds2 = tl.dot(tl.trans(b_qq), b_dnq, acc=b_ds2 * e_all, input_precision=DOT_PREC)
        if NORMALIZE:
            b_wq = e_q * b_dd_all
            b_dz = b_dz * e_all + lin_q * tl.sum(b_qf.to(tl.float32) * b_wq[:, None], 0)
            if TAYLOR:
                b_dz0 = b_dz0 * e_all + tl.sum(b_wq, 0)
                b_dz2 = b_dz2 * e_all + quad * tl.sum(b_qq * b_wq[:, None], 0)

    if STORE_DS0:
        if i_seg == 0:
            _store_state(ds0, i_nh, V, KF, LIN_ROW, offs_k, m_k, offs_v, m_v, b_ds)
            if TAYLOR:
                tl.store(ds0 + i_nh * KF * V + offs_v, b_ds0, mask=m_v)
                _store_state(ds0, i_nh, V, KF, 1 + K, rows_qq, m_qq, offs_v, m_v, b_ds2)
            if NORMALIZE:
                if i_v == 0:
                    tl.store(dz0 + i_nh * KF + LIN_ROW + offs_k, b_dz, mask=m_k)
                    if TAYLOR:
                        tl.store(dz0 + i_nh * KF + offs_one, b_dz0)
                        tl.store(dz0 + i_nh * KF + 1 + K + rows_qq, b_dz2, mask=m_qq)


@triton.jit
def _step_kernel(
    q, k, v, g, g_gamma, s_in, z_in, o, s_out, z_out, scale,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, KF: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr,
    FEATURE: tl.constexpr, USE_G: tl.constexpr, USE_GAMMA: tl.constexpr, HAS_DECAY: tl.constexpr,
    NORMALIZE: tl.constexpr,
):
    """One decode token per (V tile, sequence·head): S ← exp(g)·S + φ'(k)·vᵀ, o = φ'_q(q)·S."""
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    i_h = i_bh % H
    TAYLOR: tl.constexpr = FEATURE == FEAT_TAYLOR2
    LIN_ROW: tl.constexpr = 1 if TAYLOR else 0
    lin_q, lin_k, quad = _feature_multipliers(scale, FEATURE)
    offs_k = tl.arange(0, BK)
    m_k = offs_k < K
    offs_v = i_v * BV + tl.arange(0, BV)
    m_v = offs_v < V
    if TAYLOR:
        offs_qq = tl.arange(0, BK * BK)
        qi = offs_qq // BK
        qj = offs_qq % BK
        m_qq = (qi < K) & (qj < K)
        rows_qq = qi * K + qj

    b_q = tl.where(m_k, feature_map(tl.load(q + i_bh * K + offs_k, mask=m_k, other=0.0), FEATURE), 0.0)
    b_k = tl.where(m_k, feature_map(tl.load(k + i_bh * K + offs_k, mask=m_k, other=0.0), FEATURE), 0.0)
    b_v = tl.load(v + i_bh * V + offs_v, mask=m_v, other=0.0).to(tl.float32)
    if USE_G:
        decay = tl.exp(tl.load(g + i_bh).to(tl.float32))
    elif USE_GAMMA:
        decay = tl.exp(tl.load(g_gamma + i_h).to(tl.float32))
    else:
        decay = 1.0

    b_s = _load_state(s_in, i_bh, V, KF, LIN_ROW, offs_k, m_k, offs_v, m_v)
    b_s = b_s * decay + lin_k * b_k[:, None] * b_v[None, :]
    b_o = lin_q * tl.sum(b_q[:, None] * b_s, 0)
    _store_state(s_out, i_bh, V, KF, LIN_ROW, offs_k, m_k, offs_v, m_v, b_s)
    if TAYLOR:
        # x ⊗ x gathered by index (no reshape needed for one row)
        b_qq = tl.load(q + i_bh * K + qi, mask=m_qq, other=0.0).to(tl.float32) * \
            tl.load(q + i_bh * K + qj, mask=m_qq, other=0.0).to(tl.float32)
        b_kk = tl.load(k + i_bh * K + qi, mask=m_qq, other=0.0).to(tl.float32) * \
            tl.load(k + i_bh * K + qj, mask=m_qq, other=0.0).to(tl.float32)
        b_s0 = tl.load(s_in + i_bh * KF * V + offs_v, mask=m_v, other=0.0) * decay + b_v
        b_s2 = _load_state(s_in, i_bh, V, KF, 1 + K, rows_qq, m_qq, offs_v, m_v)
        b_s2 = b_s2 * decay + quad * b_kk[:, None] * b_v[None, :]
        b_o += b_s0 + quad * tl.sum(b_qq[:, None] * b_s2, 0)
        tl.store(s_out + i_bh * KF * V + offs_v, b_s0, mask=m_v)
        _store_state(s_out, i_bh, V, KF, 1 + K, rows_qq, m_qq, offs_v, m_v, b_s2)
    if NORMALIZE:
        b_z = tl.load(z_in + i_bh * KF + LIN_ROW + offs_k, mask=m_k, other=0.0) * decay + lin_k * b_k
        b_den = lin_q * tl.sum(b_q * b_z, 0)
        if TAYLOR:
            b_z0 = tl.load(z_in + i_bh * KF) * decay + 1.0
            b_z2 = tl.load(z_in + i_bh * KF + 1 + K + rows_qq, mask=m_qq, other=0.0) * decay + quad * b_kk
            b_den += b_z0 + quad * tl.sum(b_qq * b_z2, 0)
        b_o = b_o / (b_den + 1e-6)
        if i_v == 0:
            tl.store(z_out + i_bh * KF + LIN_ROW + offs_k, b_z, mask=m_k)
            if TAYLOR:
                tl.store(z_out + i_bh * KF, b_z0)
                tl.store(z_out + i_bh * KF + 1 + K + rows_qq, b_z2, mask=m_qq)
    tl.store(o + i_bh * V + offs_v, b_o.to(o.dtype.element_ty), mask=m_v)



# =============================================================================================
# launchers
# =============================================================================================

def feature_rows(feature_map: str | None, head_k: int) -> int:
    """K': rows of the state (1 + K + K² for taylor2, else K)."""
    return 1 + head_k + head_k * head_k if feature_map == "taylor2" else head_k


def _dot_precision(dtype: torch.dtype) -> str:
    # fp32 inputs get exact fp32 products (tf32 would cost ~1e-3 relative error); halves ignore it
    return "ieee" if dtype == torch.float32 else "tf32"


def _segmentation(split_len: int, seq_len: int, chunk: int) -> tuple[int, int]:
    """(tokens per segment, segments per sequence); one segment when splitting would not help."""
    if split_len <= 0 or split_len >= seq_len:
        return max(seq_len, 1), 1
    split_len = max(chunk, split_len // chunk * chunk)
    return split_len, cdiv(seq_len, split_len)


def _longest(T: int, cu_seqlens: torch.Tensor | None) -> int:
    """Longest sequence (a device sync for varlen; only asked for when segmenting)."""
    if cu_seqlens is None:
        return T
    return int((cu_seqlens[1:] - cu_seqlens[:-1]).max().item()) if cu_seqlens.numel() > 1 else 0


class Problem:
    """Sizes and flags of one call, shared by the launchers."""

    def __init__(self, q, v, g, g_gamma, scale, feature_map, normalize, cu_seqlens):
        self.B, self.T, self.H, self.K = q.shape
        self.V = v.shape[-1]
        self.N = self.B if cu_seqlens is None else cu_seqlens.numel() - 1
        self.tokens = self.B * self.T
        self.feature_map = feature_map
        self.feature = FEATURE_CODES[feature_map]
        self.KF = feature_rows(feature_map, self.K)
        self.BK = next_pow2(self.K)
        self.scale = float(scale)
        self.normalize = bool(normalize)
        self.use_g = g is not None
        self.use_gamma = g_gamma is not None
        self.cu_seqlens = cu_seqlens
        self.dot_prec = _dot_precision(q.dtype)

    def segments(self, config) -> tuple[int, int]:
        split = int(config.get("split_len", 0))
        # packed sequences are cut by their longest, a host sync: under CUDA graph capture (no
        # sync allowed) they run unsplit, as split_len 0 gives
        if split <= 0 or (self.cu_seqlens is not None and self.cu_seqlens.is_cuda
                          and torch.cuda.is_current_stream_capturing()):
            return (max(self.T, 1) if self.cu_seqlens is None else max(self.tokens, 1)), 1
        longest = self.T if self.cu_seqlens is None else _longest(self.T, self.cu_seqlens)
        return _segmentation(split, longest, int(config["chunk"]))

    def block_v(self, config) -> int:
        return min(int(config["block_v"]), next_pow2(self.V))

    def common(self, config, block_v):
        return dict(H=self.H, K=self.K, V=self.V, KF=self.KF, BT=int(config["chunk"]), BK=self.BK,
                    BV=block_v, FEATURE=self.feature, USE_G=self.use_g, USE_GAMMA=self.use_gamma,
                    HAS_DECAY=self.use_g or self.use_gamma,
                    IS_VARLEN=self.cu_seqlens is not None, DOT_PREC=self.dot_prec,
                    num_warps=int(config["num_warps"]), num_stages=int(config["num_stages"]))


def _segment_states(p: Problem, x, y, g, g_gamma, y_scale, w_row, init_s, init_z, seg_len, nseg,
                    config, reverse: bool, with_z: bool):
    """Pass + scan: the state entering each segment, [N·H, nseg, K', V] (and z [N·H, nseg, K']),
    plus the state leaving the whole sequence (``final``; the reverse pass's is ∂L/∂S_0)."""
    device = x.device
    NH = p.N * p.H
    block_v = p.block_v(config)
    s_buf = torch.empty(NH, nseg, p.KF, p.V, device=device, dtype=torch.float32)
    z_buf = torch.empty(NH, nseg, p.KF, device=device, dtype=torch.float32) if with_z else s_buf
    g_buf = torch.empty(NH, nseg, device=device, dtype=torch.float32)
    dummy = s_buf
    x_lin = math.sqrt(p.scale) if p.feature_map == "taylor2" else (p.scale if reverse else 1.0)
    meta = p.common(config, block_v)
    _state_pass_kernel[(cdiv(p.V, block_v), NH, nseg)](
        x, y, y_scale if y_scale is not None else dummy, w_row if w_row is not None else dummy,
        g if g is not None else dummy, g_gamma if g_gamma is not None else dummy,
        s_buf, z_buf, g_buf, p.cu_seqlens if p.cu_seqlens is not None else dummy,
        p.scale, x_lin, p.T, seg_len, nseg,
        WITH_Z=with_z, SCALE_Y=y_scale is not None, REVERSE=reverse, **meta)
    final_s = torch.empty(p.N, p.H, p.KF, p.V, device=device, dtype=torch.float32)
    final_z = torch.empty(p.N, p.H, p.KF, device=device, dtype=torch.float32) if with_z else None
    block = 1024
    for buf, init, final, size in ((s_buf, init_s, final_s, p.KF * p.V), (z_buf, init_z, final_z, p.KF)):
        if final is None:
            continue
        _state_scan_kernel[(cdiv(size, block), NH)](
            buf, g_buf, init if init is not None else buf, final, nseg, size, BLOCK=block,
            HAS_INIT=init is not None, STORE_FINAL=True, REVERSE=reverse, num_warps=4)
    return s_buf, (z_buf if with_z else None), final_s, final_z


def forward(q, k, v, g, g_gamma, scale, feature_map, normalize, init_s, init_z, want_final,
            cu_seqlens, config, out=None):
    """Launch the forward. Returns (o, den, final_s, final_z, seg) where den [tokens·H] fp32 is the
    normaliser (normalize only) and seg = (seg_len, s_buf, z_buf) the segment start states, or
    None when the sequence was not split. All tensors contiguous, states fp32."""
    p = Problem(q, v, g, g_gamma, scale, feature_map, normalize, cu_seqlens)
    device = q.device
    NH = p.N * p.H
    o = torch.empty_like(v) if out is None else out
    den = torch.empty(p.tokens * p.H, device=device, dtype=torch.float32) if normalize else None
    seg_len, nseg = p.segments(config)
    seg = None
    if nseg > 1:
        s_buf, z_buf, _, _ = _segment_states(p, k, v, g, g_gamma, None, None, init_s, init_z,
                                             seg_len, nseg, config, reverse=False, with_z=normalize)
        start_s, start_z, has_start = s_buf, z_buf, True
        seg = (seg_len, s_buf, z_buf)
    else:
        start_s, start_z, has_start = init_s, init_z, init_s is not None
    final_s = torch.empty(p.N, p.H, p.KF, p.V, device=device, dtype=torch.float32) if want_final else None
    final_z = (torch.empty(p.N, p.H, p.KF, device=device, dtype=torch.float32)
               if want_final and normalize else None)
    block_v = p.block_v(config)
    dummy = o
    g_arg = g if g is not None else dummy
    gg_arg = g_gamma if g_gamma is not None else dummy
    cu_arg = cu_seqlens if cu_seqlens is not None else dummy
    if feature_map == "taylor2" or (normalize and feature_map in (None, "identity")):
        # taylor2: its second-order state pieces. The normalised identity map: 0.465 ms here
        # against 0.500 dividing in the transposed kernel (H100, bf16, g+norm, round 107); elu1 /
        # relu keep z inside the transposed kernel (the v = 1 launch failed for them on Triton 3.6
        # with this 16-wide tile, round 107).
        if normalize:   # den first: the same sum for v ≡ 1, its state z (one 16-wide tile)
            _fwd_general_kernel[(1, NH, nseg)](
                q, k, q, g_arg, gg_arg, den, dummy, start_z if start_z is not None else dummy,
                final_z if final_z is not None else dummy, cu_arg, p.scale, p.T, seg_len, nseg,
                NORMALIZE=False, HAS_START=start_z is not None, STORE_FINAL=want_final, ONES_V=True,
                **{**p.common(config, 16), "V": 1})
        _fwd_general_kernel[(cdiv(p.V, block_v), NH, nseg)](
            q, k, v, g_arg, gg_arg, o, den if den is not None else dummy,
            start_s if start_s is not None else dummy, final_s if final_s is not None else dummy, cu_arg,
            p.scale, p.T, seg_len, nseg,
            NORMALIZE=normalize, HAS_START=has_start, STORE_FINAL=want_final, **p.common(config, block_v))
        return o, den, final_s, final_z, seg
    _fwd_kernel[(cdiv(p.V, block_v), NH, nseg)](   # (the L2 hint is inline PTX: not in the interpreter)
        q, k, v, g_arg, gg_arg, o, den if den is not None else dummy,
        start_s if start_s is not None else dummy, start_z if start_z is not None else dummy,
        final_s if final_s is not None else dummy, final_z if final_z is not None else dummy,
        cu_arg, dummy, dummy, p.scale, p.T, seg_len, nseg, p.tokens,
        NORMALIZE=normalize, HAS_START=has_start, STORE_FINAL=want_final, PREFETCH=not interpreter_on(),
        **p.common(config, block_v))
    return o, den, final_s, final_z, seg


def dkv_tiles(config) -> dict:
    """The backward's config as the dk/dv kernel sees it: ``dkv_block_v`` / ``dkv_warps`` when
    given, else the shared ``block_v`` / ``num_warps``."""
    return {**config, "block_v": int(config.get("dkv_block_v", config["block_v"])),
            "num_warps": int(config.get("dkv_warps", config["num_warps"]))}


def dq_tile(config, K: int, V: int) -> int:
    """The key-column tile of the backward's dq pass (a forward over dO, v, k), or 0 for the
    V-tiled ``_bwd_dq_kernel``. Default: 64 columns while its [V, 64] state stays within 64 fp32
    registers a thread at 4 warps, else 32."""
    block_k = config.get("dq_block_k")
    if block_k is None:
        block_k = 64 if next_pow2(V) <= 128 else 32
    block_k = int(block_k)
    return min(block_k, max(16, next_pow2(K))) if block_k else 0


def _reverse_cumsum(dG_parts: torch.Tensor, p: Problem) -> torch.Tensor:
    """dg_t = Σ_{t' ≥ t in the same sequence} dG_t' for dG = the sum of the fp32 partials
    [P, tokens, H] (summed by the scan itself, compensated carry)."""
    dg = torch.empty(p.tokens, p.H, device=dG_parts.device, dtype=torch.float32)
    return reverse_cumsum(dG_parts, dg, p.cu_seqlens, p.N, p.T, p.H, partials=dG_parts.shape[0])


def backward(q, k, v, g, g_gamma, scale, feature_map, normalize, init_s, init_z, o, den, do,
             d_final_s, d_final_z, final_s, final_z, cu_seqlens, config, fwd_seg=None,
             need_dq=True, need_dk=True, need_dv=True, need_dg=False, need_dinit=False):
    """Launch the backward. Returns (dq, dk, dv, dg_tokens [tokens, H] fp32 or None,
    d_init_s, d_init_z). ``fwd_seg`` = the forward's segment start states, reused when the
    backward splits the sequence the same way."""
    p = Problem(q, v, g, g_gamma, scale, feature_map, normalize, cu_seqlens)
    device = q.device
    if uses_passes(config, feature_map, normalize, need_dg and g_gamma is not None, p.scale):
        dq, dk, dv, dG, d_init_s = _backward_passes(p, q, k, v, g, g_gamma, do, init_s, d_final_s, cu_seqlens,
                                                    config, fwd_seg, need_dq, need_dk, need_dv, need_dg,
                                                    need_dinit)
        d_init_z = None
    else:
        dq, dk, dv, dG, d_init_s, d_init_z = _backward_carry(
            p, q, k, v, g, g_gamma, normalize, feature_map, init_s, init_z, o, den, do, d_final_s, d_final_z,
            cu_seqlens, config, fwd_seg, need_dq, need_dk, need_dv, need_dg, need_dinit)
    dg = None
    if need_dg:   # dG: fp32 partials [P, tokens, H]
        if d_final_s is not None:
            dG = dG.sum(0)
            # the final state depends on every decay of its sequence: +⟨dS_T, S_T⟩ on the last token
            term = (d_final_s * final_s).sum((-2, -1))
            if normalize and d_final_z is not None:
                term = term + (d_final_z * final_z).sum(-1)
            if cu_seqlens is None:
                last = torch.arange(1, p.N + 1, device=device) * p.T - 1
            else:
                last = cu_seqlens[1:].long() - 1
            keep = last >= (torch.arange(p.N, device=device) * p.T if cu_seqlens is None else cu_seqlens[:-1].long())
            dG = dG.index_add(0, last.clamp_min(0)[keep], term[keep]).unsqueeze(0)
        dg = _reverse_cumsum(dG, p)
    return dq, dk, dv, dg, d_init_s, d_init_z


def uses_passes(config, feature_map, normalize, dg_gamma, scale) -> bool:
    """Whether the backward runs as three forward-style passes (_backward_passes) rather than the
    state-carrying kernels. Not for the normalised or taylor2 forms (their extra terms live in the
    carrying kernels), nor for a g_gamma gradient: dg_gamma = Σ_t (t − bos + 1)·(r_t − c_t) cancels
    almost entirely, which the carrying kernels arrange exactly (fp32 here: 2.6e-5 relative)."""
    return (int(config.get("dq_block_k", 1)) != 0 and not normalize and feature_map != "taylor2"
            and not dg_gamma and scale != 0.0)


def _backward_passes(p: Problem, q, k, v, g, g_gamma, do, init_s, d_final_s, cu_seqlens, config, fwd_seg,
                     need_dq, need_dk, need_dv, need_dg, need_dinit):
    """The backward as three passes of _fwd_kernel (identity, elu1, relu maps; no normaliser):
        dq: forward, GRAD, over (dO, v, k) from Sᵀ;         a program per key-column tile
        dk: reverse, GRAD, over (v, dO, q) from (dS/scale)ᵀ; a program per key-column tile
        dv: reverse, over (k, q, dO) from dS/scale;          a program per value-column tile
    Each is the forward's loop (state transposed in registers, L2 prefetch), and none sums partial
    gradients over tiles. The decay gradient's row and column terms φx·∂L/∂φx come from the dq
    and dk passes (see NEED_R in _fwd_kernel), on the same chunks. Returns (dq, dk, dv, dG or None,
    d_init_s) with dG the fp32 partials [2·NK, tokens, H] the decay gradient's scan sums."""
    device = q.device
    NH = p.N * p.H
    seg_len, nseg = p.segments(config)
    d_init_s = None
    if nseg > 1:
        if fwd_seg is not None and fwd_seg[0] == seg_len:
            start_s = fwd_seg[1]
        else:
            start_s, _, _, _ = _segment_states(p, k, v, g, g_gamma, None, None, init_s, None,
                                               seg_len, nseg, config, reverse=False, with_z=False)
        ds_end, _, d_init_s, _ = _segment_states(p, q, do, g, g_gamma, None, None, d_final_s, None,
                                                 seg_len, nseg, config, reverse=True, with_z=False)
    else:
        start_s, ds_end = init_s, d_final_s
    # the passes carry dS/scale: like the forward's, their products take the scale once
    state_end = ds_end / p.scale if ds_end is not None else None
    store_d0 = need_dinit and nseg == 1
    d0 = torch.empty(p.N, p.H, p.K, p.V, device=device, dtype=torch.float32) if store_d0 else None

    block_k = dq_tile(config, p.K, p.V)
    NK = cdiv(p.K, block_k)
    block_v = p.block_v(config)
    dummy = do
    # r (dq pass) and −c (dk pass) per key-column tile: partials the decay gradient's scan sums
    parts = torch.empty(2, NK, p.tokens * p.H, device=device, dtype=torch.float32) if need_dg else None
    # fp32: dG without the (t, t) pairs, which cancel in it exactly but would leave their rounding
    # (g = -5: 1e-4 relative error in dg; half precision's own rounding is far above that)
    exact_diag = q.dtype == torch.float32
    r, c = (parts[0], parts[1]) if need_dg else (None, None)
    common = dict(H=p.H, BT=int(config["chunk"]), FEATURE=p.feature, USE_G=p.use_g, USE_GAMMA=p.use_gamma,
                  HAS_DECAY=p.use_g or p.use_gamma, NORMALIZE=False, IS_VARLEN=cu_seqlens is not None,
                  DOT_PREC=p.dot_prec, num_stages=int(config["num_stages"]))
    key_tiles = dict(K=p.V, V=p.K, KF=p.V, BK=next_pow2(p.V), BV=block_k,
                     num_warps=int(config.get("dq_warps", 4)), X_EARLY=bool(config.get("x_early", 0)))
    # the dq and dk passes when they also take the decay gradient's terms: tokens along the tile's
    # rows (ROWS) and (dg_prefetch 0) no L2 prefetch, whose addresses cost registers there
    if need_dg:
        key_tiles.update(ROWS=bool(config.get("dg_rows", 0)),
                         PREFETCH=bool(config.get("dg_prefetch", 1)) and not interpreter_on())

    def transposed(state):
        return state.transpose(-1, -2).contiguous() if state is not None else None

    def launch(grid, x, y, z, out, start, final=None, x_grad=None, r_out=None, PREFETCH=not interpreter_on(),
               ROWS=False, **meta):
        _fwd_kernel[grid](
            x, y, z, g if g is not None else dummy, g_gamma if g_gamma is not None else dummy, out, dummy,
            start if start is not None else dummy, dummy, final if final is not None else dummy, dummy,
            cu_seqlens if cu_seqlens is not None else dummy,
            x_grad if x_grad is not None else dummy, r_out if r_out is not None else dummy,
            p.scale, p.T, seg_len, nseg, p.tokens,
            HAS_START=start is not None, STORE_FINAL=final is not None, NEED_R=r_out is not None,
            EXACT_DIAG=r_out is not None and exact_diag, PREFETCH=PREFETCH, ROWS=ROWS, **common, **meta)

    dq = dk = dv = None
    if need_dq or need_dg:
        dq = torch.empty_like(q)
        launch((NK, NH, nseg), do, v, k, dq, transposed(start_s), x_grad=q, r_out=r, GRAD=True, **key_tiles)
    if need_dk or need_dg:
        dk = torch.empty_like(k)
        launch((NK, NH, nseg), v, do, q, dk, transposed(state_end), x_grad=k, r_out=c, GRAD=True, REVERSE=True,
               **key_tiles)
    if need_dv or store_d0:
        dv = torch.empty_like(v)
        launch((cdiv(p.V, block_v), NH, nseg), k, q, do, dv, state_end, final=d0, REVERSE=True,
               K=p.K, V=p.V, KF=p.K, BK=p.BK, BV=block_v, num_warps=int(config["num_warps"]))
    if store_d0:
        d_init_s = d0 * p.scale
    dG = parts.view(2 * NK, p.tokens, p.H) if need_dg else None
    return dq, dk, dv, dG, d_init_s


def _backward_carry(p: Problem, q, k, v, g, g_gamma, normalize, feature_map, init_s, init_z, o, den, do,
                    d_final_s, d_final_z, cu_seqlens, config, fwd_seg,
                    need_dq, need_dk, need_dv, need_dg, need_dinit):
    """The backward as two kernels that carry states: dq forward in time with S, dk and dv backward
    with dS. Serves every form; ``backward`` sends the normalised, taylor2 and g_gamma-gradient
    calls here. Returns (dq, dk, dv, dG [1, tokens, H] or None, d_init_s, d_init_z)."""
    device = q.device
    NH = p.N * p.H
    block_v = p.block_v(config)
    NV = cdiv(p.V, block_v)
    meta = p.common(config, block_v)
    # the dk/dv kernel may take its own V tile and warps (it carries a [K', V] dS, the dq kernel an S)
    dkv_config = dkv_tiles(config)
    dkv_block_v = p.block_v(dkv_config)
    NV_KV = cdiv(p.V, dkv_block_v)
    dkv_meta = p.common(dkv_config, dkv_block_v)
    seg_len, nseg = p.segments(config)
    dummy = do
    dden = None
    if normalize:
        inv = 1.0 / (den.view(p.B, p.T, p.H) + NORM_EPS)
        dden = (-(do.float() * o.float()).sum(-1) * inv).reshape(-1).contiguous()

    # states entering each segment (forward) and leaving it (reverse)
    ds_end, dz_end, has_end = d_final_s, d_final_z, d_final_s is not None
    d_init_s = d_init_z = None
    if nseg > 1:
        if fwd_seg is not None and fwd_seg[0] == seg_len:
            start_s, start_z = fwd_seg[1], fwd_seg[2]
        else:
            start_s, start_z, _, _ = _segment_states(p, k, v, g, g_gamma, None, None, init_s, init_z,
                                                     seg_len, nseg, config, reverse=False, with_z=normalize)
        has_start = True
        ds_end, dz_end, d_init_s, d_init_z = _segment_states(
            p, q, do, g, g_gamma, den if normalize else None, dden, d_final_s, d_final_z,
            seg_len, nseg, config, reverse=True, with_z=normalize)
        has_end = True
    else:
        start_s, start_z, has_start = init_s, init_z, init_s is not None
        if need_dinit:
            d_init_s = torch.empty(p.N, p.H, p.KF, p.V, device=device, dtype=torch.float32)
            d_init_z = torch.empty(p.N, p.H, p.KF, device=device, dtype=torch.float32) if normalize else None
    if normalize and has_end and dz_end is None:
        dz_end = torch.zeros(NH, nseg, p.KF, device=device, dtype=torch.float32)
    if normalize and has_start and start_z is None:
        start_z = torch.zeros(NH, nseg, p.KF, device=device, dtype=torch.float32)

    partial, partial_kv = NV > 1, NV_KV > 1
    # dg_gamma = Σ_t (t − bos + 1)·(r_t − c_t) cancels almost entirely, so the state products
    # feeding r and c must agree to ~fp32: with half-precision inputs the states (and the
    # decayed v / dO operands that build them) go through the tensor cores as hi + lo halves.
    # (Per-token g amplifies far less; it keeps the cheaper single pass.)
    precise_dg = need_dg and g_gamma is not None and q.dtype != torch.float32 and feature_map != "taylor2"
    # r / c: per-tile shares of the decay gradient's row and column terms, summed below
    r = c = None
    if need_dg:
        r = torch.empty(NV, p.tokens * p.H, device=device, dtype=torch.float32)
        c = torch.empty(NV_KV, p.tokens * p.H, device=device, dtype=torch.float32)
    dq = dk = dv = None
    if need_dq or need_dg:
        dq = (torch.empty(NV, p.tokens * p.H * p.K, device=device, dtype=torch.float32) if partial
              else torch.empty_like(q))
        _bwd_dq_kernel[(NV, NH, nseg)](
            q, k, v, do, g if g is not None else dummy, g_gamma if g_gamma is not None else dummy,
            den if den is not None else dummy, dden if dden is not None else dummy, dq,
            r if r is not None else dummy,
            start_s if start_s is not None else dummy, start_z if start_z is not None else dummy,
            cu_seqlens if cu_seqlens is not None else dummy,
            p.scale, p.T, seg_len, nseg, p.tokens,
            NORMALIZE=normalize, HAS_START=has_start, PARTIAL=partial, NEED_R=need_dg,
            PRECISE_DG=precise_dg, **meta)
        if partial:
            dq = dq.sum(0).view_as(q).to(q.dtype)
    store_ds0 = need_dinit and nseg == 1
    if need_dk or need_dv or need_dg or store_ds0:
        dk = (torch.empty(NV_KV, p.tokens * p.H * p.K, device=device, dtype=torch.float32) if partial_kv
              else torch.empty_like(k))
        dv = torch.empty_like(v)
        _bwd_dkv_kernel[(NV_KV, NH, nseg)](
            q, k, v, do, g if g is not None else dummy, g_gamma if g_gamma is not None else dummy,
            den if den is not None else dummy, dden if dden is not None else dummy, dk, dv,
            c if c is not None else dummy,
            ds_end if ds_end is not None else dummy, dz_end if dz_end is not None else dummy,
            d_init_s if d_init_s is not None else dummy, d_init_z if d_init_z is not None else dummy,
            cu_seqlens if cu_seqlens is not None else dummy,
            p.scale, p.T, seg_len, nseg, p.tokens,
            NORMALIZE=normalize, HAS_END=has_end, STORE_DS0=store_ds0, PARTIAL=partial_kv,
            NEED_C=need_dg, PRECISE_DG=precise_dg, **dkv_meta)
        if partial_kv:
            dk = dk.sum(0).view_as(k).to(k.dtype)

    dG = (r.sum(0) - c.sum(0)).view(1, p.tokens, p.H) if need_dg else None
    return dq, dk, dv, dG, d_init_s, d_init_z


def step(q, k, v, g, g_gamma, scale, feature_map, normalize, state_s, state_z, config,
         out_o=None, out_s=None, out_z=None):
    """One decode step: q, k [B, H, K], v [B, H, V], states fp32 contiguous -> (o, S', z')."""
    Bq, H, K = q.shape
    V = v.shape[-1]
    KF = feature_rows(feature_map, K)
    block_v = min(int(config["block_v"]), next_pow2(V))
    o = torch.empty_like(v) if out_o is None else out_o
    s_new = torch.empty_like(state_s) if out_s is None else out_s
    z_new = (torch.empty_like(state_z) if out_z is None else out_z) if normalize else None
    dummy = o
    _step_kernel[(cdiv(V, block_v), Bq * H)](
        q, k, v, g if g is not None else dummy, g_gamma if g_gamma is not None else dummy,
        state_s, state_z if state_z is not None else dummy, o, s_new,
        z_new if z_new is not None else dummy, float(scale),
        H=H, K=K, V=V, KF=KF, BK=next_pow2(K), BV=block_v,
        FEATURE=FEATURE_CODES[feature_map], USE_G=g is not None, USE_GAMMA=g_gamma is not None,
        HAS_DECAY=g is not None or g_gamma is not None, NORMALIZE=normalize, num_warps=int(config["num_warps"]))
    return o, s_new, z_new


# =============================================================================================
# templates
# =============================================================================================
#
# Configs are tuned per variant: the flags name the decay, the feature map and normalisation
# ("g", "g_gamma+elu1+norm", "none+taylor2", ...). taylor2 only exists for K <= 32, so it gets
# templates of its own (kernels "fwd_taylor2", "bwd_taylor2") whose workloads are Based shapes:
# every (shape, flags) pair a template lists is then a valid problem.

DECAYS = ("none", "g", "g_gamma")


def make_flags(decay: str, feature_map: str | None, normalize: bool) -> str:
    """The variant key configs are tuned per: "g", "none+taylor2", "g_gamma+elu1+norm", ..."""
    parts = [decay]
    if feature_map not in (None, "identity"):
        parts.append(feature_map)
    if normalize:
        parts.append("norm")
    return "+".join(parts)


def parse_flags(flags: str) -> tuple[str, str | None, bool]:
    """(decay, feature_map, normalize) of a flags string; "" means plain "none"."""
    parts = [p for p in (flags or "none").split("+") if p]
    decay = parts[0] if parts and parts[0] in DECAYS else "none"
    rest = parts[1:] if parts and parts[0] in DECAYS else parts
    unknown = [p for p in rest if p not in ("elu1", "relu", "taylor2", "norm")]
    if unknown:
        raise ValueError(f"unknown linear_attention flags {unknown} in {flags!r}")
    feature = next((p for p in rest if p in ("elu1", "relu", "taylor2")), None)
    return decay, feature, "norm" in rest


def _shape(feature_map: str | None = None, **sizes: int) -> dict[str, int]:
    """A shape bucket: B, T, H, K, V and F = K' (rows of the state, which sizes every tile)."""
    return {**sizes, "F": feature_rows(feature_map, sizes["K"])}


# The target shapes (H100, bf16) and a few neighbours.
TARGET = _shape(B=8, T=4096, H=16, K=128, V=128)
LONG = _shape(B=1, T=65536, H=16, K=128, V=128)
BASED = _shape("taylor2", B=8, T=4096, H=16, K=16, V=128)
MORE = [_shape(B=4, T=2048, H=32, K=64, V=64), _shape(B=2, T=8192, H=8, K=256, V=256)]
MORE_BASED = [_shape("taylor2", B=4, T=2048, H=16, K=32, V=64)]


def _state_rows_padded(shape) -> int:
    """Register rows of the state tile: BK, plus 1 + BK² for taylor2 (F > K)."""
    bk = next_pow2(shape["K"])
    return bk + (1 + bk * bk if shape["F"] > shape["K"] else 0)


class _ChunkTemplate(Template):
    """What the forward and backward templates share: space, constraints, inputs, reference."""

    op = "linear_attention"
    dims = ("B", "T", "H", "K", "V", "F")
    dtypes = ("bf16",)
    flags = ("g", "g_gamma", "none")
    workload = [TARGET, LONG, *MORE]
    quick_workload = [TARGET]
    cpu_workload = [_shape(B=1, T=40, H=2, K=16, V=32)]
    space = {
        "chunk": [16, 32, 64, 128],
        "block_v": [16, 32, 64, 128, 256],
        "num_warps": [2, 4, 8],
        "num_stages": [1, 2, 3],
        "split_len": [0, 1024, 2048, 4096, 8192, 16384],
    }
    # registers of fp32 live state a thread may hold before spills dominate
    max_state_regs = 128
    # segments follow the call's B·H and T (default_config's rule), not the tuned bucket's
    shape_knobs = ("split_len",)

    def source_files(self):
        from pathlib import Path
        # the kernels inline chunk_common's helpers, and the backward ends in reverse_cumsum's
        return [Path(__file__)] + [Path(__file__).with_name(f) for f in ("chunk_common.py", "reverse_cumsum.py")]

    def verification_shape(self, shape):
        # The float64 reference loops over sequences and chunks; fewer heads and batch rows keep
        # it quick while T, K, V (what the tiles and segments see) stay as tuned.
        return {**shape, "B": min(shape["B"], 2), "H": min(shape["H"], 4)}

    # --- the search space ---------------------------------------------------------------------
    def check_config(self, config, shape, gpu=None):
        chunk, block_v, warps = int(config["chunk"]), int(config["block_v"]), int(config["num_warps"])
        split, stages = int(config.get("split_len", 0)), int(config["num_stages"])
        V, T = shape["V"], shape["T"]
        bk = next_pow2(shape["K"])
        if block_v > max(16, next_pow2(V)):
            return f"block_v={block_v} exceeds V={V} (a smaller block_v launches the same kernel)"
        if chunk > max(16, next_pow2(T)):
            return f"chunk={chunk} exceeds T={T}"
        if split and split % chunk:
            return f"split_len={split} is not a multiple of chunk={chunk}"
        if split and split >= T:
            return f"split_len={split} >= T={T} (same as split_len=0)"
        threads = 32 * warps
        rows = _state_rows_padded(shape)
        state = rows * block_v
        if state / threads > self.max_state_regs:
            return (f"state tile {rows}x{block_v} fp32 needs {state // threads} registers per thread "
                    f"with {warps} warps (max {self.max_state_regs})")
        taylor_tile = chunk * bk * bk if shape["F"] > shape["K"] else 0
        live = (state + chunk * chunk * 2 + chunk * block_v + taylor_tile
                + (2 * chunk * bk + 2 * chunk * block_v) / 2)
        if live / threads > 320:
            return f"about {int(live / threads)} live registers per thread with {warps} warps"
        smem_limit = gpu.shared_memory_per_block if gpu is not None else 232448
        smem = (stages * (2 * chunk * bk + 2 * chunk * block_v) * 2 + chunk * chunk * 2
                + rows * block_v * 2 + taylor_tile * 2)
        if smem > smem_limit:
            return f"needs about {smem} bytes of shared memory (limit {smem_limit})"
        return None

    def _default_tiles(self, shape) -> dict:
        """chunk, block_v, num_warps that compile without register spills on sm_90 (checked with
        ptxas -v on the Triton 3.9 build; the tuner measures the rest)."""
        bk = next_pow2(shape["K"])
        bv_max = max(16, next_pow2(shape["V"]))
        # Four warps per (V tile, head) program beat eight on the H100 (bf16, g, K = V = 128,
        # block_v 64: 0.279 vs 0.549 ms; taylor2 K = 16, block_v 32: 0.587 vs 0.839 ms): the
        # chunk loop is latency-bound, and smaller programs put more of them on each SM.
        if shape["F"] > shape["K"]:                    # taylor2: a 1 + K + K² row state
            return {"chunk": 64, "block_v": min(32, bv_max), "num_warps": 4}
        block_v = min(64, bv_max)
        if bk >= 256:
            return {"chunk": 32, "block_v": block_v, "num_warps": 8}
        return {"chunk": 64, "block_v": block_v, "num_warps": 4}

    @staticmethod
    def _split_len(shape, block_v: int, gpu=None) -> int:
        """Segments for (V tile, head) programs of ``block_v`` columns: none while they fill the
        GPU, else about 2 programs per SM (H100, B=1 T=65536 H=16: split 8192 0.80 ms, 4096 0.91,
        2048 1.03)."""
        sms = gpu.sms if gpu is not None else 132
        T = shape["T"]
        programs = shape["B"] * shape["H"] * cdiv(shape["V"], block_v)
        if 2 * programs < sms and T >= 4096:
            split = max(1024, next_pow2(cdiv(T, cdiv(2 * sms, programs))))
            if split < T:
                return min(split, 16384)
        return 0

    def default_config(self, shape, gpu=None):
        config = {**self._default_tiles(shape), "num_stages": 2, "split_len": 0}
        config["split_len"] = self._split_len(shape, config["block_v"], gpu)
        for _ in range(4):   # shrink until the constraints accept it
            if self.check_config(config, shape, gpu) is None:
                break
            if config["num_warps"] < 8:
                config["num_warps"] *= 2
            elif config["block_v"] > 16:
                config["block_v"] //= 2
            else:
                config["chunk"] = max(16, config["chunk"] // 2)
        return config

    # --- inputs and references ------------------------------------------------------------------
    def _variant(self, shape, flags):
        decay, feature, normalize = parse_flags(flags)
        if shape["F"] != feature_rows(feature, shape["K"]):
            raise ValueError(f"shape {dict(shape)} does not fit flags {flags!r}: F must be "
                             f"{feature_rows(feature, shape['K'])}")
        return decay, feature, normalize

    def _base_inputs(self, shape, dtype, flags, device, generator):
        decay, feature, normalize = self._variant(shape, flags)
        B, T, H, K, V = (shape[d] for d in ("B", "T", "H", "K", "V"))
        dt = DTYPES[dtype]

        def randn(*size):   # drawn where the generator lives, then moved
            return torch.randn(*size, generator=generator, device=generator.device).to(device)

        q, k, v = randn(B, T, H, K), randn(B, T, H, K), randn(B, T, H, V)
        if normalize and feature is None:   # keep the normaliser away from 0
            q, k = q.abs() + 0.1, k.abs() + 0.1
        inputs = {"q": q.to(dt), "k": k.to(dt), "v": v.to(dt)}
        if decay == "g":
            inputs["g"] = torch.nn.functional.logsigmoid(randn(B, T, H) + 4.0)
        elif decay == "g_gamma":   # RetNet's per-head decays 1 − 2^(−5 … −9)
            inputs["g_gamma"] = torch.log1p(-torch.pow(
                2.0, -5.0 - torch.arange(H, device=device, dtype=torch.float32) / max(H - 1, 1) * 4))
        return inputs

    def _kwargs(self, inputs, flags):
        decay, feature, normalize = parse_flags(flags)
        return dict(g=inputs.get("g"), g_gamma=inputs.get("g_gamma"), feature_map=feature, normalize=normalize)

    def tolerance(self, dtype, output):
        base = super().tolerance(dtype, output)
        return base * 2 if output in ("dg", "dg_gamma") else base


class LinearAttentionFwd(_ChunkTemplate):
    """o = chunked linear attention (one fused kernel, or pass + scan + output with split_len)."""

    name = "linear_attention.fwd"
    kernel = "fwd"

    def flops(self, shape, dtype, flags=""):
        B, T, H, K, V, F = (shape[d] for d in self.dims)
        chunk = 64
        return float(B * T * H * (2 * chunk * (K + V) + 4 * F * V))

    def bytes(self, shape, dtype, flags=""):
        B, T, H, K, V = (shape[d] for d in ("B", "T", "H", "K", "V"))
        elt = DTYPES[dtype].itemsize
        decay = parse_flags(flags)[0]
        return float(B * T * H * (2 * K + 2 * V) * elt + (B * T * H * 4 if decay == "g" else 0))

    def make_inputs(self, shape, dtype, flags, device, generator):
        return self._base_inputs(shape, dtype, flags, device, generator)

    def allocate_outputs(self, inputs, shape, dtype, flags):
        return {"o": torch.empty_like(inputs["v"])}

    def launch(self, config, inputs, outputs, shape, flags):
        kw = self._kwargs(inputs, flags)
        forward(inputs["q"], inputs["k"], inputs["v"], kw["g"], kw["g_gamma"], shape["K"] ** -0.5,
                kw["feature_map"], kw["normalize"], None, None, False, None, config, out=outputs["o"])

    def reference(self, inputs, shape, flags):
        o, _ = ref.linear_attention_chunked(inputs["q"], inputs["k"], inputs["v"], **self._kwargs(inputs, flags))
        return {"o": o}


class LinearAttentionBwd(_ChunkTemplate):
    """dq (forward in time) and dk, dv (backward in time), and the decay gradient."""

    name = "linear_attention.bwd"
    kernel = "bwd"
    workload = [TARGET, *MORE]
    # block_v / num_warps tile the dq kernel (and the segment passes), dkv_* the dk/dv kernel
    # dq_block_k / dq_warps: the key-column tile and warps of the dq and dk passes (forward-style
    # loops over (dO, v, k) and (v, dO, q)); dq_block_k = 0 keeps the state-carrying kernels
    # (always used when normalising, for taylor2 and for a g_gamma gradient). x_early: those passes
    # load q (k) for φ' and the decay gradient with the chunk's operands rather than where used;
    # dg_rows / dg_prefetch: those passes, when taking the decay gradient's terms, build their tile
    # with tokens along the rows (ROWS in _fwd_kernel) / prefetch the next chunks into L2.
    space = {**_ChunkTemplate.space, "dkv_block_v": [16, 32, 64, 128, 256], "dkv_warps": [2, 4, 8],
             "dq_block_k": [0, 32, 64, 128], "dq_warps": [4, 8], "x_early": [0, 1], "dg_rows": [0, 1],
             "dg_prefetch": [0, 1]}

    def check_config(self, config, shape, gpu=None):
        problem = super().check_config(config, shape, gpu)
        if problem is None and ("dkv_block_v" in config or "dkv_warps" in config):
            problem = super().check_config(dkv_tiles(config), shape, gpu)
            problem = f"dk/dv kernel: {problem}" if problem else None
        if problem is None and int(config.get("dq_block_k", 0)):
            # the dq pass sees the key and value widths swapped
            swapped = {**shape, "K": shape["V"], "V": shape["K"], "F": shape["V"]}
            tiles = {**config, "block_v": int(config["dq_block_k"]), "num_warps": int(config.get("dq_warps", 4))}
            problem = super().check_config(tiles, swapped, gpu)
            problem = f"dq pass: {problem}" if problem else None
        return problem

    def default_config(self, shape, gpu=None):
        """The state-carrying kernels' default (what the normalised, taylor2 and g_gamma variants
        run; ``default_for`` gives the others the passes' tiles)."""
        config = super().default_config(shape, gpu)
        return {**config, "dkv_block_v": config["block_v"], "dkv_warps": config["num_warps"]}

    def default_for(self, shape, gpu=None, flags=""):
        config = self.default_config(shape, gpu)
        decay, feature, normalize = parse_flags(flags)
        if not uses_passes({}, feature, normalize, decay == "g_gamma", 1.0):
            return config
        # The three passes are the forward's loop: its tiles (chunk 64, a 64-column tile, 4 warps
        # at K = V = 128), the dk/dv kernel's keys kept for a caller that turns the passes off.
        tiles = super()._default_tiles(shape)
        # segments counted on the passes' own programs, as the forward counts its own: the two
        # then cut a sequence alike and the backward reuses the forward's segment states
        passes = {**config, "chunk": tiles["chunk"], "block_v": tiles["block_v"], "num_warps": tiles["num_warps"],
                  "split_len": self._split_len(shape, tiles["block_v"], gpu),
                  "dq_block_k": dq_tile({}, shape["K"], shape["V"]), "dq_warps": tiles["num_warps"],
                  "x_early": 1,   # H100, g: 1.047 vs 1.070 ms for the backward
                  "dg_rows": 1, "dg_prefetch": 0}   # H100, g with dg: 0.887 vs 1.045 ms (round 101)
        return passes if self.check_config(passes, shape, gpu) is None else config

    def _default_tiles(self, shape) -> dict:
        # One V tile when it fits, so dq and dk are written directly rather than summed over
        # tiles; short chunks keep the dk/dv kernel's [K, V] dS plus its tiles in registers.
        bk = next_pow2(shape["K"])
        bv_max = max(16, next_pow2(shape["V"]))
        if shape["F"] > shape["K"]:
            return {"chunk": 16, "block_v": min(32, bv_max), "num_warps": 4}
        block_v = min(128 if bk <= 128 else 64, bv_max)
        if bk * block_v > 128 * 128:
            return {"chunk": 16, "block_v": block_v, "num_warps": 8}
        if bk * block_v == 128 * 128:   # H100, g, K = V = 128: chunk 32 1.67 ms, chunk 16 2.01 ms
            return {"chunk": 32, "block_v": block_v, "num_warps": 8}
        return {"chunk": 32 if bk * block_v > 64 * 64 else 64, "block_v": block_v,
                "num_warps": 8 if bk * block_v > 64 * 64 else 4}

    def flops(self, shape, dtype, flags=""):
        B, T, H, K, V, F = (shape[d] for d in self.dims)
        chunk = 64
        return float(B * T * H * (2 * chunk * (3 * K + 3 * V) + 10 * F * V))

    def bytes(self, shape, dtype, flags=""):
        B, T, H, K, V = (shape[d] for d in ("B", "T", "H", "K", "V"))
        elt = DTYPES[dtype].itemsize
        decay = parse_flags(flags)[0]
        return float(B * T * H * (4 * K + 4 * V) * elt + (B * T * H * 8 if decay == "g" else 0))

    def make_inputs(self, shape, dtype, flags, device, generator):
        inputs = self._base_inputs(shape, dtype, flags, device, generator)
        inputs["do"] = torch.randn(inputs["v"].shape, generator=generator,
                                   device=generator.device).to(device=device, dtype=inputs["v"].dtype)
        kw = self._kwargs(inputs, flags)
        if kw["normalize"]:   # the backward of a normalised output needs o and its normaliser
            o, den, *_ = forward(inputs["q"], inputs["k"], inputs["v"], kw["g"], kw["g_gamma"],
                                 shape["K"] ** -0.5, kw["feature_map"], True, None, None, False, None,
                                 self.default_config(shape))
            inputs["o"], inputs["den"] = o, den
        return inputs

    def allocate_outputs(self, inputs, shape, dtype, flags):
        out = {"dq": torch.empty_like(inputs["q"]), "dk": torch.empty_like(inputs["k"]),
               "dv": torch.empty_like(inputs["v"])}
        if "g" in inputs:
            out["dg"] = torch.empty_like(inputs["g"])
        if "g_gamma" in inputs:
            out["dg_gamma"] = torch.empty_like(inputs["g_gamma"])
        return out

    def launch(self, config, inputs, outputs, shape, flags):
        kw = self._kwargs(inputs, flags)
        need_dg = kw["g"] is not None or kw["g_gamma"] is not None
        dq, dk, dv, dg, _, _ = backward(
            inputs["q"], inputs["k"], inputs["v"], kw["g"], kw["g_gamma"], shape["K"] ** -0.5,
            kw["feature_map"], kw["normalize"], None, None, inputs.get("o"), inputs.get("den"),
            inputs["do"], None, None, None, None, None, config, need_dg=need_dg)
        outputs["dq"].copy_(dq)
        outputs["dk"].copy_(dk)
        outputs["dv"].copy_(dv)
        if "dg" in outputs:
            outputs["dg"].copy_(dg.view_as(outputs["dg"]))
        if "dg_gamma" in outputs:
            outputs["dg_gamma"].copy_(dg.sum(0))

    def reference(self, inputs, shape, flags):
        kw = self._kwargs(inputs, flags)
        leaves = {name: inputs[name].detach().to(torch.float64).requires_grad_()
                  for name in ("q", "k", "v", "g", "g_gamma") if name in inputs}
        o, _ = ref.linear_attention_chunked(leaves["q"], leaves["k"], leaves["v"], g=leaves.get("g"),
                                            g_gamma=leaves.get("g_gamma"), feature_map=kw["feature_map"],
                                            normalize=kw["normalize"])
        grads = torch.autograd.grad(o, list(leaves.values()), inputs["do"].to(torch.float64))
        names = {"q": "dq", "k": "dk", "v": "dv", "g": "dg", "g_gamma": "dg_gamma"}
        return {names[n]: gr for n, gr in zip(leaves, grads)}


class LinearAttentionFwdTaylor2(LinearAttentionFwd):
    """The forward with Based's taylor2 feature map (K <= 32): a 1 + K + K² row state."""

    name = "linear_attention.fwd_taylor2"
    kernel = "fwd_taylor2"
    flags = ("none+taylor2", "none+taylor2+norm")
    workload = [BASED, *MORE_BASED]
    quick_workload = [BASED]
    cpu_workload = [_shape("taylor2", B=1, T=40, H=2, K=16, V=32)]


class LinearAttentionBwdTaylor2(LinearAttentionBwd):
    """The backward with the taylor2 feature map; q-side gradients are reduced over V tiles."""

    name = "linear_attention.bwd_taylor2"
    kernel = "bwd_taylor2"
    flags = ("none+taylor2",)
    workload = [BASED]
    quick_workload = [BASED]
    cpu_workload = [_shape("taylor2", B=1, T=40, H=2, K=16, V=32)]


class LinearAttentionStep(Template):
    """One decode token per sequence: S ← exp(g)·S + φ'(k)·vᵀ, o = φ'_q(q)·S."""

    name = "linear_attention.step"
    op = "linear_attention"
    kernel = "step"
    dims = ("B", "H", "K", "V", "F")
    dtypes = ("bf16",)
    flags = ("g", "none")
    space = {"block_v": [16, 32, 64, 128], "num_warps": [1, 2, 4, 8]}
    workload = [_shape(B=64, H=16, K=128, V=128), _shape(B=8, H=16, K=128, V=128)]
    quick_workload = workload[:1]
    cpu_workload = [_shape(B=2, H=2, K=16, V=32)]

    source_files = _ChunkTemplate.source_files

    def check_config(self, config, shape, gpu=None):
        if config["block_v"] > max(16, next_pow2(shape["V"])):
            return f"block_v={config['block_v']} exceeds V={shape['V']}"
        rows = _state_rows_padded(shape)
        if rows * config["block_v"] / (32 * config["num_warps"]) > 128:
            return f"state tile {rows}x{config['block_v']} is too big for {config['num_warps']} warps"
        return None

    def default_config(self, shape, gpu=None):
        taylor = shape["F"] > shape["K"]
        config = {"block_v": min(32 if taylor else 64, max(16, next_pow2(shape["V"]))),
                  "num_warps": 4}
        while self.check_config(config, shape, gpu) is not None and config["num_warps"] < 8:
            config["num_warps"] *= 2
        while self.check_config(config, shape, gpu) is not None and config["block_v"] > 16:
            config["block_v"] //= 2
        return config

    def flops(self, shape, dtype, flags=""):
        return float(shape["B"] * shape["H"] * 6 * shape["F"] * shape["V"])

    def bytes(self, shape, dtype, flags=""):
        B, H, K, V, F = (shape[d] for d in self.dims)
        return float(B * H * (2 * F * V * 4 + (2 * K + 2 * V) * DTYPES[dtype].itemsize))

    def make_inputs(self, shape, dtype, flags, device, generator):
        decay, feature, normalize = parse_flags(flags)
        B, H, K, V, F = (shape[d] for d in self.dims)
        if F != feature_rows(feature, K):
            raise ValueError(f"shape {dict(shape)} does not fit flags {flags!r}")
        dt = DTYPES[dtype]

        def randn(*size):
            return torch.randn(*size, generator=generator, device=generator.device).to(device)

        inputs = {"q": randn(B, H, K).to(dt), "k": randn(B, H, K).to(dt), "v": randn(B, H, V).to(dt),
                  "state": randn(B, H, F, V)}
        if normalize:
            inputs["q"], inputs["k"] = inputs["q"].abs(), inputs["k"].abs()
            inputs["z"] = torch.rand(B, H, F, generator=generator, device=generator.device).to(device) + 1.0
        if decay == "g":
            inputs["g"] = torch.nn.functional.logsigmoid(randn(B, H) + 4.0)
        elif decay == "g_gamma":
            inputs["g_gamma"] = -torch.rand(H, generator=generator, device=generator.device).to(device) * 0.1
        return inputs

    def allocate_outputs(self, inputs, shape, dtype, flags):
        out = {"o": torch.empty_like(inputs["v"]), "state": torch.empty_like(inputs["state"])}
        if "z" in inputs:
            out["z"] = torch.empty_like(inputs["z"])
        return out

    def launch(self, config, inputs, outputs, shape, flags):
        decay, feature, normalize = parse_flags(flags)
        step(inputs["q"], inputs["k"], inputs["v"], inputs.get("g"), inputs.get("g_gamma"),
             shape["K"] ** -0.5, feature, normalize, inputs["state"], inputs.get("z"), config,
             out_o=outputs["o"], out_s=outputs["state"], out_z=outputs.get("z"))

    def reference(self, inputs, shape, flags):
        decay, feature, normalize = parse_flags(flags)
        state = (inputs["state"], inputs["z"]) if normalize else inputs["state"]
        o, new = ref.linear_attention_step(inputs["q"], inputs["k"], inputs["v"], state, inputs.get("g"),
                                           inputs.get("g_gamma"), None, feature, normalize)
        out = {"o": o, "state": new[0] if normalize else new}
        if normalize:
            out["z"] = new[1]
        return out


FWD = register(LinearAttentionFwd())
BWD = register(LinearAttentionBwd())
FWD_TAYLOR2 = register(LinearAttentionFwdTaylor2())
BWD_TAYLOR2 = register(LinearAttentionBwdTaylor2())
STEP = register(LinearAttentionStep())


def templates_for(feature_map: str | None) -> tuple[Template, Template]:
    """(forward, backward) template a call with this feature map dispatches to."""
    return (FWD_TAYLOR2, BWD_TAYLOR2) if feature_map == "taylor2" else (FWD, BWD)
