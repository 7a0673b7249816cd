"""Mamba selective scan: Triton kernels, their launchers and the templates the tuner sees.

Math (issue 3), per batch b, channel d (group g = d // (dim / G)) and state n:

    δ_t = softplus?(delta_t + delta_bias)
    h_t = exp(δ_t·A[d,n]) · h_{t-1} + δ_t · B_t[g,n] · u_t        (h_{-1} = initial_state or 0)
    y_t = Σ_n C_t[g,n] · h_t + D·u_t,   then y_t *= silu(z_t)

Kernels (one program = one batch row, one group, a block of BLOCK_D channels, all N states):

* ``_selective_scan_fwd_kernel`` walks L in chunks of BLOCK_L. u/delta/z tiles [BLOCK_D, BLOCK_L]
  are loaded coalesced along L (the next chunk's tiles are loaded before the current one is
  computed, so the DRAM latency hides behind a chunk of work). Inside a chunk, a constexpr picks
  the recurrence:
    - ``SEQUENTIAL``: BLOCK_L unrolled steps of h = a·h + b on a [BLOCK_D, N] state held in
      registers; per step the columns of the tiles are picked out with a constant mask (free when
      a tile row lives in one thread, the usual layout for BLOCK_L·elem_size <= 16 bytes). One
      exp, ~4 FMA-pipe ops per (t, d, n): the exp unit (16/clk/SM) is the bound.
    - ``tl.associative_scan`` over a [BLOCK_D, N, BLOCK_L] tile with the combine
      (a1, b1)∘(a2, b2) = (a1·a2, a2·b1 + b2): same exps, ~2x the FMA-pipe work (the combine and
      the last-element pick), but no per-step loads. Expected to lose at N=16 and win only where
      the sequential loop is latency bound (very few programs); the tuner measures.
* ``_selective_scan_fwd_tile_kernel`` (``scan="tile"``): the associative scan again, with every
  tensor built from 3-D loads so the tile takes a load's layout (steps vectorized per thread, N
  in-thread) rather than one step per lane; see the kernel's comment and docs/selective_scan.md.
  B and C are first packed by ``_pack_bc_kernel`` into one fp32 [batch, G, L_pad, 2, N_pad]
  buffer (zero padded), so each step reads one 2·N_pad·4-byte row with no masks or conversions.
  ``EXP_FMA`` > 0 moves that many states of each row from the exp unit to a degree-5 polynomial
  on the FMA pipe (the trick FlashAttention-3 uses for softmax), to balance the two pipes.
* ``_selective_scan_bwd_kernel`` walks the chunks backwards. The forward (training mode) saves
  the state every CHECKPOINT_STEPS steps; per such segment the backward recomputes the segment
  once (saving each chunk's start state to a small per-program scratch), then per chunk, in
  reverse: recomputes the chunk keeping every step's state and decay in registers (a tuple),
  and runs the adjoint recurrence g_t = a_{t+1}·g_{t+1} + C_t·dy_t with every gradient term
  formed in the same pass. Reductions over channels (dB, dC) go to per-program partial buffers
  summed by torch afterwards (deterministic; no atomics); dA, dD, ddelta_bias likewise per batch.
* ``_selective_state_update_kernel``: one decode token, state read once and written once.

The CUDA backend (``selective_scan_cuda.py`` + ``selective_scan.cu``) is a tuning dimension of
the fwd, bwd and step templates: ``config["backend"]`` picks it, ``canonical`` drops the other
backend's parameters, and ``check_config`` rejects it where CuPy or a GPU is missing. The bwd
template's CUDA configs run the channel-layout backward (:func:`selective_scan_bwd` dispatches;
same inputs and outputs as the Triton backward).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import torch
import triton
import triton.language as tl

from kernelgen.checks import interpreter_on
from kernelgen.launch import cdiv
from kernelgen.reference.selective_scan import selective_scan_ref, selective_state_update_ref
from kernelgen.template import DTYPES, Config, Shape, Template, Tensors
from kernelgen.templates import register

try:   # lg2.approx (tl.log2 lowers to a ~15-instruction polynomial); the module moved in triton 3.x
    from triton.language.extra import libdevice as _libdevice
except ImportError:  # pragma: no cover - older triton
    from triton.language.extra.cuda import libdevice as _libdevice

try:   # the CUDA backend is optional: without it (or without CuPy/a GPU) only Triton configs run
    from kernelgen.templates import selective_scan_cuda as _cuda
    _CUDA_IMPORT_ERROR: str | None = None
except Exception as _error:  # noqa: BLE001 - any failure to import means "no CUDA backend"
    _cuda = None
    _CUDA_IMPORT_ERROR = f"templates/selective_scan_cuda.py failed to import: {type(_error).__name__}: {_error}"

MAX_STATES = 256
# The forward saves the state every CHECKPOINT_STEPS steps in training mode; the backward
# recomputes from there. Memory: batch·dim·N·4 bytes per 64 steps (1 byte per (b, d, t) at N=16).
CHECKPOINT_STEPS = 64
if _cuda is not None:
    assert _cuda.CHECKPOINT_STEPS == CHECKPOINT_STEPS, "the CUDA forward writes the Triton backward's checkpoints"
# The CUDA channel-layout forward (a thread per channel, B/C shared through shared memory) as the
# default where there are channels enough to fill the GPU; see default_config.
CHANNEL_LAYOUT_DEFAULT = True
# The CUDA channel-layout backward as the default config from 8192 channels (N <= 16): H100, bf16,
# batch 8 x dim 2048 x L 4096 x N 16: 2.21 ms with atomic block sums (its default; 2.31 with
# partials, deterministic mode's choice) vs 3.44 for the Triton backward (see BWD.default_config and
# docs/selective_scan_cuda.md).
CUDA_BWD_DEFAULT = True
# B and C are packed with L padded to a multiple of this (every chunk length divides it).
L_PAD_MULTIPLE = 64


def _next_pow2(value: int) -> int:
    return 1 << max(0, int(value) - 1).bit_length()


def padded_states(n_states: int) -> int:
    """N rounded up to the power of two the kernels tile it with (at least 2)."""
    return max(2, _next_pow2(n_states))


# --- building blocks (inlined into the kernels) --------------------------------------------------

@triton.jit
def _softplus(x, FAST_LOG: tl.constexpr):
    # log(1 + e^x) on the exp2/log2 units; past 20 it equals x in fp32. (log(1 + e^x) loses
    # relative accuracy only where e^x < 1e-7, i.e. for steps too small to move the state.)
    # FAST_LOG: lg2.approx; off under the interpreter, which has no such libdevice function.
    w = 1.0 + tl.exp2(tl.minimum(x, 20.0) * 1.4426950408889634)
    if FAST_LOG:
        log2w = _libdevice.fast_log2f(w)
    else:
        log2w = tl.log2(w)
    return tl.where(x > 20.0, x, log2w * 0.6931471805599453)


@triton.jit
def _exp2_fma(x):
    # 2^x for x <= 0 on the FMA pipe: x = j + f with j the nearest integer (the 1.5·2^23 trick
    # rounds without a conversion instruction), 2^f from a degree-5 polynomial on [-0.5, 0.5]
    # (relative error 1.8e-7, as good as ex2.approx), then j is added to the exponent bits.
    x = tl.maximum(x, -125.0)
    shifted = x + 12582912.0
    j = shifted - 12582912.0
    f = x - j
    p = 0.0013218672247603536 * f + 0.009671698324382305
    p = p * f + 0.05550893023610115
    p = p * f + 0.24022237956523895
    p = p * f + 0.6931468844413757
    p = p * f + 1.0
    j_bits = (shifted.to(tl.int32, bitcast=True) - 0x4B400000) << 23
    return (p.to(tl.int32, bitcast=True) + j_bits).to(tl.float32, bitcast=True)


@triton.jit
def _exp2(x, state_index, EXP_FMA: tl.constexpr):
    # States with index < EXP_FMA take the polynomial; the rest the exp unit. The index is a
    # compile-time constant per register when a row lives in one thread, so the select folds.
    if EXP_FMA > 0:
        return tl.where(state_index < EXP_FMA, _exp2_fma(x), tl.exp2(x))
    else:
        return tl.exp2(x)


@triton.jit
def _column(tile, cols, k: tl.constexpr):
    # tile[:, k] as a [BLOCK_D] vector (a register pick when the row is in one thread; -0.0 is
    # the exact identity of +, so the compiler can drop the adds of the masked-out entries).
    return tl.sum(tl.where(cols[None, :] == k, tile, -0.0), axis=1)


@triton.jit
def _put_column(tile, cols, k: tl.constexpr, value):
    return tl.where(cols[None, :] == k, value[:, None], tile)


@triton.jit
def _affine_combine(a_first, b_first, a_second, b_second):
    # Compose h -> a_first·h + b_first, then h -> a_second·h + b_second.
    return a_first * a_second, a_second * b_first + b_second


@triton.jit
def _load_tile(ptr, rows, l, mask):
    # [BLOCK_D, BLOCK_L] fp32 tile of a [*, L] tensor whose L stride is 1; rows are int64 offsets.
    return tl.load(ptr + rows[:, None] + l[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _chunk_delta(raw, bias, mask, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, FAST_LOG: tl.constexpr):
    # δ for a tile; exactly 0 outside the sequence / channel range, so masked steps leave h as is.
    dt = raw
    if HAS_BIAS:
        dt = dt + bias[:, None]
    if SOFTPLUS:
        dt = _softplus(dt, FAST_LOG)
    return tl.where(mask, dt, 0.0)


@triton.jit
def _advance_chunk(h, dt, du, A2, bc, n, cols, BLOCK_L: tl.constexpr, NP: tl.constexpr,
                   EXP_FMA: tl.constexpr):
    # BLOCK_L steps of the recurrence, no outputs (the backward's segment recompute).
    for k in tl.static_range(BLOCK_L):
        B_k = tl.load(bc + k * (2 * NP) + n)
        a = _exp2(_column(dt, cols, k)[:, None] * A2, n[None, :], EXP_FMA)
        h = a * h + _column(du, cols, k)[:, None] * B_k[None, :]
    return h


@triton.jit
def _stack_steps(zs, T: tl.constexpr):
    # A tuple of T tensors [R, W, 2] -> one [R, W, 2, T...] tensor whose trailing axes, read as one
    # index, are the step t (tl.join puts its new axis innermost; pairing k with k + T/2 first
    # makes the flattened index come out as t).
    if T == 1:
        return zs[0]
    elif T == 2:
        return tl.join(zs[0], zs[1])
    elif T == 4:
        return tl.join(tl.join(zs[0], zs[2]), tl.join(zs[1], zs[3]))
    else:
        tl.static_assert(T == 8, "chunk must be 1, 2, 4 or 8")
        return tl.join(tl.join(tl.join(zs[0], zs[4]), tl.join(zs[2], zs[6])),
                       tl.join(tl.join(zs[1], zs[5]), tl.join(zs[3], zs[7])))


@triton.jit
def _store_channel_sum(ptr, Z, BLOCK_D: tl.constexpr, W: tl.constexpr, USE_DOT: tl.constexpr):
    # ptr[w] = Σ_d Z[d, w]. A sum over channels is a sum across lanes: as a tl.sum it costs a
    # shuffle and an add per value per halving of the lanes; as a matrix product with a one-hot
    # row (tensor cores, tf32x3 ≈ fp32 accuracy) it costs one pass through shared memory.
    if USE_DOT:
        rows = tl.arange(0, 16)
        pick = tl.where(rows[:, None] == 0, 1.0, 0.0) + tl.zeros([16, BLOCK_D], dtype=tl.float32)
        total = tl.dot(pick, Z, input_precision="tf32x3")
        tl.store(ptr + rows[:, None] * 0 + tl.arange(0, W)[None, :], total, mask=rows[:, None] == 0)
    else:
        tl.store(ptr + tl.arange(0, W), tl.sum(Z, axis=0))


# --- B and C packing -------------------------------------------------------------------------------

@triton.jit
def _pack_bc_kernel(B_ptr, C_ptr, BC_ptr, L, s_bb, s_bg, s_bn, s_bl, s_cb, s_cg, s_cn, s_cl, s_ob, s_og,
                    NSTATE: tl.constexpr, NP: tl.constexpr, BLOCK_L: tl.constexpr):
    # BC[b, g, l, 0, n] = B[b, g, n, l], BC[b, g, l, 1, n] = C[b, g, n, l], fp32, zero padded.
    pid_l, g, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    l = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    n = tl.arange(0, NP)
    mask = (l < L)[:, None] & (n < NSTATE)[None, :]
    B = tl.load(B_ptr + b * s_bb + g * s_bg + n[None, :] * s_bn + l[:, None] * s_bl, mask=mask, other=0.0)
    C = tl.load(C_ptr + b * s_cb + g * s_cg + n[None, :] * s_cn + l[:, None] * s_cl, mask=mask, other=0.0)
    out = BC_ptr + b * s_ob + g * s_og + l[:, None] * (2 * NP) + n[None, :]
    tl.store(out, B.to(tl.float32))
    tl.store(out + NP, C.to(tl.float32))


def pack_bc(B: torch.Tensor, C: torch.Tensor, n_pad: int) -> torch.Tensor:
    """B, C [batch, G, N, L] (any strides, any float dtype) -> fp32 [batch, G, L_pad, 2, n_pad]."""
    batch, groups, n_states, length = B.shape
    l_pad = max(L_PAD_MULTIPLE, math.ceil(length / L_PAD_MULTIPLE) * L_PAD_MULTIPLE)
    packed = torch.empty(batch, groups, l_pad, 2, n_pad, device=B.device, dtype=torch.float32)
    if batch and groups:
        block_l = 64
        _pack_bc_kernel[(l_pad // block_l, groups, batch)](
            B, C, packed, length, *B.stride(), *C.stride(), packed.stride(0), packed.stride(1),
            NSTATE=n_states, NP=n_pad, BLOCK_L=block_l, num_warps=4)
    return packed


# --- forward ---------------------------------------------------------------------------------------

@triton.jit
def _channel_block(pid_d, g, b, dpg, dim, A_ptr, D_ptr, bias_ptr, NSTATE: tl.constexpr, NP: tl.constexpr,
                   BLOCK_D: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
    # A program's channels: BLOCK_D of group g in batch row b, with all NP (padded) states. Returns
    # the channel mask and indices, the state index, mask and offset into [batch, dim, N] tensors,
    # A·log2(e) (the exp2 argument's factor), and D and delta_bias per channel (0 when absent).
    d_local = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = d_local < dpg
    d = (g * dpg + d_local).to(tl.int64)
    n = tl.arange(0, NP)
    state_mask = d_mask[:, None] & (n < NSTATE)[None, :]
    state_off = (b * dim + d)[:, None] * NSTATE + n[None, :]
    A2 = tl.load(A_ptr + d[:, None] * NSTATE + n[None, :], mask=state_mask, other=0.0) * 1.4426950408889634
    D = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        D = tl.load(D_ptr + d, mask=d_mask, other=0.0).to(tl.float32)
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d, mask=d_mask, other=0.0).to(tl.float32)
    return d_mask, d, n, state_mask, state_off, A2, D, bias


@triton.jit
def _selective_scan_fwd_kernel(
        u_ptr, delta_ptr, z_ptr, A_ptr, BC_ptr, D_ptr, bias_ptr, h0_ptr,
        out_ptr, last_ptr, ckpt_ptr,
        L, dpg, n_ckpt,
        s_ub, s_ud, s_db, s_dd, s_zb, s_zd, s_ob, s_od, s_bcb, s_bcg,
        NSTATE: tl.constexpr, NP: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
        SEQUENTIAL: tl.constexpr, EXP_FMA: tl.constexpr, CKPT_CHUNKS: tl.constexpr,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
        HAS_H0: tl.constexpr, WRITE_LAST: tl.constexpr, FAST_LOG: tl.constexpr):
    pid_d, g, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    dim = tl.num_programs(1) * dpg
    d_mask, d, n, state_mask, state_off, A2, D, bias = _channel_block(
        pid_d, g, b, dpg, dim, A_ptr, D_ptr, bias_ptr, NSTATE, NP, BLOCK_D, HAS_D, HAS_BIAS)
    cols = tl.arange(0, BLOCK_L)
    if HAS_H0:
        h = tl.load(h0_ptr + state_off, mask=state_mask, other=0.0).to(tl.float32)
    else:
        h = tl.zeros([BLOCK_D, NP], dtype=tl.float32)
    bc_base = BC_ptr + b * s_bcb + g * s_bcg
    u_rows = b * s_ub + d * s_ud
    dt_rows = b * s_db + d * s_dd
    z_rows = b * s_zb + d * s_zd
    o_rows = b * s_ob + d * s_od

    # The first chunk's tiles; inside the loop the next chunk's are loaded before any math.
    mask = d_mask[:, None] & (cols < L)[None, :]
    u_next = _load_tile(u_ptr, u_rows, cols, mask)
    dt_next = _load_tile(delta_ptr, dt_rows, cols, mask)
    if HAS_Z:
        z_next = _load_tile(z_ptr, z_rows, cols, mask)
    for l0 in range(0, L, BLOCK_L):
        l = l0 + cols
        mask = d_mask[:, None] & (l < L)[None, :]
        u, dt_raw = u_next, dt_next
        next_mask = d_mask[:, None] & (l + BLOCK_L < L)[None, :]
        u_next = _load_tile(u_ptr, u_rows, l + BLOCK_L, next_mask)
        dt_next = _load_tile(delta_ptr, dt_rows, l + BLOCK_L, next_mask)
        if HAS_Z:
            zt = z_next
            z_next = _load_tile(z_ptr, z_rows, l + BLOCK_L, next_mask)
        if CKPT_CHUNKS > 0:
            chunk = l0 // BLOCK_L
            if chunk % CKPT_CHUNKS == 0:
                tl.store(ckpt_ptr + (b * dim + d)[:, None] * (n_ckpt * NSTATE) + (chunk // CKPT_CHUNKS) * NSTATE
                         + n[None, :], h, mask=state_mask)
        dt = _chunk_delta(dt_raw, bias, mask, HAS_BIAS, SOFTPLUS, FAST_LOG)
        du = dt * u
        bc = bc_base + l0 * (2 * NP)
        if SEQUENTIAL:
            y = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)
            for k in tl.static_range(BLOCK_L):
                B_k = tl.load(bc + k * (2 * NP) + n)
                C_k = tl.load(bc + k * (2 * NP) + NP + n)
                a = _exp2(_column(dt, cols, k)[:, None] * A2, n[None, :], EXP_FMA)
                h = a * h + _column(du, cols, k)[:, None] * B_k[None, :]
                y = _put_column(y, cols, k, tl.sum(h * C_k[None, :], axis=1))
        else:
            bc_tile = bc + cols[None, :] * (2 * NP) + n[:, None]                 # [NP, BLOCK_L]
            B_t = tl.load(bc_tile)
            C_t = tl.load(bc_tile + NP)
            a = _exp2(dt[:, None, :] * A2[:, :, None], n[None, :, None], EXP_FMA)   # [BLOCK_D, NP, BLOCK_L]
            x = du[:, None, :] * B_t[None, :, :]
            x = tl.where(cols[None, None, :] == 0, x + a * h[:, :, None], x)     # carry in at the first step
            _, hs = tl.associative_scan((a, x), 2, _affine_combine)
            y = tl.sum(hs * C_t[None, :, :], axis=1)
            h = tl.sum(tl.where(cols[None, None, :] == BLOCK_L - 1, hs, 0.0), axis=2)
        if HAS_D:
            y += D[:, None] * u
        if HAS_Z:
            y *= zt * tl.sigmoid(zt)
        tl.store(out_ptr + o_rows[:, None] + l[None, :], y.to(out_ptr.dtype.element_ty), mask=mask)
    if WRITE_LAST:
        tl.store(last_ptr + state_off, h, mask=state_mask)


@triton.jit
def _selective_scan_fwd_tile_kernel(
        u_ptr, delta_ptr, z_ptr, A_ptr, BC_ptr, D_ptr, bias_ptr, h0_ptr,
        out_ptr, last_ptr, ckpt_ptr,
        L, dpg, n_ckpt,
        s_ub, s_ud, s_db, s_dd, s_zb, s_zd, s_ob, s_od, s_bcb, s_bcg,
        NSTATE: tl.constexpr, NP: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
        EXP_FMA: tl.constexpr, CKPT_CHUNKS: tl.constexpr,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
        HAS_H0: tl.constexpr, WRITE_LAST: tl.constexpr, FAST_LOG: tl.constexpr):
    # The "tile" forward: per chunk, one tl.associative_scan along L over a [BLOCK_D, N, BLOCK_L]
    # tile, like "assoc", but every per-token tensor is loaded as a 3-D [BLOCK_D, 1, BLOCK_L]
    # tile. Its coalesced layout (a 16-byte vector of steps per thread, lanes over steps and
    # channels, nothing over the size-1 axis) then carries over to the whole tile: the N states
    # of a (channel, step) sit in one thread (the sum over N is in-thread), and the scan is
    # in-thread over each thread's steps plus a few shuffle levels. ("assoc" builds its tile by
    # broadcasting 2-D tiles; Triton then spreads L one step per lane: ~14 shuffles per element.)
    pid_d, g, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    dim = tl.num_programs(1) * dpg
    d_local = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)[:, None, None]          # [BLOCK_D, 1, 1]
    d_mask = d_local < dpg
    d = (g * dpg + d_local).to(tl.int64)
    n = tl.arange(0, NP)[None, :, None]                                        # [1, NP, 1]
    steps = tl.arange(0, BLOCK_L)[None, None, :]                               # [1, 1, BLOCK_L]
    state_mask = d_mask & (n < NSTATE)
    state_off = (b * dim + d) * NSTATE + n                                     # [BLOCK_D, NP, 1]

    A2 = tl.load(A_ptr + d * NSTATE + n, mask=state_mask, other=0.0) * 1.4426950408889634
    if HAS_D:
        D = tl.load(D_ptr + d, mask=d_mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d, mask=d_mask, other=0.0).to(tl.float32)
    if HAS_H0:
        h = tl.load(h0_ptr + state_off, mask=state_mask, other=0.0).to(tl.float32)
    else:
        h = tl.zeros([BLOCK_D, NP, 1], dtype=tl.float32)
    bc_base = BC_ptr + b * s_bcb + g * s_bcg
    u_rows = u_ptr + b * s_ub + d * s_ud
    dt_rows = delta_ptr + b * s_db + d * s_dd
    z_rows = z_ptr + b * s_zb + d * s_zd
    o_rows = out_ptr + b * s_ob + d * s_od

    # The first chunk's [BLOCK_D, 1, BLOCK_L] tiles; in the loop the next chunk's are loaded first.
    mask = d_mask & (steps < L)
    u_next = tl.load(u_rows + steps, mask=mask, other=0.0)
    dt_next = tl.load(dt_rows + steps, mask=mask, other=0.0)
    if HAS_Z:
        z_next = tl.load(z_rows + steps, mask=mask, other=0.0)
    for l0 in range(0, L, BLOCK_L):
        l = l0 + steps
        mask = d_mask & (l < L)
        u, dt = u_next.to(tl.float32), dt_next.to(tl.float32)
        next_mask = d_mask & (l + BLOCK_L < L)
        u_next = tl.load(u_rows + (l + BLOCK_L), mask=next_mask, other=0.0)
        dt_next = tl.load(dt_rows + (l + BLOCK_L), mask=next_mask, other=0.0)
        if HAS_Z:
            zt = z_next.to(tl.float32)
            z_next = tl.load(z_rows + (l + BLOCK_L), mask=next_mask, other=0.0)
        if CKPT_CHUNKS > 0:
            chunk = l0 // BLOCK_L
            if chunk % CKPT_CHUNKS == 0:
                tl.store(ckpt_ptr + (b * dim + d) * (n_ckpt * NSTATE) + (chunk // CKPT_CHUNKS) * NSTATE + n,
                         h, mask=state_mask)
        if HAS_BIAS:
            dt = dt + bias
        if SOFTPLUS:
            dt = _softplus(dt, FAST_LOG)
        dt = tl.where(mask, dt, 0.0)             # past L: decay 1, input 0, so h passes through
        bc_tile = bc_base + (l0 + steps) * (2 * NP) + n                         # [1, NP, BLOCK_L]
        B_t = tl.load(bc_tile)
        C_t = tl.load(bc_tile + NP)
        a = _exp2(dt * A2, n, EXP_FMA)                                          # [BLOCK_D, NP, BLOCK_L]
        x = (dt * u) * B_t
        a_cum, x_cum = tl.associative_scan((a, x), 2, _affine_combine)
        hs = a_cum * h + x_cum                                                  # h_t with the carry in
        y = tl.sum(hs * C_t, axis=1, keep_dims=True)                            # [BLOCK_D, 1, BLOCK_L]
        h = tl.sum(tl.where(steps == BLOCK_L - 1, hs, 0.0), axis=2, keep_dims=True)
        if HAS_D:
            y += D * u
        if HAS_Z:
            y *= zt * tl.sigmoid(zt)
        tl.store(o_rows + l, y.to(out_ptr.dtype.element_ty), mask=mask)
    if WRITE_LAST:
        tl.store(last_ptr + state_off, h, mask=state_mask)


def selective_scan_fwd_triton(config: Mapping[str, Any], u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                              BC: torch.Tensor, n_states: int, D: torch.Tensor | None, z: torch.Tensor | None,
                              delta_bias: torch.Tensor | None, delta_softplus: bool,
                              initial_state: torch.Tensor | None, out: torch.Tensor,
                              last_state: torch.Tensor | None, checkpoints: torch.Tensor | None = None) -> None:
    """Triton forward. u, delta, z [batch, dim, L] with L stride 1; A [dim, N] fp32 contiguous;
    BC from :func:`pack_bc`; D, delta_bias [dim]; initial_state, last_state [batch, dim, N] fp32
    contiguous; checkpoints [batch, dim, ceil(L / CHECKPOINT_STEPS), N] fp32 (training) or None."""
    batch, dim, length = u.shape
    groups, n_pad = BC.shape[1], BC.shape[4]
    if batch == 0 or dim == 0:
        return
    dpg = dim // groups
    block_d, block_l = int(config["block_d"]), int(config["block_l"])
    ckpt_chunks = 0
    if checkpoints is not None:
        assert CHECKPOINT_STEPS % block_l == 0, "chunk length must divide CHECKPOINT_STEPS"
        ckpt_chunks = CHECKPOINT_STEPS // block_l
    zs = z if z is not None else u
    dummy = A
    grid = (cdiv(dpg, block_d), groups, batch)
    if config["scan"] == "tile":
        _selective_scan_fwd_tile_kernel[grid](
            u, delta, zs, A, BC, D if D is not None else dummy, delta_bias if delta_bias is not None else dummy,
            initial_state if initial_state is not None else dummy, out,
            last_state if last_state is not None else dummy, checkpoints if checkpoints is not None else dummy,
            length, dpg, checkpoints.shape[2] if checkpoints is not None else 0,
            u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), zs.stride(0), zs.stride(1),
            out.stride(0), out.stride(1), BC.stride(0), BC.stride(1),
            NSTATE=n_states, NP=n_pad, BLOCK_D=block_d, BLOCK_L=block_l,
            EXP_FMA=int(config.get("exp_fma", 0)), CKPT_CHUNKS=ckpt_chunks,
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(delta_softplus), HAS_H0=initial_state is not None, WRITE_LAST=last_state is not None,
            FAST_LOG=not interpreter_on(), num_warps=int(config["num_warps"]))
        return
    _selective_scan_fwd_kernel[grid](
        u, delta, zs, A, BC, D if D is not None else dummy, delta_bias if delta_bias is not None else dummy,
        initial_state if initial_state is not None else dummy, out,
        last_state if last_state is not None else dummy, checkpoints if checkpoints is not None else dummy,
        length, dpg, checkpoints.shape[2] if checkpoints is not None else 0,
        u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), zs.stride(0), zs.stride(1),
        out.stride(0), out.stride(1), BC.stride(0), BC.stride(1),
        NSTATE=n_states, NP=n_pad, BLOCK_D=block_d, BLOCK_L=block_l,
        SEQUENTIAL=config["scan"] == "seq", EXP_FMA=int(config.get("exp_fma", 0)), CKPT_CHUNKS=ckpt_chunks,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=bool(delta_softplus), HAS_H0=initial_state is not None, WRITE_LAST=last_state is not None,
        FAST_LOG=not interpreter_on(), num_warps=int(config["num_warps"]))


# --- backward --------------------------------------------------------------------------------------

@triton.jit
def _selective_scan_bwd_kernel(
        u_ptr, delta_ptr, z_ptr, dout_ptr, A_ptr, BC_ptr, D_ptr, bias_ptr, ckpt_ptr, dlast_ptr, scratch_ptr,
        du_ptr, ddelta_ptr, dz_ptr, dBC_ptr, dA_ptr, dD_ptr, dbias_ptr, dh0_ptr,
        L, l_pad, dpg, n_ckpt,
        s_ub, s_ud, s_db, s_dd, s_zb, s_zd, s_gb, s_gd, s_bcb, s_bcg,
        NSTATE: tl.constexpr, NP: tl.constexpr, BLOCK_D: tl.constexpr, T: tl.constexpr, SEG: tl.constexpr,
        EXP_FMA: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
        SOFTPLUS: tl.constexpr, HAS_DLAST: tl.constexpr, WRITE_DH0: tl.constexpr, USE_DOT: tl.constexpr,
        FAST_LOG: tl.constexpr):
    pid_d, g, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    n_dblk, groups = tl.num_programs(0), tl.num_programs(1)
    dim = groups * dpg
    program = (b * groups + g) * n_dblk + pid_d
    # Only A·log2(e) stays live (as the exp2 argument); Σ_n gP·A is taken as ln2·Σ_n gP·A2.
    d_mask, d, n, state_mask, state_off, A2, D, bias = _channel_block(
        pid_d, g, b, dpg, dim, A_ptr, D_ptr, bias_ptr, NSTATE, NP, BLOCK_D, HAS_D, HAS_BIAS)
    cols = tl.arange(0, T)
    # g_carry = dL/dh_t accumulated from the future; a_next = a_{t+1} (1 past the end).
    if HAS_DLAST:
        g_carry = tl.load(dlast_ptr + state_off, mask=state_mask, other=0.0)
    else:
        g_carry = tl.zeros([BLOCK_D, NP], dtype=tl.float32)
    a_next = tl.full([BLOCK_D, NP], 1.0, tl.float32)
    dA_acc = tl.zeros([BLOCK_D, NP], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)

    bc_base = BC_ptr + b * s_bcb + g * s_bcg
    row_of_n = n[None, :] + tl.zeros([BLOCK_D, 1], dtype=tl.int32)
    dbc_base = dBC_ptr + program * (l_pad * 2 * NP)
    scratch = scratch_ptr + program * (SEG * BLOCK_D * NP) + tl.arange(0, BLOCK_D)[:, None] * NP + n[None, :]
    ckpt_rows = (b * dim + d)[:, None] * (n_ckpt * NSTATE) + n[None, :]
    u_rows = b * s_ub + d * s_ud
    dt_rows = b * s_db + d * s_dd
    z_rows = b * s_zb + d * s_zd
    g_rows = b * s_gb + d * s_gd
    o_rows = (b * dim + d) * L          # du, ddelta, dz are allocated contiguous

    n_chunks = tl.cdiv(L, T)
    n_seg = tl.cdiv(n_chunks, SEG)
    for si in range(0, n_seg):
        seg = n_seg - 1 - si
        c_first = seg * SEG
        n_in = tl.minimum(SEG, n_chunks - c_first)
        # Pass 1: from the segment's checkpoint, the start state of each of its chunks.
        h = tl.load(ckpt_ptr + ckpt_rows + seg * NSTATE, mask=state_mask, other=0.0)
        for j in range(0, n_in):
            tl.store(scratch + j * (BLOCK_D * NP), h)
            l0 = (c_first + j) * T
            mask = d_mask[:, None] & (l0 + cols < L)[None, :]
            u = _load_tile(u_ptr, u_rows, l0 + cols, mask)
            dt = _chunk_delta(_load_tile(delta_ptr, dt_rows, l0 + cols, mask), bias, mask, HAS_BIAS, SOFTPLUS,
                              FAST_LOG)
            h = _advance_chunk(h, dt, dt * u, A2, bc_base + l0 * (2 * NP), n, cols, T, NP, EXP_FMA)
        tl.debug_barrier()
        # Pass 2: chunks in reverse; each recomputed with every state kept, then the adjoint.
        for jj in range(0, n_in):
            j = n_in - 1 - jj
            l0 = (c_first + j) * T
            l = l0 + cols
            mask = d_mask[:, None] & (l < L)[None, :]
            h = tl.load(scratch + j * (BLOCK_D * NP))
            u = _load_tile(u_ptr, u_rows, l, mask)
            dt_raw = _load_tile(delta_ptr, dt_rows, l, mask)
            dt = _chunk_delta(dt_raw, bias, mask, HAS_BIAS, SOFTPLUS, FAST_LOG)
            du = dt * u
            dout = _load_tile(dout_ptr, g_rows, l, mask)
            if HAS_Z:
                zt = _load_tile(z_ptr, z_rows, l, mask)
                z_sig = tl.sigmoid(zt)
                dy = dout * zt * z_sig
            else:
                dy = dout
            bc = bc_base + l0 * (2 * NP)
            states = ()
            decays = ()
            for k in tl.static_range(T):
                B_k = tl.load(bc + k * (2 * NP) + n)
                # No EXP_FMA here: this pass is issue-bound and its layout spreads a row's states
                # over lanes, so the polynomial's select would not fold (pass 1 is exp-bound).
                a = tl.exp2(_column(dt, cols, k)[:, None] * A2)
                h = a * h + _column(du, cols, k)[:, None] * B_k[None, :]
                states = states + (h,)
                decays = decays + (a,)
            y = tl.zeros([BLOCK_D, T], dtype=tl.float32)
            ddt = tl.zeros([BLOCK_D, T], dtype=tl.float32)
            dug = tl.zeros([BLOCK_D, T], dtype=tl.float32)
            channel_terms = ()
            for k in tl.static_range(T - 1, -1, -1):
                # B_t, C_t loaded as [BLOCK_D, N] tiles (the same row for every channel): fp32 tile
                # loads steer Triton to a layout that splits a row over 4 lanes, which balances the
                # reductions over states (ddelta, du) with those over channels (dB, dC).
                B_k = tl.load(bc + k * (2 * NP) + row_of_n)
                C_k = tl.load(bc + k * (2 * NP) + NP + row_of_n)
                dt_k = _column(dt, cols, k)
                du_k = _column(du, cols, k)
                dy_k = _column(dy, cols, k)
                h_k = states[k]
                if HAS_Z:
                    y = _put_column(y, cols, k, tl.sum(h_k * C_k, axis=1))
                g_carry = a_next * g_carry + dy_k[:, None] * C_k
                # a_t·h_{t-1} = h_t − δ_t·u_t·B_t: the decay's input, without keeping h_{t-1}.
                gP = g_carry * (h_k - du_k[:, None] * B_k)
                dA_acc += gP * dt_k[:, None]
                gB = tl.sum(g_carry * B_k, axis=1)
                ddt = _put_column(ddt, cols, k, 0.6931471805599453 * tl.sum(gP * A2, axis=1)
                                  + gB * _column(u, cols, k))
                dug = _put_column(dug, cols, k, gB * dt_k)
                # This step's dB and dC terms of every channel (summed over channels below).
                channel_terms = (tl.join(g_carry * du_k[:, None], h_k * dy_k[:, None]),) + channel_terms
                a_next = decays[k]
            _store_channel_sum(dbc_base + l0 * (2 * NP),
                               tl.reshape(_stack_steps(channel_terms, T), [BLOCK_D, NP * 2 * T]),
                               BLOCK_D, NP * 2 * T, USE_DOT)
            if HAS_D:
                dug += dy * D[:, None]
                dD_acc += tl.sum(dy * u, axis=1)
            if HAS_Z:
                if HAS_D:
                    y += D[:, None] * u
                dz = dout * y * z_sig * (1.0 + zt * (1.0 - z_sig))
                tl.store(dz_ptr + o_rows[:, None] + l[None, :], dz.to(dz_ptr.dtype.element_ty), mask=mask)
            ddt = tl.where(mask, ddt, 0.0)
            if SOFTPLUS:
                ddt = ddt * tl.sigmoid(dt_raw + bias[:, None])
            dbias_acc += tl.sum(ddt, axis=1)
            tl.store(du_ptr + o_rows[:, None] + l[None, :], dug.to(du_ptr.dtype.element_ty), mask=mask)
            tl.store(ddelta_ptr + o_rows[:, None] + l[None, :], ddt.to(ddelta_ptr.dtype.element_ty), mask=mask)
        tl.debug_barrier()   # the next segment's pass 1 overwrites the scratch
    if WRITE_DH0:
        tl.store(dh0_ptr + state_off, a_next * g_carry, mask=state_mask)
    tl.store(dA_ptr + state_off, dA_acc, mask=state_mask)
    if HAS_D:
        tl.store(dD_ptr + b * dim + d, dD_acc, mask=d_mask)
    if HAS_BIAS:
        tl.store(dbias_ptr + b * dim + d, dbias_acc, mask=d_mask)


def selective_scan_bwd_triton(config: Mapping[str, Any], u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                              BC: torch.Tensor, n_states: int, D: torch.Tensor | None, z: torch.Tensor | None,
                              delta_bias: torch.Tensor | None, delta_softplus: bool, checkpoints: torch.Tensor,
                              dout: torch.Tensor, dlast: torch.Tensor | None, du: torch.Tensor,
                              ddelta: torch.Tensor, dz: torch.Tensor | None, want_dinitial: bool) -> dict[str, Any]:
    """Triton backward. Writes du, ddelta (and dz) [batch, dim, L] (contiguous); returns dA [dim, N],
    dBC fp32 [batch, G, L_pad / chunk, N_pad, 2, chunk] (dB and dC; see :func:`unpack_dbc`),
    dD [dim], ddelta_bias [dim] and dinitial_state [batch, dim, N] (None unless asked), all fp32."""
    if config.get("backend", "triton") == "cuda":   # a CUDA config from a caller of this entry point
        return selective_scan_bwd(config, u, delta, A, BC, n_states, D, z, delta_bias, delta_softplus, checkpoints,
                                  dout, dlast, du, ddelta, dz, want_dinitial)
    batch, dim, length = u.shape
    groups, l_pad, n_pad = BC.shape[1], BC.shape[2], BC.shape[4]
    dpg = dim // groups
    block_d, chunk = int(config["block_d"]), int(config["chunk"])
    seg = CHECKPOINT_STEPS // chunk
    n_dblk = cdiv(dpg, block_d)
    f32 = dict(device=u.device, dtype=torch.float32)
    dBC_part = torch.empty(batch, groups, n_dblk, l_pad // chunk, n_pad, 2, chunk, **f32)
    dA_part = torch.empty(batch, dim, n_states, **f32)
    dD_part = torch.empty(batch, dim, **f32) if D is not None else None
    dbias_part = torch.empty(batch, dim, **f32) if delta_bias is not None else None
    dh0 = torch.empty(batch, dim, n_states, **f32) if want_dinitial else None
    scratch = torch.empty(batch * groups * n_dblk * seg * block_d * n_pad, **f32)
    zs = z if z is not None else u
    dummy = A
    if batch and dim:
        _selective_scan_bwd_kernel[(n_dblk, groups, batch)](
            u, delta, zs, dout, A, BC, D if D is not None else dummy, delta_bias if delta_bias is not None else dummy,
            checkpoints, dlast if dlast is not None else dummy, scratch,
            du, ddelta, dz if dz is not None else du, dBC_part, dA_part,
            dD_part if dD_part is not None else dummy, dbias_part if dbias_part is not None else dummy,
            dh0 if dh0 is not None else dummy,
            length, l_pad, dpg, checkpoints.shape[2],
            u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), zs.stride(0), zs.stride(1),
            dout.stride(0), dout.stride(1), BC.stride(0), BC.stride(1),
            NSTATE=n_states, NP=n_pad, BLOCK_D=block_d, T=chunk, SEG=seg, EXP_FMA=int(config.get("exp_fma", 0)),
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(delta_softplus), HAS_DLAST=dlast is not None, WRITE_DH0=want_dinitial,
            USE_DOT=config.get("channel_sum", "lanes") == "mma", FAST_LOG=not interpreter_on(),
            num_warps=int(config["num_warps"]), num_stages=1)
    else:
        dBC_part.zero_()
        dA_part.zero_()
        for part in (dD_part, dbias_part):
            if part is not None:
                part.zero_()
        if dh0 is not None:
            dh0.copy_(dlast if dlast is not None else torch.zeros_like(dh0))
    # Channel-block and batch reductions: a separate pass keeps the sums deterministic.
    return {"dA": batch_sum(dA_part), "dBC": dBC_part.sum(2) if n_dblk > 1 else dBC_part[:, :, 0],
            "dD": batch_sum(dD_part), "ddelta_bias": batch_sum(dbias_part), "dinitial_state": dh0}


def selective_scan_bwd(config: Mapping[str, Any], u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                       BC: torch.Tensor, n_states: int, D: torch.Tensor | None, z: torch.Tensor | None,
                       delta_bias: torch.Tensor | None, delta_softplus: bool, checkpoints: torch.Tensor,
                       dout: torch.Tensor, dlast: torch.Tensor | None, du: torch.Tensor, ddelta: torch.Tensor,
                       dz: torch.Tensor | None, want_dinitial: bool) -> dict[str, Any]:
    """Backward on the backend ``config["backend"]`` names; arguments and result as
    :func:`selective_scan_bwd_triton`. The CUDA backward is the channel layout
    (``selective_scan_cuda.selective_scan_bwd_channel_cuda``); where it cannot run (no CuPy/GPU,
    mixed dtypes, its config does not fit the shape, e.g. large N) the Triton backward runs with
    its default config."""
    if config.get("backend", "triton") == "cuda":
        batch, dim, length = u.shape
        shape = {"batch": batch, "dim": dim, "L": length, "N": n_states, "G": BC.shape[1]}
        same_dtype = all(t is None or t.dtype == u.dtype for t in (delta, z, dout, du, ddelta, dz))
        config = {"layout": "channel", **config}     # the backward's only CUDA layout
        if same_dtype and config["layout"] == "channel" and cuda_unavailable() is None \
                and _cuda.bwd_channel_problem(config, shape) is None \
                and all(t is None or t.is_contiguous() for t in (du, ddelta, dz)):
            return _cuda.selective_scan_bwd_channel_cuda(
                config, u.contiguous(), delta.contiguous(), A, BC, n_states, D, None if z is None else z.contiguous(),
                delta_bias, delta_softplus, checkpoints, dout.contiguous(), dlast, du, ddelta, dz, want_dinitial)
        config = BWD.triton_default_config({k: shape[k] for k in ("batch", "dim", "L", "N")})
    return selective_scan_bwd_triton(config, u, delta, A, BC, n_states, D, z, delta_bias, delta_softplus,
                                     checkpoints, dout, dlast, du, ddelta, dz, want_dinitial)


def unpack_dbc(dBC: torch.Tensor, n_states: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 [batch, G, n_chunks, N_pad, 2, chunk] -> (dB, dC) [batch, G, N, L] (views)."""
    batch, groups, n_chunks, n_pad, _, chunk = dBC.shape
    steps = dBC.permute(0, 1, 4, 3, 2, 5).reshape(batch, groups, 2, n_pad, n_chunks * chunk)
    return steps[:, :, 0, :n_states, :length], steps[:, :, 1, :n_states, :length]


