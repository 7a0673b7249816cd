"""linear_scan: the first-order linear recurrence h_t = exp(g_t) * h_{t-1} + x_t, o_t = h_t.

Layout [B, T, D] (sequence-first, log-space gates, as flash-linear-attention's hgrn ops); every
channel (b, d) is an independent scan over T, so the problem is pure memory bandwidth: the floor
is reading x and g and writing o once (backward: reading g, o, do and writing dx, dg once).

One Triton kernel serves forward and backward. The backward is the same scan run in reverse
("virtual time" u = T-1-t) over do, with the decay of step t taken from g_{t+1}, plus an epilogue
that writes dg_t = dh_t * exp(g_t) * o_{t-1} (h_{t-1} read from the saved output o).

Work unit: a tile of block_t steps x block_d channels. Each thread owns whole columns of the tile
(block_d / (32 * num_warps) channels, all block_t rows), so one load instruction per row and
tensor brings the whole tile in flight at once and ``tl.associative_scan`` along T runs inside
the thread (no shuffles, no shared memory). Three algorithms, chosen per shape by the tuner:

* ``sequential`` - one program per (batch, channel block) walks all of T, tile by tile, carrying
  the state. Reads and writes each byte once, but only B*D/block_d programs run.
* ``chunked`` - T is cut into ``splits`` spans. Pass 1 computes each span's aggregate (the affine
  map h -> A*h + H that the span applies); pass 2 rescans each span starting from the composed
  aggregates of the spans before it. ``splits`` times more programs, but x and g are read twice
  (5 instead of 3 units of traffic in the forward).
* ``lookback`` - one program per (tile, batch, channel block), single pass (decoupled look-back,
  as in CUB's single-pass scan): a program scans its tile; if its predecessor's inclusive prefix
  is already published that is its carry, otherwise it publishes the tile's aggregate and walks
  back over predecessors' aggregates until it meets a published inclusive prefix; then it
  publishes its own inclusive prefix and writes its outputs. Floor traffic plus 4 to 12 bytes of
  fp32 workspace per (tile, channel), and T/block_t times the parallelism of ``sequential``.
  Tiles are numbered in (tile, batch, channel block) order by program id: the hardware starts
  blocks in id order, so a tile's predecessors are running or done when it spins on them (the
  assumption CUB's single-pass scan makes). The ``ticket`` knob numbers them from an atomic
  counter instead, which cannot deadlock under any start order but puts one more L2 round trip
  before each program's loads (+5% time at B=2 T=65536 on the H100). The composition order of the
  look-back depends on timing, so results may differ from run to run in the last bits.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from kernelgen.launch import cdiv
from kernelgen.reference.linear_scan import linear_scan_backward_ref, linear_scan_ref
from kernelgen.template import DTYPES, Config, Shape, Template, Tensors

from kernelgen.templates import register

# Kernel modes (constexpr): chunked pass 1, sequential / chunked pass 2, single-pass look-back.
MODE_SUMMARY = tl.constexpr(0)
MODE_SCAN = tl.constexpr(1)
MODE_LOOKBACK = tl.constexpr(2)
# Look-back status of a tile: 0 = nothing yet, 1 = its aggregate is published, 2 = its inclusive prefix.
STATUS_AGGREGATE = tl.constexpr(1)
STATUS_INCLUSIVE = tl.constexpr(2)
LOG2E = tl.constexpr(1.4426950408889634)


# --- building blocks -----------------------------------------------------------------------------

@triton.jit
def _affine_combine(a_first, h_first, a_second, h_second):
    # Compose h -> a_first*h + h_first, then h -> a_second*h + h_second (associative, not commutative).
    return a_first * a_second, a_second * h_first + h_second


@triton.jit
def _decay(gate):
    # exp(g) as exp2(g * log2 e): one multiply and one MUFU.EX2 (ftz: decays below 2^-126 become 0),
    # where tl.exp adds denormal range fix-ups that cost three more instructions per element.
    return tl.exp2(gate * LOG2E)


@triton.jit
def _load(ptrs, mask, EVEN: tl.constexpr):
    # EVEN: every element is in bounds (T and D are tile multiples), so no mask is computed at all.
    if EVEN:
        return tl.load(ptrs).to(tl.float32)
    else:
        return tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _store(ptrs, value, mask, EVEN: tl.constexpr):
    if EVEN:
        tl.store(ptrs, value.to(ptrs.dtype.element_ty))
    else:
        tl.store(ptrs, value.to(ptrs.dtype.element_ty), mask=mask)


@triton.jit
def _tile(ptr, anchor, offs_d, row_off):
    # [BLOCK_T, BLOCK_D] pointers built column-first: each thread holds whole columns (see VEC),
    # so row_off is a per-register constant and folds into the load's immediate offset.
    return (ptr + anchor + offs_d)[None, :] + row_off[:, None]


@triton.jit
def _last_row(tile, rows, BLOCK_T: tl.constexpr):
    # Free with columns held in-thread: the compare folds per register, leaving one move.
    return tl.sum(tl.where(rows[:, None] == BLOCK_T - 1, tile, 0.0), axis=0)


@triton.jit
def _tile_index(u0, T, mask_d, D: tl.constexpr, BLOCK_T: tl.constexpr, REVERSE: tl.constexpr):
    """Tile of virtual steps u = u0 .. u0+BLOCK_T-1 (time t = u, or T-1-u in the reverse scan): row
    indices, u, each row's element offset from the tile's anchor row, and the in-bounds mask."""
    rows = tl.arange(0, BLOCK_T)
    u = u0 + rows
    if REVERSE:
        row_off = -rows * D
    else:
        row_off = rows * D
    mask = (u < T)[:, None] & mask_d[None, :]
    return rows, u, row_off, mask


@triton.jit
def _anchor(b, u0, T, D: tl.constexpr, REVERSE: tl.constexpr):
    """int64 element offset of virtual row u0 (time u0, or T-1-u0 in reverse) of sequence b."""
    if REVERSE:
        t0 = T - 1 - u0
    else:
        t0 = u0
    return (b.to(tl.int64) * T + t0) * D


@triton.jit
def _tile_scan(val_ptr, gate_ptr, anchor, offs_d, row_off, u, mask, T, D: tl.constexpr,
               REVERSE: tl.constexpr, EVEN: tl.constexpr):
    """(A, H) over the tile: the state at each row = A * (state before the tile) + H. Rows past T
    scan as the identity map (decay 1, value 0), so the last row holds the state at the last step."""
    val = _load(_tile(val_ptr, anchor, offs_d, row_off), mask, EVEN)
    if REVERSE:
        # Going from t+1 back to t decays by exp(g_{t+1}); after the last step (u = 0) by 1, so
        # that dfinal enters unchanged.
        gate = _load(_tile(gate_ptr, anchor + D, offs_d, row_off), mask & (u > 0)[:, None], False)
    else:
        gate = _load(_tile(gate_ptr, anchor, offs_d, row_off), mask, EVEN)
    return tl.associative_scan((_decay(gate), val), 0, _affine_combine)


@triton.jit
def _tile_emit(out_ptr, gate_ptr, hprev_ptr, dgate_ptr, h0, anchor, offs_d, row_off, u, mask, T,
               decay_prod, local, carry, D: tl.constexpr, REVERSE: tl.constexpr, HAS_H0: tl.constexpr,
               EVEN: tl.constexpr):
    """Apply the carry to a scanned tile and store it (o, or dx in reverse); in reverse also
    dg = dh * exp(g_t) * h_{t-1}. Returns the tile's states."""
    h = decay_prod * carry[None, :] + local
    _store(_tile(out_ptr, anchor, offs_d, row_off), h, mask, EVEN)
    if REVERSE:
        gate = _load(_tile(gate_ptr, anchor, offs_d, row_off), mask, EVEN)
        # h_{t-1} is the saved forward output o_{t-1}; at t = 0 (u = T-1) it is initial_state.
        h_prev = _load(_tile(hprev_ptr, anchor - D, offs_d, row_off), mask & (u < T - 1)[:, None], False)
        if HAS_H0:
            h_prev = tl.where((u == T - 1)[:, None], h0[None, :], h_prev)
        _store(_tile(dgate_ptr, anchor, offs_d, row_off), h * _decay(gate) * h_prev, mask, EVEN)
    return h