def dbc_gradients(dBC: torch.Tensor, n_states: int, length: int, b_dtype: torch.dtype,
                  c_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The backward's dBC (as :func:`unpack_dbc` takes it) -> (dB, dC) [batch, G, N, L] in B's and
    C's dtypes: one strided copy when they share a dtype (dB and dC are then the two halves of one
    [2, batch, G, N, L_pad] buffer, each contiguous when L_pad == L), two otherwise. unpack_dbc's
    views cost a reshape copy and a dtype copy each: ~3 host launches more a backward. (Leaves'
    .grad may then share that buffer: the halves never overlap, but one keeps both alive.)"""
    batch, groups, n_chunks, _, _, chunk = dBC.shape
    src = dBC[:, :, :, :n_states]                         # [batch, G, n_chunks, N, 2, chunk]
    l_pad = n_chunks * chunk
    if b_dtype == c_dtype:
        out = torch.empty(2, batch, groups, n_states, l_pad, device=dBC.device, dtype=b_dtype)
        out.view(2, batch, groups, n_states, n_chunks, chunk).permute(1, 2, 4, 3, 0, 5).copy_(src)
        return out[0, ..., :length], out[1, ..., :length]
    grads = []
    for half, dtype in enumerate((b_dtype, c_dtype)):
        out = torch.empty(batch, groups, n_states, l_pad, device=dBC.device, dtype=dtype)
        out.view(batch, groups, n_states, n_chunks, chunk).permute(0, 1, 3, 2, 4).copy_(src[:, :, :, :, half])
        grads.append(out[..., :length])
    return grads[0], grads[1]


def batch_sum(part: torch.Tensor | None) -> torch.Tensor | None:
    """Σ over the leading batch axis of a per-row partial; at batch 1 the row itself (a view: no
    reduction launched)."""
    if part is None:
        return None
    return part[0] if part.shape[0] == 1 else part.sum(0)


# --- decode step -----------------------------------------------------------------------------------

@triton.jit
def _selective_state_update_kernel(
        state_ptr, new_state_ptr, x_ptr, dt_ptr, z_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, out_ptr,
        dpg, s_sb, s_sd, s_sn, s_nb, s_nd, s_nn, s_xb, s_xd, s_tb, s_td, s_zb, s_zd,
        s_bb, s_bg, s_bn, s_cb, s_cg, s_cn, s_ob, s_od,
        NSTATE: tl.constexpr, NP: tl.constexpr, BLOCK_D: tl.constexpr, HAS_D: tl.constexpr,
        HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, FAST_LOG: tl.constexpr):
    pid_d, g, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    d_local = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = d_local < dpg
    d = (g * dpg + d_local).to(tl.int64)
    n = tl.arange(0, NP)
    n_mask = n < NSTATE
    state_mask = d_mask[:, None] & n_mask[None, :]
    state = tl.load(state_ptr + b * s_sb + d[:, None] * s_sd + n[None, :] * s_sn, mask=state_mask, other=0.0)
    A2 = tl.load(A_ptr + d[:, None] * NSTATE + n[None, :], mask=state_mask, other=0.0) * 1.4426950408889634
    x = tl.load(x_ptr + b * s_xb + d * s_xd, mask=d_mask, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + b * s_tb + d * s_td, mask=d_mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + d, mask=d_mask, other=0.0).to(tl.float32)
    if SOFTPLUS:
        dt = _softplus(dt, FAST_LOG)
    B = tl.load(B_ptr + b * s_bb + g * s_bg + n * s_bn, mask=n_mask, other=0.0).to(tl.float32)
    C = tl.load(C_ptr + b * s_cb + g * s_cg + n * s_cn, mask=n_mask, other=0.0).to(tl.float32)
    h = tl.exp2(dt[:, None] * A2) * state.to(tl.float32) + (dt * x)[:, None] * B[None, :]
    tl.store(new_state_ptr + b * s_nb + d[:, None] * s_nd + n[None, :] * s_nn,
             h.to(new_state_ptr.dtype.element_ty), mask=state_mask)
    y = tl.sum(h * C[None, :], axis=1)
    if HAS_D:
        y += tl.load(D_ptr + d, mask=d_mask, other=0.0).to(tl.float32) * x
    if HAS_Z:
        zt = tl.load(z_ptr + b * s_zb + d * s_zd, mask=d_mask, other=0.0).to(tl.float32)
        y *= zt * tl.sigmoid(zt)
    tl.store(out_ptr + b * s_ob + d * s_od, y.to(out_ptr.dtype.element_ty), mask=d_mask)


def _group_strides(BC: torch.Tensor) -> tuple[int, int, int]:
    """(batch, group, state) strides of a decode step's B or C, [batch, G, N] or [batch, N]."""
    if BC.dim() == 3:
        return BC.stride()
    return BC.stride(0), 0, BC.stride(1)


def selective_state_update_triton(config: Mapping[str, Any], state: torch.Tensor, new_state: torch.Tensor,
                                  x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                                  C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
                                  dt_bias: torch.Tensor | None, dt_softplus: bool, out: torch.Tensor) -> None:
    """Triton decode step. state, new_state [batch, dim, N] (may be the same tensor: in place);
    x, dt, z, out [batch, dim]; A [dim, N] fp32 contiguous; B, C [batch, G, N] or [batch, N] (one
    group: read through a zero group stride, no view built on the host); D, dt_bias [dim]."""
    batch, dim, n_states = state.shape
    groups = B.shape[1] if B.dim() == 3 else 1
    if batch == 0 or dim == 0:
        return
    dpg = dim // groups
    block_d = int(config["block_d"])
    zs = z if z is not None else x
    dummy = A
    _selective_state_update_kernel[(cdiv(dpg, block_d), groups, batch)](
        state, new_state, x, dt, zs, A, B, C, D if D is not None else dummy,
        dt_bias if dt_bias is not None else dummy, out,
        dpg, *state.stride(), *new_state.stride(), *x.stride(), *dt.stride(), *zs.stride(),
        *_group_strides(B), *_group_strides(C), *out.stride(),
        NSTATE=n_states, NP=padded_states(n_states), BLOCK_D=block_d, HAS_D=D is not None,
        HAS_Z=z is not None, HAS_BIAS=dt_bias is not None, SOFTPLUS=bool(dt_softplus),
        FAST_LOG=not interpreter_on(), num_warps=int(config["num_warps"]))