# --- look-back -------------------------------------------------------------------------------------

@triton.jit
def _raise_flag(flag_ptr, status):
    # Every thread's stores of the published values are issued before the barrier; the release
    # atomic (one thread) then makes them visible to whoever acquires the flag.
    tl.debug_barrier()
    tl.atomic_xchg(flag_ptr, status, sem="release")


@triton.jit
def _look_back(agg_a_ptr, agg_h_ptr, incl_ptr, flag_ptr, ws_row, flag_row, split, offs_d, mask_d,
               D: tl.constexpr, BLOCK_D: tl.constexpr):
    """State entering tile ``split``: compose the predecessors' aggregates, walking back, until one
    has published its inclusive prefix. Spins while the nearest unfinished predecessor has not
    published anything (it is running: it took its ticket earlier)."""
    run_a = tl.full([BLOCK_D], 1.0, tl.float32)
    run_h = tl.zeros([BLOCK_D], tl.float32)
    carry = tl.zeros([BLOCK_D], tl.float32)
    j = split - 1
    while j >= 0:
        status = tl.atomic_add(flag_ptr + flag_row + j, 0, sem="acquire")
        if status == STATUS_INCLUSIVE:
            prefix = tl.load(incl_ptr + ws_row + j * D + offs_d, mask=mask_d, other=0.0, cache_modifier=".cg")
            carry = run_h + run_a * prefix
            j = j * 0 - 1   # done (kept an int32 tensor so the loop-carried type is stable)
        elif status == STATUS_AGGREGATE:
            agg_a = tl.load(agg_a_ptr + ws_row + j * D + offs_d, mask=mask_d, other=1.0, cache_modifier=".cg")
            agg_h = tl.load(agg_h_ptr + ws_row + j * D + offs_d, mask=mask_d, other=0.0, cache_modifier=".cg")
            run_h = run_h + run_a * agg_h
            run_a = run_a * agg_a
            j = j - 1
    return carry