# --- backends ----------------------------------------------------------------------------------------

_cuda_reason_cache: list[str | None] = []


def cuda_unavailable() -> str | None:
    """Why the CUDA backend cannot run here (None when it can); asked once per process."""
    if not _cuda_reason_cache:
        if _cuda is None:
            reason = _CUDA_IMPORT_ERROR
        else:
            try:
                reason = _cuda.cuda_unavailable_reason()
            except Exception as error:  # noqa: BLE001
                reason = f"CUDA backend check failed: {type(error).__name__}: {error}"
        _cuda_reason_cache.append(reason)
    return _cuda_reason_cache[0]


def _cuda_shape(shape: Shape) -> dict[str, int]:
    return {"G": 1, **{k: int(v) for k, v in shape.items()}}


def selective_scan_fwd(config: Mapping[str, Any], u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                       B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
                       delta_bias: torch.Tensor | None, delta_softplus: bool, initial_state: torch.Tensor | None,
                       out: torch.Tensor, last_state: torch.Tensor | None,
                       checkpoints: torch.Tensor | None = None, BC: torch.Tensor | None = None) -> torch.Tensor | None:
    """Forward on the backend ``config["backend"]`` names. u, delta, z [batch, dim, L] (L stride 1);
    B, C [batch, G, N, L]; A [dim, N], D, delta_bias [dim], initial_state / last_state [batch, dim, N]
    fp32 contiguous. Returns the packed BC when the backward will need it (training: ``checkpoints``
    given) or when the Triton path ran.

    Both CUDA layouts write the checkpoints; inputs outside the CUDA contract (mixed dtypes) run the
    Triton template with its default config instead."""
    n_states = B.shape[2]
    if config.get("backend", "triton") == "cuda":
        if delta.dtype == u.dtype and (z is None or z.dtype == u.dtype) and C.dtype == B.dtype \
                and cuda_unavailable() is None:
            channel = config.get("layout") == "channel"
            if BC is None and (checkpoints is not None or channel):
                BC = pack_bc(B, C, padded_states(n_states))   # the channel layout's and the backwards' input
            _cuda.selective_scan_fwd_cuda(
                config, u.contiguous(), delta.contiguous(), A, B.contiguous(), C.contiguous(), D,
                None if z is None else z.contiguous(), delta_bias, delta_softplus, initial_state, out, last_state,
                checkpoints=checkpoints, BC=BC if channel else None)
            return None if checkpoints is None else BC
        shape = {"batch": u.shape[0], "dim": u.shape[1], "L": u.shape[2], "N": n_states}
        config = FWD.triton_default_config(shape)
    if BC is None:
        BC = pack_bc(B, C, padded_states(n_states))
    selective_scan_fwd_triton(config, u, delta, A, BC, n_states, D, z, delta_bias, delta_softplus,
                              initial_state, out, last_state, checkpoints)
    return BC


def selective_state_update_run(config: Mapping[str, Any], state: torch.Tensor, new_state: torch.Tensor,
                               x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                               C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
                               dt_bias: torch.Tensor | None, dt_softplus: bool, out: torch.Tensor) -> None:
    """Decode step on the configured backend; B, C [batch, G, N] or [batch, N]. The CUDA kernel updates its state
    in place and wants fp32 contiguous state and one activation dtype; otherwise Triton runs."""
    if config.get("backend", "triton") == "cuda":
        usable = (state.dtype == torch.float32 and new_state.is_contiguous() and dt.dtype == x.dtype
                  and (z is None or z.dtype == x.dtype) and C.dtype == B.dtype and out.is_contiguous()
                  and cuda_unavailable() is None)
        if usable:
            if new_state.data_ptr() != state.data_ptr():
                new_state.copy_(state)
            _cuda.selective_state_update_cuda(
                config, new_state, x.contiguous(), dt.contiguous(), A, B.contiguous(), C.contiguous(), D,
                None if z is None else z.contiguous(), dt_bias, dt_softplus, out)
            return
        config = STEP.default_config({"batch": state.shape[0], "dim": state.shape[1], "N": state.shape[2]})
    selective_state_update_triton(config, state, new_state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, out)


# --- templates ---------------------------------------------------------------------------------------