@triton.jit
def _store_state_out(state_out_ptr, gate_ptr, b, T, state_off, offs_d, mask_d, end, D: tl.constexpr,
                     REVERSE: tl.constexpr):
    if REVERSE:
        # end = dh_0 (the gradient at t = 0); d initial_state = exp(g_0) * dh_0.
        gate0 = tl.load(gate_ptr + b.to(tl.int64) * T * D + offs_d, mask=mask_d, other=0.0).to(tl.float32)
        end = end * _decay(gate0)
    tl.store(state_out_ptr + state_off, end, mask=mask_d)


# --- the kernel -----------------------------------------------------------------------------------

@triton.jit
def linear_scan_kernel(
    val_ptr, gate_ptr, out_ptr,        # [B, T, D]: x, g, o (forward) or do, g, dx (reverse)
    state_in_ptr, state_out_ptr,       # [B, D] fp32: h0, final (forward) or dfinal, d h0 (reverse)
    hprev_ptr, h0_ptr, dgate_ptr,      # reverse only: saved o, forward's h0, dg
    agg_a_ptr, agg_h_ptr, incl_ptr,    # workspace [B, n_splits, D] fp32 (chunked, lookback)
    flag_ptr,                          # lookback: int32 [B * n_d_blocks * n_splits + 1], zeroed
    B, T, n_splits, tiles_per_split,
    D: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, VEC: tl.constexpr, MODE: tl.constexpr,
    REVERSE: tl.constexpr, HAS_STATE_IN: tl.constexpr, HAS_STATE_OUT: tl.constexpr, HAS_H0: tl.constexpr,
    EVEN_T: tl.constexpr, EVEN_D: tl.constexpr, NUM_STAGES: tl.constexpr, INCLUSIVE_EVERY: tl.constexpr,
    TICKET: tl.constexpr,
):
    n_d_blocks: tl.constexpr = (D + BLOCK_D - 1) // BLOCK_D
    EVEN: tl.constexpr = EVEN_T and EVEN_D
    if MODE == MODE_LOOKBACK:
        # Tickets in (tile, batch, channel block) order: tile k's predecessors hold smaller tickets.
        # TICKET: from an atomic counter, so every predecessor is running whatever order the
        # hardware starts programs in; else the program id (blocks start in id order in practice).
        if TICKET:
            ticket = tl.atomic_add(flag_ptr + B * n_d_blocks * n_splits, 1)
        else:
            ticket = tl.program_id(0)
        split = ticket // (B * n_d_blocks)
        b = (ticket % (B * n_d_blocks)) // n_d_blocks
        d_block = ticket % n_d_blocks
    else:
        d_block = tl.program_id(0)
        split = tl.program_id(1)
        b = tl.program_id(2)
    # Claiming only VEC-wide contiguity makes Triton spread threads over D alone (VEC channels
    # each, VEC * 32 * num_warps = BLOCK_D): every thread owns whole columns of a tile, so the
    # scan along T runs inside the thread, without shuffles or shared memory.
    offs_d = tl.max_contiguous(d_block * BLOCK_D + tl.arange(0, BLOCK_D), VEC)
    mask_d = offs_d < D
    state_off = b.to(tl.int64) * D + offs_d
    ws_row = b.to(tl.int64) * n_splits * D
    n_tiles = tl.cdiv(T, BLOCK_T)

    h0 = tl.zeros([BLOCK_D], tl.float32)
    if HAS_H0:
        h0 = _load(h0_ptr + state_off, mask_d, EVEN_D)
    start = tl.zeros([BLOCK_D], tl.float32)
    if HAS_STATE_IN:
        start = _load(state_in_ptr + state_off, mask_d, EVEN_D)

    if MODE == MODE_SUMMARY:
        acc_a = tl.full([BLOCK_D], 1.0, tl.float32)
        acc_h = tl.zeros([BLOCK_D], tl.float32)
        tile_lo = split * tiles_per_split
        tile_hi = tl.minimum(tile_lo + tiles_per_split, n_tiles)
        for k in tl.range(tile_lo, tile_hi, num_stages=NUM_STAGES):
            u0 = k * BLOCK_T
            anchor = _anchor(b, u0, T, D, REVERSE)
            rows, u, row_off, mask = _tile_index(u0, T, mask_d, D, BLOCK_T, REVERSE)
            decay_prod, local = _tile_scan(val_ptr, gate_ptr, anchor, offs_d, row_off, u, mask, T, D, REVERSE, EVEN)
            tile_a = _last_row(decay_prod, rows, BLOCK_T)
            acc_h = tile_a * acc_h + _last_row(local, rows, BLOCK_T)
            acc_a = acc_a * tile_a
        tl.store(agg_a_ptr + ws_row + split * D + offs_d, acc_a, mask=mask_d)
        tl.store(agg_h_ptr + ws_row + split * D + offs_d, acc_h, mask=mask_d)

    elif MODE == MODE_SCAN:
        carry = start
        for j in range(0, split):   # compose the aggregates of the spans before this one
            agg_a = tl.load(agg_a_ptr + ws_row + j * D + offs_d, mask=mask_d, other=1.0)
            agg_h = tl.load(agg_h_ptr + ws_row + j * D + offs_d, mask=mask_d, other=0.0)
            carry = agg_a * carry + agg_h
        tile_lo = split * tiles_per_split
        tile_hi = tl.minimum(tile_lo + tiles_per_split, n_tiles)
        for k in tl.range(tile_lo, tile_hi, num_stages=NUM_STAGES):
            u0 = k * BLOCK_T
            anchor = _anchor(b, u0, T, D, REVERSE)
            rows, u, row_off, mask = _tile_index(u0, T, mask_d, D, BLOCK_T, REVERSE)
            decay_prod, local = _tile_scan(val_ptr, gate_ptr, anchor, offs_d, row_off, u, mask, T, D, REVERSE, EVEN)
            h = _tile_emit(out_ptr, gate_ptr, hprev_ptr, dgate_ptr, h0, anchor, offs_d, row_off, u, mask, T,
                           decay_prod, local, carry, D, REVERSE, HAS_H0, EVEN)
            carry = _last_row(h, rows, BLOCK_T)
        if HAS_STATE_OUT:
            if tile_hi == n_tiles:
                _store_state_out(state_out_ptr, gate_ptr, b, T, state_off, offs_d, mask_d, carry, D, REVERSE)

    else:  # MODE_LOOKBACK: one tile per program
        u0 = split * BLOCK_T
        anchor = _anchor(b, u0, T, D, REVERSE)
        rows, u, row_off, mask = _tile_index(u0, T, mask_d, D, BLOCK_T, REVERSE)
        decay_prod, local = _tile_scan(val_ptr, gate_ptr, anchor, offs_d, row_off, u, mask, T, D, REVERSE, EVEN)
        tile_a = _last_row(decay_prod, rows, BLOCK_T)
        tile_h = _last_row(local, rows, BLOCK_T)
        flag_row = (b * n_d_blocks + d_block) * n_splits
        is_last = split == n_splits - 1
        # INCLUSIVE_EVERY > 1 is a test hook: tiles between publish only their aggregate, so that
        # under the (sequential) interpreter the look-back walks over aggregates too.
        publishes_inclusive = (not is_last) and (split % INCLUSIVE_EVERY == 0)
        if split == 0:
            carry = start
        else:
            status = tl.atomic_add(flag_ptr + flag_row + split - 1, 0, sem="acquire")
            # The aggregate is only worth its 8 bytes per channel when the predecessor is not done
            # yet (then successors may need it before this tile's inclusive prefix exists).
            if (not is_last) and ((status != STATUS_INCLUSIVE) or (not publishes_inclusive)):
                tl.store(agg_a_ptr + ws_row + split * D + offs_d, tile_a, mask=mask_d)
                tl.store(agg_h_ptr + ws_row + split * D + offs_d, tile_h, mask=mask_d)
                _raise_flag(flag_ptr + flag_row + split, STATUS_AGGREGATE)
            if status == STATUS_INCLUSIVE:
                carry = tl.load(incl_ptr + ws_row + (split - 1) * D + offs_d, mask=mask_d, other=0.0,
                                cache_modifier=".cg")
            else:
                carry = _look_back(agg_a_ptr, agg_h_ptr, incl_ptr, flag_ptr, ws_row, flag_row, split, offs_d,
                                   mask_d, D, BLOCK_D)
        inclusive = tile_a * carry + tile_h   # the state after this tile
        if publishes_inclusive:
            tl.store(incl_ptr + ws_row + split * D + offs_d, inclusive, mask=mask_d)
            _raise_flag(flag_ptr + flag_row + split, STATUS_INCLUSIVE)
        _tile_emit(out_ptr, gate_ptr, hprev_ptr, dgate_ptr, h0, anchor, offs_d, row_off, u, mask, T,
                   decay_prod, local, carry, D, REVERSE, HAS_H0, EVEN)
        if HAS_STATE_OUT:
            if is_last:
                _store_state_out(state_out_ptr, gate_ptr, b, T, state_off, offs_d, mask_d, inclusive, D, REVERSE)