FWD_TRITON_SPACE: dict[str, list] = {
    "scan": ["seq", "assoc", "tile"],
    "block_d": [4, 8, 16, 32, 64, 128],
    "block_l": [4, 8, 16, 32, 64],
    "num_warps": [1, 2, 4, 8],
    "exp_fma": [0, 1, 2, 4],
}
STEP_TRITON_SPACE: dict[str, list] = {
    "block_d": [4, 8, 16, 32, 64],
    "num_warps": [1, 2, 4, 8],
}
BWD_SPACE: dict[str, list] = {
    "block_d": [2, 4, 8, 16, 32, 64, 128],
    "chunk": [1, 2, 4, 8],
    "num_warps": [1, 2, 4],
    "exp_fma": [0, 2],
    "channel_sum": ["lanes", "mma"],     # how dB, dC are summed over a block's channels
}
CUDA_FWD_SPACE: dict[str, list] = dict(getattr(_cuda, "CUDA_SPACE", {}) or {})
CUDA_BWD_SPACE: dict[str, list] = dict(getattr(_cuda, "CUDA_BWD_CHANNEL_SPACE", {}) or {})
CUDA_STEP_SPACE: dict[str, list] = dict(getattr(_cuda, "CUDA_STEP_SPACE", {}) or {})


def _block_problem(block_d: int, narrowest: int, steps_key: str, steps: int, exp_fma: int, shape: Shape) -> str | None:
    """Limits the Triton forward and backward share: channels per program no wider than dim needs
    (``narrowest`` always allowed), steps per chunk dividing the checkpoint spacing, and fewer
    polynomial-exp states than states."""
    if block_d > max(narrowest, _next_pow2(shape["dim"])):
        return f"block_d {block_d} is wider than dim={shape['dim']} needs"
    if CHECKPOINT_STEPS % steps:
        return f"{steps_key} {steps} must divide {CHECKPOINT_STEPS}"
    if exp_fma and exp_fma >= shape["N"]:
        return f"exp_fma {exp_fma} must be below N={shape['N']}"
    return None


def _flags_of(flags: str) -> set[str]:
    return {f for f in flags.split(",") if f}


def _refuse_unfit(template, config, shape, gpu) -> None:
    """A default that its own check refuses means the shape is outside what the template runs
    (e.g. N past 256): say so by name, not as an assertion's tuple."""
    problem = template.check_config(config, shape, gpu)
    if problem is not None:
        raise ValueError(f"{template.name}: no config runs {dict(shape)}: {problem}")


class _SelectiveScanTemplate(Template):
    op = "selective_scan"
    dims = ("batch", "dim", "L", "N")
    dtypes = ("bf16", "fp16", "fp32")
    # "" : D, delta_bias and delta_softplus=True (as a Mamba block calls it), no z; "z": with z.
    flags = ("", "z")
    workload = [
        {"batch": 8, "dim": 2048, "L": 4096, "N": 16},    # the target
        {"batch": 2, "dim": 1536, "L": 2048, "N": 16},
        {"batch": 16, "dim": 4096, "L": 512, "N": 16},
        {"batch": 4, "dim": 1024, "L": 1024, "N": 64},
    ]
    quick_workload = [{"batch": 8, "dim": 2048, "L": 4096, "N": 16}]
    triton_space: dict[str, list] = {}
    cuda_space: dict[str, list] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # The whole space (Template.space: every knob's values) is the two backends' knobs joined.
        cls.space = {"backend": ["triton", "cuda"], **cls.triton_space, **cls.cuda_space}

    def subspaces(self) -> list[dict[str, list]]:
        # Each backend's knobs vary only under it (canonical drops the other's): one product per
        # backend, not their joint product (~10M configs for the forward, 35 s to walk).
        return [{"backend": ["triton"], **self.triton_space}, {"backend": ["cuda"], **self.cuda_space}]
    cpu_workload = [{"batch": 2, "dim": 6, "L": 37, "N": 5}]

    def source_files(self) -> list[Path]:
        here = Path(__file__).resolve()
        extra = [here.with_name("selective_scan_cuda.py"), here.with_name("selective_scan.cu")]
        return [here] + [p for p in extra if p.exists()]

    @staticmethod
    def _device_generator(device, generator: torch.Generator) -> torch.Generator:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        return torch.Generator(device=device).manual_seed(seed)

    def _scan_inputs(self, shape: Shape, dtype: str, flags: str, device, generator: torch.Generator) -> Tensors:
        gen = self._device_generator(device, generator)
        batch, dim, length, n_states = shape["batch"], shape["dim"], shape["L"], shape["N"]
        dt = DTYPES[dtype]

        def randn(*size):
            return torch.randn(*size, generator=gen, device=device)

        inputs = {
            "u": randn(batch, dim, length).to(dt),
            "delta": (0.5 * randn(batch, dim, length)).to(dt),
            # Mamba-like decays: A in [-(N/2 + 1/2), -1/2], softplus(delta + bias) around 0.1.
            "A": -(0.5 + 0.5 * n_states * torch.rand(dim, n_states, generator=gen, device=device)),
            "B": randn(batch, 1, n_states, length).to(dt),
            "C": randn(batch, 1, n_states, length).to(dt),
            "D": randn(dim),
            "delta_bias": -2.0 + 0.5 * randn(dim),
        }
        if "z" in _flags_of(flags):
            inputs["z"] = randn(batch, dim, length).to(dt)
        return inputs

    def _elements(self, shape: Shape) -> float:
        return float(shape["batch"] * shape["dim"] * shape["L"])


class SelectiveScanFwd(_SelectiveScanTemplate):
    """out [batch, dim, L] and last_state [batch, dim, N] from u, delta, A, B, C, D, delta_bias (, z)."""
    name = "selective_scan.fwd"
    kernel = "fwd"
    triton_space, cuda_space = FWD_TRITON_SPACE, CUDA_FWD_SPACE

    def canonical(self, config: Config) -> Config:
        backend = config.get("backend", "triton")
        if backend == "cuda":
            if _cuda is None:
                return {"backend": "cuda", **{k: config[k] for k in CUDA_FWD_SPACE if k in config}}
            return {"backend": "cuda", **_cuda.cuda_canonical(config, "fwd")}
        out = {"backend": "triton", **{k: config[k] for k in FWD_TRITON_SPACE if k in config}}
        if out.get("scan") in ("assoc", "tile"):
            # The polynomial exp needs the state index in-thread; the tile scan spreads it.
            out["exp_fma"] = 0
        return out

    def check_config(self, config: Config, shape: Shape, gpu=None) -> str | None:
        if not 1 <= shape["N"] <= MAX_STATES:
            return f"N must be in [1, {MAX_STATES}]; got {shape['N']}"
        if config.get("backend", "triton") == "cuda":
            reason = cuda_unavailable()
            if reason is not None:
                return f"CUDA backend unavailable: {reason}"
            return _cuda.cuda_check_config(config, _cuda_shape(shape), "fwd")
        if config.get("backend", "triton") != "triton":
            return f"backend must be 'triton' or 'cuda'; got {config.get('backend')!r}"
        n_pad = padded_states(shape["N"])
        block_d, block_l, warps = config["block_d"], config["block_l"], config["num_warps"]
        threads = 32 * warps
        reason = _block_problem(block_d, 4, "block_l", block_l, config.get("exp_fma", 0), shape)
        if reason is not None:
            return reason
        if config["scan"] == "seq":
            if block_l > 16:
                return f"seq: block_l {block_l} > 16 unrolled steps per chunk (code size, registers)"
            per_thread = block_d * n_pad / threads
            # ~6 live [BLOCK_D, N] fp32 tensors (state, decay, A, B, C, product): past 32 per thread they spill.
            if per_thread > 32:
                return f"seq: {per_thread:.0f} states per thread (> 32) would spill registers"
            if per_thread < 1 and block_d < _next_pow2(shape["dim"]):
                return f"seq: {threads} threads for {block_d * n_pad} states leaves threads idle"
        elif config["scan"] == "assoc":
            if block_l < 8:
                return f"assoc: block_l {block_l} < 8 is too short a scan"
            per_thread = block_d * n_pad * block_l / threads
            # decay, input, both scan outputs and C live at once: past 64 per thread they spill.
            if per_thread > 64:
                return f"assoc: {per_thread:.0f} tile elements per thread (> 64) would spill registers"
            if per_thread < 4 and block_d < _next_pow2(shape["dim"]):
                return f"assoc: {per_thread:.1f} tile elements per thread (< 4) leaves threads idle"
        elif config["scan"] == "tile":
            if block_l < 8:
                return f"tile: block_l {block_l} < 8 is too short a scan"
            per_thread = block_d * n_pad * block_l / threads
            # decay, input, their scans, C and the carried state per element. sm_90 (ptxas -v, N=16):
            # 32 per thread -> 128 registers; 64 -> 168 at 1 warp, 255 at 2 warps, 255 + 160 bytes
            # of spills at 4 warps (the cross-warp scan keeps more live).
            if per_thread > 64 or (per_thread > 32 and warps > 2):
                return f"tile: {per_thread:.0f} tile elements per thread at {warps} warps would spill registers"
            if per_thread < 4 and block_d < _next_pow2(shape["dim"]):
                return f"tile: {per_thread:.1f} tile elements per thread (< 4) leaves threads idle"
        else:
            return f"scan must be 'seq', 'assoc' or 'tile'; got {config['scan']!r}"
        return None

    def default_config(self, shape: Shape, gpu=None) -> Config:
        # Untuned on a GPU with CuPy, the CUDA kernel (a warp scans along L, so batch·dim·32 lanes
        # work) beat the Triton one (a lane per channel: batch·dim lanes) at N=16 on the H100:
        # 1.78 vs 2.78 ms at the target, 0.16 vs 0.63 ms at batch 2, dim 1536, L 2048; at
        # N=64 Triton won (0.31 vs 0.56 ms). (Both CUDA layouts write the training checkpoints.)
        # Re-measured with the Triton config below (H100, bf16): at batch 8, dim 2048, L 4096,
        # N 16 Triton takes 1.14 ms and CUDA 2.34 ms, so CUDA stays the default only where few
        # channels leave the Triton kernel's lanes idle.
        channels = shape["batch"] * shape["dim"]
        if CHANNEL_LAYOUT_DEFAULT and channels >= 8192 and shape["N"] <= 64 and cuda_unavailable() is None:
            config = {"backend": "cuda", **_cuda.cuda_default_config(_cuda_shape(shape), "fwd")}
            if config["layout"] == "channel" and self.check_config(config, shape, gpu) is None:
                return config
        if shape["N"] <= 32 and shape["L"] >= 256 and channels < 8192 and cuda_unavailable() is None:
            config = {"backend": "cuda", **_cuda.cuda_default_config(_cuda_shape(shape), "fwd")}
            if self.check_config(config, shape, gpu) is None:
                return config
        return self.triton_default_config(shape, gpu)

    def candidates(self, shape: Shape, gpu=None) -> list[Config]:
        # Each backend's heuristic config (and each CUDA layout's), whichever the default is, so a
        # short TPE study always measures Triton against CUDA (round 125: at batch 4, dim 1024,
        # L 1024, N 64 six trials kept the Triton default at 0.242 ms; the CUDA default took 0.209).
        found = [self.triton_default_config(shape, gpu)]
        if _cuda is not None and cuda_unavailable() is None:
            cuda_shape = _cuda_shape(shape)
            found += [{"backend": "cuda", **_cuda.cuda_default_config(cuda_shape, "fwd")},
                      {"backend": "cuda", **_cuda.warp_fwd_default_config(cuda_shape)}]
        return found

    def triton_default_config(self, shape: Shape, gpu=None) -> Config:
        """The heuristic Triton config (what runs where the CUDA backend cannot)."""
        n_pad = padded_states(shape["N"])
        sms = gpu.sms if gpu is not None else 132
        # ~8 states per lane: block_d 16 at N=16 took 1.14 ms, 32 took 1.23, 8 took 1.23 (H100)
        block_d = max(4, min(64, 256 // n_pad))
        while block_d > 4 and block_d * n_pad >= 64 and shape["batch"] * math.ceil(shape["dim"] / block_d) < sms:
            block_d //= 2            # small problems: more, smaller programs
        block_d = min(block_d, max(4, _next_pow2(shape["dim"])))
        warps = 1
        while block_d * n_pad / (32 * warps) > 32:
            warps *= 2
        # At N=16 the loop is exp-bound (sm_90 SASS: 18 exp-unit ops vs 114 instructions per step);
        # two states per row on the FMA pipe balance it (16 vs 131).
        exp_fma = 2 if 8 <= n_pad <= 16 and shape["N"] > 2 else 0
        # 16 unrolled steps per chunk: 1.14 ms against 1.66 with 8 (the tile loads amortize)
        config = {"backend": "triton", "scan": "seq", "block_d": block_d, "block_l": 16, "num_warps": warps,
                  "exp_fma": exp_fma}
        _refuse_unfit(self, config, shape, gpu)
        return config

    def flops(self, shape: Shape, dtype: str, flags: str = "") -> float:
        # per (t, d, n): δ·A, exp, a·h, δu·B, add, C·h, sum; per (t, d): δ·u, D·u, softplus, gate.
        return self._elements(shape) * (7.0 * shape["N"] + 6.0)

    def bytes(self, shape: Shape, dtype: str, flags: str = "") -> float:
        size = DTYPES[dtype].itemsize
        per_token = 3 + ("z" in _flags_of(flags))       # u, delta (, z) read; out written
        return (size * self._elements(shape) * per_token
                + 2.0 * size * shape["batch"] * shape["N"] * shape["L"]
                + 4.0 * shape["dim"] * (shape["N"] + 2) + 4.0 * shape["batch"] * shape["dim"] * shape["N"])

    def verification_shape(self, shape: Shape) -> dict[str, int]:
        # The float64 reference loops over L on [batch, dim, N]; batch and dim are not tiled along L.
        return {**shape, "batch": 1, "dim": min(shape["dim"], 256)}

    def make_inputs(self, shape: Shape, dtype: str, flags: str, device, generator: torch.Generator) -> Tensors:
        return self._scan_inputs(shape, dtype, flags, device, generator)

    def allocate_outputs(self, inputs: Tensors, shape: Shape, dtype: str, flags: str) -> Tensors:
        u = inputs["u"]
        return {"out": torch.empty_like(u),
                "last_state": torch.empty(u.shape[0], u.shape[1], shape["N"], device=u.device, dtype=torch.float32)}

    def launch(self, config: Config, inputs: Tensors, outputs: Tensors, shape: Shape, flags: str) -> None:
        selective_scan_fwd(config, inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"],
                           inputs["D"], inputs.get("z"), inputs["delta_bias"], True, None,
                           outputs["out"], outputs["last_state"])

    def reference(self, inputs: Tensors, shape: Shape, flags: str) -> Tensors:
        out, last = selective_scan_ref(inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"],
                                       inputs["D"], inputs.get("z"), inputs["delta_bias"], True,
                                       return_last_state=True)
        return {"out": out, "last_state": last}


class SelectiveScanBwd(_SelectiveScanTemplate):
    """du, ddelta (, dz), dA, dB, dC, dD, ddelta_bias from dout and the forward's checkpoints.

    The backend is a tuning axis as in the forward: a config with ``backend: "cuda"`` (keys of
    ``selective_scan_cuda.CUDA_BWD_CHANNEL_SPACE``) runs the CUDA channel-layout backward, any
    other the Triton one (its configs carry no ``backend`` key)."""
    name = "selective_scan.bwd"
    kernel = "bwd"
    triton_space, cuda_space = BWD_SPACE, CUDA_BWD_SPACE

    def canonical(self, config: Config) -> Config:
        if config.get("backend", "triton") == "cuda":
            if _cuda is None:
                return {"backend": "cuda", **{k: config[k] for k in CUDA_BWD_SPACE if k in config}}
            return {"backend": "cuda", **_cuda.cuda_canonical({"layout": "channel", **config}, "bwd")}
        return {k: value for k, value in config.items() if k != "backend" and k not in CUDA_BWD_SPACE}

    def check_config(self, config: Config, shape: Shape, gpu=None) -> str | None:
        if not 1 <= shape["N"] <= MAX_STATES:
            return f"N must be in [1, {MAX_STATES}]; got {shape['N']}"
        if config.get("backend", "triton") == "cuda":
            reason = cuda_unavailable()
            if reason is not None:
                return f"CUDA backend unavailable: {reason}"
            if config.get("layout", "channel") != "channel":
                return f"the CUDA backward runs the channel layout only; got layout {config.get('layout')!r}"
            return _cuda.cuda_check_config({**config, "layout": "channel"}, _cuda_shape(shape), "bwd")
        n_pad = padded_states(shape["N"])
        block_d, chunk, warps = config["block_d"], config["chunk"], config["num_warps"]
        threads = 32 * warps
        reason = _block_problem(block_d, 2, "chunk", chunk, config.get("exp_fma", 0), shape)
        if reason is not None:
            return reason
        if config.get("channel_sum", "lanes") == "mma" and (block_d < 16 or 2 * n_pad * chunk < 16):
            return f"channel_sum 'mma' needs block_d >= 16 and 2·N_pad·chunk >= 16 (tl.dot sizes)"
        per_thread = block_d * n_pad / threads
        if per_thread < 1 and block_d < _next_pow2(shape["dim"]):
            return f"{threads} threads for {block_d * n_pad} states leaves threads idle"
        # Every step's state and decay of a chunk stay in registers, plus ~6 more [BLOCK_D, N]
        # tensors (carry, next decay, dA, A2, B, C) and ~10 [BLOCK_D, chunk] tiles. Past ~280 the
        # spills cost more than a shorter chunk (sm_90 SASS: chunk 4 at 16 states per thread
        # spills a little and still beats chunk 2; chunk 8 spills heavily).
        registers = (2 * chunk + 6) * per_thread + 10 * chunk * max(1.0, block_d / threads)
        if registers > 280:
            return f"~{registers:.0f} registers per thread (> 280) would spill"
        # Memory is no constraint here: the recompute scratch, batch·dim·(64 / chunk)·N_pad·4 bytes,
        # is at most the checkpoints' size for L >= 64·(64 / chunk); a config that cannot allocate fails.
        return None

    def default_config(self, shape: Shape, gpu=None) -> Config:
        channels = shape["batch"] * shape["dim"]
        # N <= 16: larger N leaves few channels a block (partials grow as dim / channels a block).
        if CUDA_BWD_DEFAULT and channels >= 8192 and shape["N"] <= 16 and cuda_unavailable() is None:
            config = {"backend": "cuda", **_cuda.bwd_channel_default_config(_cuda_shape(shape))}
            if self.check_config(config, shape, gpu) is None:
                return config
        return self.triton_default_config(shape, gpu)

    def candidates(self, shape: Shape, gpu=None) -> list[Config]:
        # Both backends' heuristic configs, whichever the default is (round 125: at batch 2,
        # dim 1536, L 2048, N 16 the CUDA channel backward took 0.47 ms, the Triton default 1.22).
        # (Named: merged over a CUDA default, a Triton config without "backend" would stay CUDA.)
        found = [{"backend": "triton", **self.triton_default_config(shape, gpu)}]
        if _cuda is not None and cuda_unavailable() is None:
            found.append({"backend": "cuda", **_cuda.bwd_channel_default_config(_cuda_shape(shape))})
        return found

    def triton_default_config(self, shape: Shape, gpu=None) -> Config:
        """The heuristic Triton config (what runs where the CUDA backward cannot)."""
        n_pad = padded_states(shape["N"])
        sms = gpu.sms if gpu is not None else 132
        chunk = 4 if n_pad <= 16 else 2 if n_pad <= 32 else 1
        block_d = max(2, min(32, 256 // n_pad))   # N=16: block_d 16 3.46 ms, 32 4.80, 8 4.31 (H100)
        while block_d > 2 and block_d * n_pad >= 64 and shape["batch"] * math.ceil(shape["dim"] / block_d) < sms:
            block_d //= 2
        block_d = min(block_d, max(2, _next_pow2(shape["dim"])))
        config = {"block_d": block_d, "chunk": chunk, "num_warps": 1, "exp_fma": 0, "channel_sum": "lanes"}
        while self.check_config(config, shape, gpu) is not None and config["block_d"] > 2:
            config["block_d"] //= 2
        _refuse_unfit(self, config, shape, gpu)
        return config

    def flops(self, shape: Shape, dtype: str, flags: str = "") -> float:
        # Recompute (twice: segment + chunk) ~4 per (t, d, n) each, adjoint and gradient terms ~12.
        return self._elements(shape) * (20.0 * shape["N"] + 12.0)

    def bytes(self, shape: Shape, dtype: str, flags: str = "") -> float:
        size = DTYPES[dtype].itemsize
        per_token = 5 + 2 * ("z" in _flags_of(flags))   # u, delta, dout read; du, ddelta written (+ z, dz)
        return (size * self._elements(shape) * per_token
                + 4.0 * 4.0 * shape["batch"] * shape["N"] * shape["L"]          # BC read, dBC written (fp32)
                + 4.0 * self._elements(shape) * shape["N"] / CHECKPOINT_STEPS)  # checkpoints

    def verification_shape(self, shape: Shape) -> dict[str, int]:
        # The float64 autograd graph holds every step; keep batch and dim small.
        return {**shape, "batch": 1, "dim": min(shape["dim"], 64)}

    def make_inputs(self, shape: Shape, dtype: str, flags: str, device, generator: torch.Generator) -> Tensors:
        inputs = self._scan_inputs(shape, dtype, flags, device, generator)
        gen = self._device_generator(device, generator)
        u = inputs["u"]
        batch, dim, length, n_states = shape["batch"], shape["dim"], shape["L"], shape["N"]
        inputs["dout"] = torch.randn(batch, dim, length, generator=gen, device=device).to(u.dtype)
        # The forward's checkpoints (what the op saves in training mode), from the default forward.
        checkpoints = torch.empty(batch, dim, math.ceil(length / CHECKPOINT_STEPS), n_states,
                                  device=device, dtype=torch.float32)
        out = torch.empty_like(u)
        fwd_shape = {"batch": batch, "dim": dim, "L": length, "N": n_states}
        inputs["BC"] = selective_scan_fwd(FWD.triton_default_config(fwd_shape), u, inputs["delta"], inputs["A"],
                                          inputs["B"], inputs["C"], inputs["D"], inputs.get("z"),
                                          inputs["delta_bias"], True, None, out, None, checkpoints)
        inputs["checkpoints"] = checkpoints
        return inputs

    def allocate_outputs(self, inputs: Tensors, shape: Shape, dtype: str, flags: str) -> Tensors:
        u, B = inputs["u"], inputs["B"]
        f32 = dict(device=u.device, dtype=torch.float32)
        outputs = {"du": torch.empty_like(u), "ddelta": torch.empty_like(inputs["delta"]),
                   "dA": torch.empty(inputs["A"].shape, **f32), "dB": torch.empty(B.shape, **f32),
                   "dC": torch.empty(B.shape, **f32), "dD": torch.empty(u.shape[1], **f32),
                   "ddelta_bias": torch.empty(u.shape[1], **f32)}
        if "z" in inputs:
            outputs["dz"] = torch.empty_like(inputs["z"])
        return outputs

    def launch(self, config: Config, inputs: Tensors, outputs: Tensors, shape: Shape, flags: str) -> None:
        grads = selective_scan_bwd(
            config, inputs["u"], inputs["delta"], inputs["A"], inputs["BC"], shape["N"], inputs["D"],
            inputs.get("z"), inputs["delta_bias"], True, inputs["checkpoints"], inputs["dout"], None,
            outputs["du"], outputs["ddelta"], outputs.get("dz"), want_dinitial=False)
        dB, dC = unpack_dbc(grads["dBC"], shape["N"], shape["L"])
        outputs["dB"].copy_(dB)
        outputs["dC"].copy_(dC)
        outputs["dA"].copy_(grads["dA"])
        outputs["dD"].copy_(grads["dD"])
        outputs["ddelta_bias"].copy_(grads["ddelta_bias"])

    def reference(self, inputs: Tensors, shape: Shape, flags: str) -> Tensors:
        names = ["u", "delta", "A", "B", "C", "D", "delta_bias"] + (["z"] if "z" in inputs else [])
        leaves = {k: inputs[k].detach().double().requires_grad_(True) for k in names}
        with torch.enable_grad():
            out = selective_scan_ref(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"],
                                     leaves["D"], leaves.get("z"), leaves["delta_bias"], True)
            grads = torch.autograd.grad(out, [leaves[k] for k in names], inputs["dout"].double())
        return {("d" + k): g for k, g in zip(names, grads)}


class SelectiveScanStep(_SelectiveScanTemplate):
    """One decode token: out [batch, dim] and the new state [batch, dim, N] (fp32)."""
    name = "selective_scan.step"
    kernel = "step"
    dims = ("batch", "dim", "N")
    flags = ("z",)   # a Mamba block's decode step: D, dt_bias, dt_softplus=True and z
    workload = [
        {"batch": 256, "dim": 4096, "N": 16},   # the target
        {"batch": 1, "dim": 4096, "N": 16},
        {"batch": 64, "dim": 2048, "N": 16},
        {"batch": 32, "dim": 2048, "N": 128},
    ]
    quick_workload = [{"batch": 256, "dim": 4096, "N": 16}]
    cpu_workload = [{"batch": 3, "dim": 6, "N": 5}]
    triton_space, cuda_space = STEP_TRITON_SPACE, CUDA_STEP_SPACE

    def canonical(self, config: Config) -> Config:
        if config.get("backend", "triton") == "cuda":
            return {"backend": "cuda", **{k: config[k] for k in CUDA_STEP_SPACE if k in config}}
        return {"backend": "triton", **{k: config[k] for k in STEP_TRITON_SPACE if k in config}}

    def check_config(self, config: Config, shape: Shape, gpu=None) -> str | None:
        if not 1 <= shape["N"] <= MAX_STATES:
            return f"N must be in [1, {MAX_STATES}]; got {shape['N']}"
        if config.get("backend", "triton") == "cuda":
            reason = cuda_unavailable()
            if reason is not None:
                return f"CUDA backend unavailable: {reason}"
            return _cuda.cuda_check_config(config, _cuda_shape(shape), "step")
        block_d, warps = config["block_d"], config["num_warps"]
        per_thread = block_d * padded_states(shape["N"]) / (32 * warps)
        if block_d > max(4, _next_pow2(shape["dim"])):
            return f"block_d {block_d} is wider than dim={shape['dim']} needs"
        if per_thread > 64:
            return f"{per_thread:.0f} states per thread (> 64) would spill registers"
        if per_thread < 1 and block_d < _next_pow2(shape["dim"]):
            return f"{32 * warps} threads for {block_d * padded_states(shape['N'])} states leaves threads idle"
        return None

    def default_config(self, shape: Shape, gpu=None) -> Config:
        n_pad = padded_states(shape["N"])
        block_d = max(4, min(64, 512 // n_pad))
        block_d = min(block_d, max(4, _next_pow2(shape["dim"])))
        warps = max(1, min(4, block_d * n_pad // 128))
        config = {"backend": "triton", "block_d": block_d, "num_warps": warps}
        _refuse_unfit(self, config, shape, gpu)
        return config

    def flops(self, shape: Shape, dtype: str, flags: str = "") -> float:
        return shape["batch"] * shape["dim"] * (6.0 * shape["N"] + 8.0)

    def bytes(self, shape: Shape, dtype: str, flags: str = "") -> float:
        size = DTYPES[dtype].itemsize
        channels = shape["batch"] * shape["dim"]
        return (8.0 * channels * shape["N"]                     # fp32 state read and written
                + size * channels * (3 + ("z" in _flags_of(flags)))   # x, dt (, z) read, out written
                + 2.0 * size * shape["batch"] * shape["N"] + 4.0 * shape["dim"] * (shape["N"] + 2))

    def make_inputs(self, shape: Shape, dtype: str, flags: str, device, generator: torch.Generator) -> Tensors:
        gen = self._device_generator(device, generator)
        batch, dim, n_states = shape["batch"], shape["dim"], shape["N"]
        dt = DTYPES[dtype]

        def randn(*size):
            return torch.randn(*size, generator=gen, device=device)

        inputs = {"state": randn(batch, dim, n_states), "x": randn(batch, dim).to(dt),
                  "dt": (0.5 * randn(batch, dim)).to(dt),
                  "A": -(0.5 + 0.5 * n_states * torch.rand(dim, n_states, generator=gen, device=device)),
                  "B": randn(batch, 1, n_states).to(dt), "C": randn(batch, 1, n_states).to(dt),
                  "D": randn(dim), "dt_bias": -2.0 + 0.5 * randn(dim)}
        if "z" in _flags_of(flags):
            inputs["z"] = randn(batch, dim).to(dt)
        return inputs

    def allocate_outputs(self, inputs: Tensors, shape: Shape, dtype: str, flags: str) -> Tensors:
        # Out of place (new_state), so the tuner's inputs stay intact between runs; the op runs in place.
        return {"out": torch.empty_like(inputs["x"]), "new_state": torch.empty_like(inputs["state"])}

    def launch(self, config: Config, inputs: Tensors, outputs: Tensors, shape: Shape, flags: str) -> None:
        selective_state_update_run(config, inputs["state"], outputs["new_state"], inputs["x"], inputs["dt"],
                                   inputs["A"], inputs["B"], inputs["C"], inputs["D"], inputs.get("z"),
                                   inputs["dt_bias"], True, outputs["out"])

    def reference(self, inputs: Tensors, shape: Shape, flags: str) -> Tensors:
        out, new_state = selective_state_update_ref(inputs["state"], inputs["x"], inputs["dt"], inputs["A"],
                                                    inputs["B"], inputs["C"], inputs["D"], inputs.get("z"),
                                                    inputs["dt_bias"], True)
        return {"out": out, "new_state": new_state}


FWD = register(SelectiveScanFwd())
BWD = register(SelectiveScanBwd())
STEP = register(SelectiveScanStep())