# --- launchers ----------------------------------------------------------------------------------------

def _vec(block_d: int, num_warps: int) -> int:
    """Channels per thread: BLOCK_D spread over all threads (2..8 in every config check_config accepts)."""
    return max(1, min(8, block_d // (32 * num_warps)))


def _run_scan(config: Config, *, val: torch.Tensor, gate: torch.Tensor, out: torch.Tensor,
              state_in: torch.Tensor | None, state_out: torch.Tensor | None, reverse: bool,
              hprev: torch.Tensor | None = None, h0: torch.Tensor | None = None,
              dgate: torch.Tensor | None = None) -> None:
    """Launch the scan (forward, or reverse for the backward) with ``config``; all [B, T, D]
    tensors contiguous, states fp32 [B, D]."""
    batch, steps, width = val.shape
    if batch * steps * width == 0:
        if state_out is not None:   # T = 0: final = h0 (and d h0 = dfinal)
            state_out.copy_(state_in) if state_in is not None else state_out.zero_()
        return
    block_t, block_d = int(config["block_t"]), int(config["block_d"])
    algorithm = config["algorithm"]
    n_d_blocks, n_tiles = cdiv(width, block_d), cdiv(steps, block_t)
    dummy = val   # stands in for pointers a variant never dereferences
    options = dict(D=width, BLOCK_T=block_t, BLOCK_D=block_d, VEC=_vec(block_d, int(config["num_warps"])),
                   REVERSE=reverse, HAS_STATE_IN=state_in is not None, HAS_STATE_OUT=state_out is not None,
                   HAS_H0=h0 is not None, EVEN_T=steps % block_t == 0, EVEN_D=width % block_d == 0,
                   INCLUSIVE_EVERY=int(config.get("inclusive_every", 1)), num_warps=int(config["num_warps"]),
                   TICKET=bool(config.get("ticket", False)))
    tensors = (val, gate, out,
               state_in if state_in is not None else dummy, state_out if state_out is not None else dummy,
               hprev if hprev is not None else dummy, h0 if h0 is not None else dummy,
               dgate if dgate is not None else dummy)
    if algorithm == "lookback" and n_tiles > 1:
        workspace = torch.empty((3, batch, n_tiles, width), dtype=torch.float32, device=val.device)
        flags = torch.zeros(batch * n_d_blocks * n_tiles + 1, dtype=torch.int32, device=val.device)
        linear_scan_kernel[(n_tiles * batch * n_d_blocks,)](
            *tensors, workspace[0], workspace[1], workspace[2], flags, batch, steps, n_tiles, 1,
            MODE=2, NUM_STAGES=1, num_stages=1, **options)
        return
    splits = int(config.get("splits", 1)) if algorithm == "chunked" else 1
    tiles_per_split = cdiv(n_tiles, max(1, min(splits, n_tiles)))
    n_splits = cdiv(n_tiles, tiles_per_split)
    stages = int(config.get("num_stages", 1))
    workspace = torch.empty((2, batch, n_splits, width) if n_splits > 1 else (2, 1, 1, 1),
                            dtype=torch.float32, device=val.device)
    if n_splits > 1:
        linear_scan_kernel[(n_d_blocks, n_splits - 1, batch)](
            *tensors, workspace[0], workspace[1], workspace[0], workspace[0], batch, steps,
            n_splits, tiles_per_split, MODE=0, NUM_STAGES=stages, num_stages=stages, **options)
    linear_scan_kernel[(n_d_blocks, n_splits, batch)](
        *tensors, workspace[0], workspace[1], workspace[0], workspace[0], batch, steps,
        n_splits, tiles_per_split, MODE=1, NUM_STAGES=stages, num_stages=stages, **options)


def linear_scan_fwd(config: Config, x: torch.Tensor, g: torch.Tensor, initial_state: torch.Tensor | None,
                    o: torch.Tensor, final_state: torch.Tensor | None) -> None:
    """o = scan(x, g) from initial_state (fp32 [B, D] or None); final_state (fp32 [B, D]) if given."""
    _run_scan(config, val=x, gate=g, out=o, state_in=initial_state, state_out=final_state, reverse=False)


def linear_scan_bwd(config: Config, g: torch.Tensor, o: torch.Tensor, do: torch.Tensor,
                    initial_state: torch.Tensor | None, dfinal: torch.Tensor | None,
                    dx: torch.Tensor, dg: torch.Tensor, dh0: torch.Tensor | None) -> None:
    """dx, dg (and dh0 when the forward had initial_state) from do and dfinal; h_{t-1} is read from
    the saved output o (initial_state at t = 0)."""
    _run_scan(config, val=do, gate=g, out=dx, state_in=dfinal, state_out=dh0, reverse=True,
              hprev=o, h0=initial_state, dgate=dg)


# --- templates ----------------------------------------------------------------------------------------

def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


class _LinearScanTemplate(Template):
    op = "linear_scan"
    dims = ("B", "T", "D")
    space = {
        "algorithm": ["lookback", "sequential", "chunked"],
        "block_t": [8, 16, 32, 64],
        "block_d": [64, 128, 256, 512, 1024],
        "num_warps": [1, 2, 4, 8],
        "splits": [4, 16, 64],          # chunked only: spans of T per (batch, channel block)
        "num_stages": [1, 2],           # sequential only: software pipelining of its tile loop
        "ticket": [False, True],        # lookback only: tile order from an atomic counter
    }
    workload = [{"B": 8, "T": 4096, "D": 2048}, {"B": 2, "T": 65536, "D": 2048}, {"B": 4, "T": 2048, "D": 1024}]
    quick_workload = [{"B": 8, "T": 4096, "D": 2048}]
    cpu_workload = [{"B": 2, "T": 37, "D": 24}]
    dtypes = ("bf16", "fp16", "fp32")
    flags = ("",)
    # Largest block_t * channels-per-thread: the tiles a thread holds stay in registers up to this
    # (compiled for sm_90 with Triton 3.6 and 3.9: <= ~230 registers, no spills, either direction).
    max_elements_per_thread = 64
    tiles_per_step = 2       # [block_t, block_d] tiles loaded per step (shared-memory estimate)
    default_block_t = 32     # rows per tile of the heuristic default

    def canonical(self, config: Config) -> Config:
        config = dict(config)
        if config.get("algorithm") != "chunked":
            config.pop("splits", None)
        if config.get("algorithm") != "sequential":
            config.pop("num_stages", None)
        if config.get("algorithm") != "lookback":
            config.pop("ticket", None)
        return config

    def check_config(self, config: Config, shape: Shape, gpu=None) -> str | None:
        block_t, block_d, warps = config["block_t"], config["block_d"], config["num_warps"]
        threads = 32 * warps
        if block_d % threads or not 2 <= block_d // threads <= 8:
            # The layout puts block_d / threads whole channels in each thread: at most 8 (one
            # 16-byte load), at least 2 (with 1, Triton 3.6 orders the tile T-fastest and its scan
            # then runs across lanes, 3x the instructions).
            return f"block_d {block_d} is not 2..8 channels for each of {threads} threads"
        if block_t * (block_d // threads) > self.max_elements_per_thread:
            return (f"{block_t} rows x {block_d // threads} channels per thread exceeds "
                    f"{self.max_elements_per_thread} (register spills)")
        if block_d > max(64, _next_pow2(shape["D"])):
            return f"block_d {block_d} is wider than D={shape['D']} needs"
        if block_t > max(8, _next_pow2(shape["T"])):
            return f"block_t {block_t} is longer than T={shape['T']} needs"
        n_tiles = math.ceil(shape["T"] / block_t)
        if config["algorithm"] == "lookback" and n_tiles < 2:
            return "lookback needs at least two tiles along T"
        if config["algorithm"] == "chunked" and config.get("splits", 1) > n_tiles:
            return f"{config.get('splits')} splits but only {n_tiles} tiles along T"
        stages = config.get("num_stages", 1)
        if stages > 1:
            limit = gpu.shared_memory_per_block if gpu is not None else 227 * 1024
            need = stages * block_t * block_d * 4 * self.tiles_per_step   # fp32 worst case
            if need > limit:
                return f"{stages} stages need {need // 1024} KB of shared memory > {limit // 1024} KB"
        return None

    def default_config(self, shape: Shape, gpu=None) -> Config:
        batch, steps, width = shape["B"], shape["T"], shape["D"]
        sms = gpu.sms if gpu is not None else 132
        # Two channels per thread (4-byte bf16 loads), up to 4 warps; default_block_t rows: 64
        # independent loads in flight per thread and tensor in the forward (~160 registers,
        # 3 programs per SM), half that in the backward, which holds twice the tiles.
        block_d = max(64, min(256, _next_pow2(width)))
        warps = block_d // 64
        block_t = max(8, min(self.default_block_t, _next_pow2(steps)))
        channel_blocks = batch * math.ceil(width / block_d)
        if steps <= block_t or channel_blocks >= 4 * sms:
            # Enough (batch, channel block) programs to fill the GPU without splitting T:
            # one pass, no workspace, no atomics.
            config = {"algorithm": "sequential", "block_t": block_t, "block_d": block_d, "num_warps": warps,
                      "num_stages": 1}
        else:
            config = {"algorithm": "lookback", "block_t": block_t, "block_d": block_d, "num_warps": warps,
                      "ticket": False}
        return self.canonical(config)

    def verification_shape(self, shape: Shape) -> dict[str, int]:
        # The float64 reference holds several [B, T, D] doubles; keep it near 1 GB (B is not tiled).
        per_batch = shape["T"] * shape["D"]
        return {**shape, "B": max(1, min(shape["B"], (1 << 27) // max(1, per_batch)))}

    def _gates(self, shape: Shape, device, generator: torch.Generator) -> torch.Tensor:
        # Log-sigmoid gates: decays spread over (0, 1), most between 0.3 and 0.95.
        return torch.nn.functional.logsigmoid(
            torch.randn(shape["B"], shape["T"], shape["D"], generator=generator, device=device) + 1.0)

    @staticmethod
    def _device_generator(device, generator: torch.Generator) -> torch.Generator:
        # Draw the big tensors on the device (CPU draws of 2^28 values take seconds per trial).
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        return torch.Generator(device=device).manual_seed(seed)


class LinearScanFwd(_LinearScanTemplate):
    """o = scan(x, g) (and final_state) for x, g [B, T, D]; initial_state given."""
    name = "linear_scan.fwd"
    kernel = "fwd"

    def flops(self, shape: Shape, dtype: str, flags: str = "") -> float:
        return 3.0 * shape["B"] * shape["T"] * shape["D"]   # exp, multiply, add per element

    def bytes(self, shape: Shape, dtype: str, flags: str = "") -> float:
        size = DTYPES[dtype].itemsize
        return 3.0 * size * shape["B"] * shape["T"] * shape["D"] + 8.0 * shape["B"] * shape["D"]

    def make_inputs(self, shape: Shape, dtype: str, flags: str, device, generator: torch.Generator) -> Tensors:
        dev_gen = self._device_generator(device, generator)
        size = (shape["B"], shape["T"], shape["D"])
        return {"x": torch.randn(size, generator=dev_gen, device=device).to(DTYPES[dtype]),
                "g": self._gates(shape, device, dev_gen).to(DTYPES[dtype]),
                "initial_state": torch.randn(shape["B"], shape["D"], generator=dev_gen, device=device)}

    def allocate_outputs(self, inputs: Tensors, shape: Shape, dtype: str, flags: str) -> Tensors:
        return {"o": torch.empty_like(inputs["x"]),
                "final_state": torch.empty_like(inputs["initial_state"])}

    def launch(self, config: Config, inputs: Tensors, outputs: Tensors, shape: Shape, flags: str) -> None:
        linear_scan_fwd(config, inputs["x"], inputs["g"], inputs["initial_state"], outputs["o"],
                        outputs["final_state"])

    def reference(self, inputs: Tensors, shape: Shape, flags: str) -> Tensors:
        o, final = linear_scan_ref(inputs["x"], inputs["g"], inputs["initial_state"])
        return {"o": o, "final_state": final}


class LinearScanBwd(_LinearScanTemplate):
    """dx, dg, d initial_state from do, dfinal and the saved forward output o."""
    name = "linear_scan.bwd"
    kernel = "bwd"
    tiles_per_step = 4   # do, g shifted, g, o
    default_block_t = 16

    def flops(self, shape: Shape, dtype: str, flags: str = "") -> float:
        return 7.0 * shape["B"] * shape["T"] * shape["D"]

    def bytes(self, shape: Shape, dtype: str, flags: str = "") -> float:
        size = DTYPES[dtype].itemsize   # reads g, o, do; writes dx, dg
        return 5.0 * size * shape["B"] * shape["T"] * shape["D"] + 12.0 * shape["B"] * shape["D"]

    def make_inputs(self, shape: Shape, dtype: str, flags: str, device, generator: torch.Generator) -> Tensors:
        dev_gen = self._device_generator(device, generator)
        size = (shape["B"], shape["T"], shape["D"])
        x = torch.randn(size, generator=dev_gen, device=device).to(DTYPES[dtype])
        g = self._gates(shape, device, dev_gen).to(DTYPES[dtype])
        h0 = torch.randn(shape["B"], shape["D"], generator=dev_gen, device=device)
        o, _ = linear_scan_ref(x, g, h0)
        return {"x": x, "g": g, "initial_state": h0, "o": o.to(DTYPES[dtype]),
                "do": torch.randn(size, generator=dev_gen, device=device).to(DTYPES[dtype]),
                "dfinal": torch.randn(shape["B"], shape["D"], generator=dev_gen, device=device)}

    def allocate_outputs(self, inputs: Tensors, shape: Shape, dtype: str, flags: str) -> Tensors:
        return {"dx": torch.empty_like(inputs["x"]), "dg": torch.empty_like(inputs["g"]),
                "dinitial_state": torch.empty_like(inputs["initial_state"])}

    def launch(self, config: Config, inputs: Tensors, outputs: Tensors, shape: Shape, flags: str) -> None:
        linear_scan_bwd(config, inputs["g"], inputs["o"], inputs["do"], inputs["initial_state"], inputs["dfinal"],
                        outputs["dx"], outputs["dg"], outputs["dinitial_state"])

    def reference(self, inputs: Tensors, shape: Shape, flags: str) -> Tensors:
        dx, dg, dh0 = linear_scan_backward_ref(inputs["x"], inputs["g"], inputs["initial_state"],
                                               inputs["do"], inputs["dfinal"])
        return {"dx": dx, "dg": dg, "dinitial_state": dh0}


FWD = register(LinearScanFwd())
BWD = register(LinearScanBwd())
