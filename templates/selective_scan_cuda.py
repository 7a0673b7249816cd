"""CUDA backend of the selective scan: search space, constraints, defaults and launchers for the
templated kernels in ``selective_scan.cu`` (compiled at run time by NVRTC through CuPy, one
module per instantiation, see ``kernelgen/cuda_jit.py``). The Triton templates in
``selective_scan.py`` call these when a config's backend is ``"cuda"``.

Interface (shapes; every tensor contiguous, on one CUDA device):

    selective_scan_fwd_cuda(config, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                            initial_state, out, last_state) -> None
        u, delta, z [batch, dim, L] fp32/fp16/bf16 (z may be None); A [dim, N] fp32;
        B, C [batch, G, N, L] (u's dtype or fp32); D, delta_bias [dim] fp32 or None;
        initial_state [batch, dim, N] fp32 or None. Writes out [batch, dim, L] (u's dtype) and
        last_state [batch, dim, N] fp32 (None: not written). Any L >= 0, 1 <= N <= 256.
        Keyword chunk_states [batch, dim, chunk_count(config, L), N] fp32: also write the state
        entering every chunk, the checkpoints the backward can reuse.
    selective_scan_bwd_cuda(config, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                            initial_state, dout, dlast_state, du, ddelta, dA, dB, dC, dD, dz,
                            ddelta_bias, dinitial_state, chunk_states=None) -> None
        The forward's inputs, dout [batch, dim, L] (u's dtype) and dlast_state [batch, dim, N] fp32
        or None. Writes du, ddelta (u's dtype), dA [dim, N] fp32, dB, dC (B's shape, any float
        dtype), dD, ddelta_bias [dim] fp32 (None: not wanted), dz (u's dtype; needed when z is
        given) and dinitial_state [batch, dim, N] fp32 (None: not wanted). Gradients are summed
        over the batch (and over the channels of a group for dB, dC) here; nothing needs zeroing.
        chunk_states from a forward with the same items_per_thread skips the backward's own
        forward pass over the chunks (one exp per element and state less).
    selective_scan_bwd_channel_cuda(config, u, delta, A, BC, n_states, D, z, delta_bias,
                                    delta_softplus, checkpoints, dout, dlast, du, ddelta, dz,
                                    want_dinitial) -> dict
        The channel-layout backward with the Triton backward's contract (selective_scan.py): the
        packed fp32 BC of pack_bc and the forward's every-64-steps checkpoints in; du, ddelta, dz
        written; dA, dBC, dD, ddelta_bias, dinitial_state returned.
    selective_state_update_cuda(config, state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, out)
        state [batch, dim, N] fp32 updated in place; x, dt, z [batch, dim]; B, C [batch, G, N];
        writes out [batch, dim].

Config keys. Forward (``CUDA_SPACE``): ``layout`` picks one of two kernels. "warp": one warp owns
a channel and scans L in chunks across its lanes; ``threads`` per block (32 per channel),
``items_per_thread`` consecutive timesteps per lane (chunk = 32 * items), ``state_unroll`` (1 or
2 states in flight). "channel": one thread owns a channel (``split`` threads share its states)
and steps through L with the states in registers, the block's channels sharing B/C chunks of
``chunk`` steps staged in shared memory; ``poly`` states per thread take their exp on the FMA
pipe. Both: ``occupancy``, the warps per SM the register allocation must leave room for (8: no
cap, no spills; 12: at most 168 registers at 4 warps a block, where the warp layout's unaligned
rows need ~172; 16: at most 128). The channel layout also writes the backward's checkpoints
(keyword ``checkpoints``). Backward
(``CUDA_BWD_SPACE``): the same keys but no unroll; its warps must divide dim / G (a block's
channels share one group, whose dB/dC they sum in shared memory). With ``layout: "channel"``
(``CUDA_BWD_CHANNEL_SPACE``): ``threads``, ``split`` threads per channel, ``steps`` recomputed per
group with their states in registers, ``occupancy`` and ``block_sum`` (per-block partials or
atomics for dB/dC). Decode step
(``CUDA_STEP_SPACE``): ``threads`` per block and ``items_per_thread`` consecutive states per
lane. Unknown keys (the backend, Triton parameters) are ignored; missing ones take the
heuristic default. ``cuda_check_config``/``cuda_default_config`` take ``kernel`` = "fwd",
"bwd" or "step" (left out: "fwd" when the shape has L, else "step").
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, Mapping

import torch

from kernelgen import cuda_jit

SOURCE = cuda_jit.CudaSource(Path(__file__).with_name("selective_scan.cu"))

CUDA_SPACE: dict[str, list] = {
    "layout": ["warp", "channel"],
    "threads": [32, 64, 128, 256],
    "items_per_thread": [4, 8, 16],     # warp layout
    "state_unroll": [1, 2],             # warp layout
    "occupancy": [8, 12, 16],
    "split": [1, 2, 4],                 # channel layout: threads per channel
    "chunk": [8, 16, 32, 64, 128],      # channel layout: B/C steps staged in shared memory
    "poly": [0, 1, 2],                  # channel layout: states a thread exps on the FMA pipe
    "steps": [8, 16, 32],               # channel layout: steps a sub-chunk (the unrolled loop body)
}
# Keys each forward layout reads (canonical configs keep only these).
_FWD_LAYOUT_KEYS = {
    "warp": ("layout", "threads", "items_per_thread", "state_unroll", "occupancy"),
    "channel": ("layout", "threads", "occupancy", "split", "chunk", "poly", "steps"),
}
# The channel layout keeps N / split states (and as many A values) in registers per thread.
MAX_STATES_PER_THREAD = 32
CUDA_BWD_SPACE: dict[str, list] = {
    "threads": [32, 64, 128, 256],
    "items_per_thread": [4, 8, 16],
    "occupancy": [8, 16],
}
# Backward, channel layout (``layout: "channel"``; see selective_scan_bwd_channel_kernel): a thread
# owns N / split states of one channel, the block's channels (threads / split) share B/C.
CUDA_BWD_CHANNEL_SPACE: dict[str, list] = {
    "layout": ["channel"],
    "threads": [64, 128, 256],
    "split": [1, 2, 4, 8],            # threads per channel
    "steps": [4, 8, 16],              # steps recomputed per group, their h and decays in registers
    "occupancy": [8, 16],
    # How the blocks' dB/dC sums meet: fp32 atomicAdd into one buffer (not bitwise reproducible;
    # under torch.use_deterministic_algorithms the launcher takes partials instead) or per-block
    # partials summed by torch (deterministic, a batch * dim / (threads / split) * L * 2N * 4-byte
    # buffer: 268 MB at the target, and its sum: ~0.1 ms there).
    "block_sum": ["partials", "atomic"],
}
# Registers of the channel backward's arrays: a group's states and decays (2 * steps * N / split)
# and six per-step arrays (dt, dt*u, dy, and the per-step sums); past these budgets per occupancy
# ptxas spills (sm_90, N = 16: split 4 / steps 8 at occupancy 16 has 112 and spills 8 bytes,
# split 2 / steps 8 there has 176 and spills 564 bytes).
BWD_CHANNEL_REGISTER_BUDGET = {8: 224, 16: 112}


def bwd_channel_registers(n_states: int, split: int, steps: int) -> int:
    return 2 * steps * (n_states // split) + 6 * steps

CUDA_STEP_SPACE: dict[str, list] = {
    "threads": [64, 128, 256, 512],
    "items_per_thread": [1, 2, 4, 8, 16],
}
MAX_STATES = 256
# Steps between the states the channel-layout forward saves for the backward; equal to
# selective_scan.CHECKPOINT_STEPS (that module imports this one, so the value lives here).
CHECKPOINT_STEPS = 64
# Registers per lane grow ~6 floats per item (dt, dt*u, y, decay, input, B/C) per state in
# flight; above this the forward kernel spills to local memory (ptxas -v, sm_90).
MAX_ITEMS_X_UNROLL = 16

_TYPE_NAMES = {torch.float32: "Float32", torch.float16: "Float16", torch.bfloat16: "BFloat16"}


def cuda_unavailable_reason() -> str | None:
    """None when CuPy and a CUDA GPU are usable, else why the CUDA backend cannot run."""
    return cuda_jit.cuda_unavailable_reason()


_SPACES = {"fwd": CUDA_SPACE, "bwd": CUDA_BWD_SPACE, "step": CUDA_STEP_SPACE}
_STATIC_SHARED_BYTES = 48 * 1024


def _kernel_of(shape: Mapping[str, int], kernel: str | None) -> str:
    if kernel is None:
        kernel = "fwd" if "L" in shape else "step"
    if kernel not in _SPACES:
        raise ValueError(f"kernel must be 'fwd', 'bwd' or 'step'; got {kernel!r}")
    return kernel


def chunk_count(config: Mapping[str, Any], length: int) -> int:
    """Chunks of 32 * items_per_thread timesteps a (forward or backward) launch walks L in."""
    return -(-length // (32 * int(config["items_per_thread"])))


# H100, bf16, batch 8, dim 2048, L 4096, N 16 (probe, round 7): chunk 32 0.606 ms, 64 0.729, split 2
# 0.627 / 0.684, poly 1-2 slower (0.92-0.97: the loop is issue-bound, not exp-bound). Round 34 (B/C
# read as 16-byte vectors): chunk 16 0.572, 32 0.600 (fewer staged registers), split 4 0.91-1.03.
# Round 37 (softplus once per channel, shared by shuffles): split 2 chunk 8 0.534, chunk 16 0.560.
# Round 168 (B/C copied from pack_bc's fp32 rows by cp.async, nothing held in registers): chunk 8
# 0.517, 32 0.500, 64 0.499; poly 1 0.531; 256 threads 0.533, 64 threads 0.499. Round 206 (steps a
# sub-chunk, outputs identical): 8 0.499, 16 0.454, 32 0.467 (with z 0.551 / 0.508 / 0.516).
CHANNEL_DEFAULTS = {"split": 2, "chunk": 64, "poly": 0, "steps": 16}


def packed_states(n_states: int) -> int:
    """pack_bc's padded N: the row stride of the packed B/C the channel-layout kernels read."""
    return max(2, 1 << max(0, n_states - 1).bit_length())


def channel_shared_bytes(n_states: int, chunk: int) -> int:
    """Static shared memory of the channel-layout forward: two buffers of a chunk's packed B and C."""
    return 4 * 2 * chunk * 2 * packed_states(n_states)


def channel_default_chunk(n_states: int) -> int:
    """CHANNEL_DEFAULTS' chunk, halved until its two buffers fit the static shared memory (one
    barrier per chunk: at the H100 target 64 steps take 0.499 ms, 8 steps 0.517)."""
    chunk = CHANNEL_DEFAULTS["chunk"]
    while chunk > 8 and channel_shared_bytes(n_states, chunk) > _STATIC_SHARED_BYTES:
        chunk //= 2
    return chunk


def channel_default_steps(chunk: int) -> int:
    """CHANNEL_DEFAULTS' steps a sub-chunk, or fewer where the chunk is shorter (it must divide it)."""
    steps = CHANNEL_DEFAULTS["steps"]
    while chunk % steps:
        steps //= 2
    return steps


def bwd_shared_bytes(warps: int, n_states: int, items: int) -> int:
    """Static shared memory of the backward kernel: carries and dA per channel, dB/dC partials."""
    return 4 * (2 * warps * n_states + 2 * warps * 32 * (items + 1))


def bwd_channel_column_sums(n_states: int, split: int) -> tuple[int, int]:
    """(values a lane keeps, lanes that share them) after the channel backward's warp
    transpose-reduce of a step's 2 * N / split dB/dC terms (mirrors KgColumnSum in the .cu)."""
    values = 1 << max(0, 2 * (n_states // split) - 1).bit_length()
    stages = min((32 // split).bit_length() - 1, values.bit_length() - 1)
    return values >> stages, (32 // split) >> stages


def bwd_channel_shared_bytes(n_states: int, split: int, threads: int, steps: int) -> int:
    """Static shared memory of the channel-layout backward: a checkpoint segment of B/C (N padded
    as pack_bc pads it), the state entering each group of ``steps``, the segment's dt and dt * u
    and the group's dy per channel, and the warps' column sums."""
    n_pad = packed_states(n_states)
    left, _ = bwd_channel_column_sums(n_states, split)
    channels = threads // split
    return 4 * (CHECKPOINT_STEPS * 2 * n_pad + CHECKPOINT_STEPS // steps * (n_states // split) * threads
                + (2 * CHECKPOINT_STEPS + steps) * channels + steps * (threads // 32) * left * 32)


def bwd_channel_default_config(shape: Mapping[str, int]) -> dict:
    """The channel-layout backward's heuristic config (check it: large N may not fit)."""
    n_states = int(shape.get("N", 16))
    per_group = int(shape.get("dim", 1)) // max(1, int(shape.get("G", 1)))
    # At most 4 states a thread, so that 8 steps of them fit the 128 registers of occupancy 16.
    split = 1
    while split < 32 and n_states % (2 * split) == 0 and n_states // split > 4:
        split *= 2
    threads = 128
    while threads > 32 and threads // split > per_group:
        threads //= 2
    for steps, occupancy in ((8, 16), (4, 16), (8, 8), (4, 8), (2, 8)):
        if bwd_channel_registers(n_states, split, steps) <= BWD_CHANNEL_REGISTER_BUDGET[occupancy]:
            break
    while threads > 32 and bwd_channel_shared_bytes(n_states, split, threads, steps) > _STATIC_SHARED_BYTES:
        threads //= 2
    # Atomic block sums: H100, bf16, the shape, 2.21 ms against 2.31 with partials, whose
    # torch sum adds ~0.1 ms more (session 4, round 119); deterministic mode still gets partials.
    return {"layout": "channel", "threads": threads, "split": split, "steps": steps, "occupancy": occupancy,
            "block_sum": "atomic"}


def _is_pow2(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0 and value & (value - 1) == 0


def step_lanes_per_channel(n_states: int, states_per_lane: int) -> int:
    """Lanes that share one channel in the decode kernel (mirrors KgStepLayout in the .cu)."""
    need = -(-n_states // states_per_lane)
    return 32 if need >= 32 else 1 << (need - 1).bit_length()


def cuda_default_config(shape: Mapping[str, int], kernel: str | None = None) -> dict:
    """Heuristic config; ``kernel`` is "fwd", "bwd" or "step" (default: "fwd" when shape has L,
    else "step")."""
    kernel = _kernel_of(shape, kernel)
    if kernel == "bwd":
        per_group = int(shape.get("dim", 1)) // max(1, int(shape.get("G", 1)))
        warps = next(w for w in (4, 2, 1) if per_group % w == 0)
        items = 8 if int(shape.get("L", 4096)) >= 256 else 4
        while items > 4 and bwd_shared_bytes(warps, int(shape.get("N", 16)), items) > _STATIC_SHARED_BYTES:
            items //= 2
        return {"threads": 32 * warps, "items_per_thread": items, "occupancy": 8}
    if kernel == "step":
        n_states = int(shape.get("N", 16))
        return {"threads": 128, "items_per_thread": 4 if n_states % 4 == 0 and n_states <= 128 else
                (8 if n_states > 128 else 1)}
    n_states = int(shape.get("N", 16))
    per_group = int(shape.get("dim", 1)) // max(1, int(shape.get("G", 1)))
    channels = int(shape.get("batch", 1)) * int(shape.get("dim", 1))
    if channels >= 4096 and n_states <= 64:
        # Enough channels to give every scheduler a thread per channel: the channel layout (see
        # the .cu). Two threads per channel when the states halve (two warps per scheduler hide
        # what one leaves exposed of the exp unit's latency), more while a thread would hold
        # over 16 states; blocks no wider than a group.
        split = CHANNEL_DEFAULTS["split"] if n_states % CHANNEL_DEFAULTS["split"] == 0 and n_states >= 8 else 1
        while split < 32 and (n_states // split > 16 or n_states % split):
            split *= 2
        if n_states % split or n_states // split > MAX_STATES_PER_THREAD:
            return warp_fwd_default_config(shape)    # no power-of-two split fits (e.g. N = 17)
        threads = 128
        while threads > 32 and threads // split > per_group:
            threads //= 2
        chunk = channel_default_chunk(n_states)
        return {"layout": "channel", "threads": threads, "occupancy": 8, **CHANNEL_DEFAULTS, "split": split,
                "chunk": chunk, "steps": channel_default_steps(chunk)}
    return warp_fwd_default_config(shape)


def warp_fwd_default_config(shape: Mapping[str, int]) -> dict:
    """The warp-layout forward's heuristic config."""
    length = int(shape.get("L", 4096))
    n_states = int(shape.get("N", 16))
    channels = int(shape.get("batch", 1)) * int(shape.get("dim", 1))
    # One channel a block. With at least 2048 channels (~16 warps an SM), 16 steps a lane and one
    # state at a time: the tuner's pick at batch 2, dim 1536, L 2048 (0.155 ms against 0.247 for
    # 4 channels a block, 8 steps and two states interleaved, session 25). With fewer channels a
    # scheduler has few warps, so two states interleaved give each lane a second dependent chain
    # (B load, exps, lane scan, shuffles, replay) to hide latency with.
    if channels >= 2048 and length >= 256:
        items, unroll = 16, 1
    else:
        items, unroll = (8 if length >= 256 else 4), (2 if n_states % 2 == 0 else 1)
    return {"layout": "warp", "threads": 32, "items_per_thread": items, "state_unroll": unroll, "occupancy": 8}


def cuda_check_config(config: Mapping[str, Any], shape: Mapping[str, int], kernel: str | None = None) -> str | None:
    """Why ``config`` cannot run ``shape`` (keys batch, dim, L, N, G) on the CUDA backend, or None."""
    kernel = _kernel_of(shape, kernel)
    defaults = cuda_default_config(shape, kernel)
    threads = config.get("threads", defaults["threads"])
    items = config.get("items_per_thread", defaults.get("items_per_thread"))
    n_states, dim, groups = int(shape.get("N", 16)), int(shape.get("dim", 1)), int(shape.get("G", 1))
    if not isinstance(threads, int) or threads % 32 or not 32 <= threads <= 1024:
        return f"threads must be a multiple of 32 in [32, 1024]; got {threads!r}"
    if not 1 <= n_states <= MAX_STATES:
        return f"N must be in [1, {MAX_STATES}]; got {n_states}"
    if groups < 1 or dim % groups:
        return f"dim ({dim}) must be a multiple of the number of groups G ({groups})"
    if kernel == "bwd" and config.get("layout") == "channel":
        return _check_bwd_channel(config, shape)
    if kernel == "bwd":
        occupancy = config.get("occupancy", defaults["occupancy"])
        warps = threads // 32
        if not _is_pow2(items) or items > 16:
            return f"items_per_thread must be a power of two <= 16; got {items!r}"
        if occupancy not in (8, 16):
            return f"occupancy must be 8 or 16 warps per SM; got {occupancy!r}"
        if threads > 256:
            return f"the backward takes at most 256 threads (8 channels) a block; got {threads}"
        if (dim // groups) % warps:
            return (f"the backward's {warps} channels a block must divide the {dim // groups} channels "
                    "of a group (they sum dB/dC together)")
        smem = bwd_shared_bytes(warps, n_states, items)
        if smem > _STATIC_SHARED_BYTES:
            return f"backward needs {smem} bytes of shared memory (> {_STATIC_SHARED_BYTES}) at N={n_states}"
        return None
    if kernel == "step":
        if not _is_pow2(items) or items > 32:
            return f"items_per_thread (states per lane) must be a power of two <= 32; got {items!r}"
        return None
    layout = config.get("layout", "warp")   # configs from before the channel layout name none
    if layout == "warp":
        defaults = warp_fwd_default_config(shape)
    occupancy = config.get("occupancy", defaults["occupancy"])
    if occupancy not in CUDA_SPACE["occupancy"]:
        return f"occupancy must be 8, 12 or 16 warps per SM; got {occupancy!r}"
    if layout == "channel":
        split, poly = (config.get(k, CHANNEL_DEFAULTS[k]) for k in ("split", "poly"))
        chunk = config.get("chunk", channel_default_chunk(n_states))
        steps = config.get("steps", channel_default_steps(chunk) if isinstance(chunk, int) and chunk > 0 else 8)
        if not _is_pow2(split) or split > 32 or n_states % split:
            return f"split must be a power of two <= 32 dividing N={n_states}; got {split!r}"
        if n_states // split > MAX_STATES_PER_THREAD:
            return (f"N / split = {n_states // split} states per thread > {MAX_STATES_PER_THREAD}: "
                    "the thread's registers would spill")
        if threads % split:
            return f"threads ({threads}) must be a multiple of split ({split})"
        if not isinstance(chunk, int) or chunk % 8 or chunk <= 0:
            return f"chunk must be a positive multiple of 8; got {chunk!r}"
        if steps not in (8, 16, 32):
            return f"steps (a sub-chunk) must be 8, 16 or 32; got {steps!r}"
        if chunk % steps or CHECKPOINT_STEPS % steps:
            return f"steps ({steps}) must divide the chunk ({chunk}) and the checkpoint interval ({CHECKPOINT_STEPS})"
        if channel_shared_bytes(n_states, chunk) > _STATIC_SHARED_BYTES:
            return (f"chunk {chunk} at N={n_states} stages {channel_shared_bytes(n_states, chunk)} bytes of "
                    f"B/C (> {_STATIC_SHARED_BYTES})")
        if not isinstance(poly, int) or not 0 <= poly <= n_states // split:
            return f"poly must be in [0, N / split = {n_states // split}]; got {poly!r}"
        return None
    if layout != "warp":
        return f"layout must be 'warp' or 'channel'; got {layout!r}"
    unroll = config.get("state_unroll", defaults["state_unroll"])
    items = config.get("items_per_thread", defaults["items_per_thread"])
    if not _is_pow2(items) or items > 16:
        return f"items_per_thread must be a power of two <= 16; got {items!r}"
    if unroll not in (1, 2):
        return f"state_unroll must be 1 or 2; got {unroll!r}"
    if items * unroll > MAX_ITEMS_X_UNROLL:
        return (f"items_per_thread * state_unroll = {items * unroll} > {MAX_ITEMS_X_UNROLL}: "
                "the lane's registers would spill")
    return None


def _check_bwd_channel(config: Mapping[str, Any], shape: Mapping[str, int]) -> str | None:
    defaults = bwd_channel_default_config(shape)
    threads, split, steps, occupancy = (config.get(k, defaults[k]) for k in ("threads", "split", "steps", "occupancy"))
    n_states = int(shape.get("N", 16))
    if not _is_pow2(split) or split > 32 or n_states % split:
        return f"split must be a power of two <= 32 dividing N={n_states}; got {split!r}"
    if not _is_pow2(steps) or CHECKPOINT_STEPS % steps or steps < 2:
        return f"steps must be a power of two in [2, {CHECKPOINT_STEPS}]; got {steps!r}"
    if occupancy not in (8, 16):
        return f"occupancy must be 8 or 16 warps per SM; got {occupancy!r}"
    registers = bwd_channel_registers(n_states, split, steps)
    if registers > BWD_CHANNEL_REGISTER_BUDGET[occupancy]:
        return (f"~{registers} registers of per-thread arrays at steps={steps}, N / split = {n_states // split} "
                f"(> {BWD_CHANNEL_REGISTER_BUDGET[occupancy]} at occupancy {occupancy}) would spill")
    if threads > 512:
        return f"the channel backward takes at most 512 threads a block; got {threads}"
    if config.get("block_sum", "partials") not in ("partials", "atomic"):
        return f"block_sum must be 'partials' or 'atomic'; got {config.get('block_sum')!r}"
    smem = bwd_channel_shared_bytes(n_states, split, threads, steps)
    if smem > _STATIC_SHARED_BYTES:
        return (f"channel backward needs {smem} bytes of shared memory (> {_STATIC_SHARED_BYTES}) at "
                f"N={n_states}, threads={threads}, split={split}, steps={steps}")
    return None


_BWD_LAYOUT_KEYS = {"warp": tuple(CUDA_BWD_SPACE), "channel": tuple(CUDA_BWD_CHANNEL_SPACE)}


def cuda_canonical(config: Mapping[str, Any], kernel: str = "fwd") -> dict:
    """Only the keys the CUDA ``kernel`` ("fwd", "bwd", "step") reads (so equal launches compare equal)."""
    keys = _SPACES[kernel]
    if kernel == "fwd":
        keys = _FWD_LAYOUT_KEYS[config.get("layout", "warp") if config.get("layout") in _FWD_LAYOUT_KEYS else "warp"]
    elif kernel == "bwd":
        keys = _BWD_LAYOUT_KEYS["channel" if config.get("layout") == "channel" else "warp"]
    return {k: config[k] for k in keys if k in config}


# --- name expressions -----------------------------------------------------------------------

def _type_name(dtype: torch.dtype, what: str) -> str:
    try:
        return _TYPE_NAMES[dtype]
    except KeyError:
        raise TypeError(f"{what} must be float32, float16 or bfloat16 for the CUDA backend; got {dtype}") from None


def _cpp_bool(value: bool) -> str:
    """A template argument's spelling of a Python bool."""
    return "true" if value else "false"


def fwd_name_expression(in_dtype: torch.dtype, bc_dtype: torch.dtype, n_states: int, warps: int,
                        items: int, unroll: int, occupancy: int = 8, aligned: bool = True) -> str:
    """``aligned``: every row of u, delta, z, out, B and C starts on a 16-byte boundary (`rows_aligned`);
    else runs are read and written as shifted aligned vectors."""
    min_blocks = max(1, occupancy // warps)   # __launch_bounds__'s minimum blocks per SM
    return (f"selective_scan_fwd_kernel<{_type_name(in_dtype, 'u')}, {_type_name(bc_dtype, 'B')}, "
            f"{n_states}, {warps}, {items}, {unroll}, {min_blocks}, {_cpp_bool(aligned)}>")


def fwd_channel_name_expression(in_dtype: torch.dtype, n_states: int, split: int, threads: int, chunk: int,
                                poly: int, occupancy: int = 8, steps: int = 8, softplus: bool = True,
                                aligned: bool = True) -> str:
    """The channel-layout forward reads B/C packed to fp32 (pack_bc), so only u's type is a parameter;
    softplus is a template flag (no branch around the steps' dt), and so is whether every row is
    16-byte aligned (`rows_aligned`; else rows are read and written as shifted aligned vectors)."""
    min_blocks = max(1, occupancy // (threads // 32))
    return (f"selective_scan_fwd_channel_kernel<{_type_name(in_dtype, 'u')}, "
            f"{n_states}, {split}, {threads}, {chunk}, {steps}, {poly}, {min_blocks}, "
            f"{_cpp_bool(softplus)}, {_cpp_bool(aligned)}>")


def rows_aligned(length: int, *tensors: torch.Tensor | None) -> bool:
    """Whether every row of these contiguous [..., L] tensors starts on a 16-byte boundary."""
    return all(t is None or (t.data_ptr() % 16 == 0 and length * t.element_size() % 16 == 0) for t in tensors)


def bwd_name_expression(in_dtype: torch.dtype, bc_dtype: torch.dtype, n_states: int, warps: int,
                        items: int, occupancy: int = 8) -> str:
    min_blocks = max(1, occupancy // warps)
    return (f"selective_scan_bwd_kernel<{_type_name(in_dtype, 'u')}, {_type_name(bc_dtype, 'B')}, "
            f"{n_states}, {warps}, {items}, {min_blocks}>")


def bwd_channel_name_expression(in_dtype: torch.dtype, n_states: int, split: int, threads: int, steps: int,
                                occupancy: int = 8) -> str:
    min_blocks = max(1, occupancy // (threads // 32))
    return (f"selective_scan_bwd_channel_kernel<{_type_name(in_dtype, 'u')}, {n_states}, {split}, {threads}, "
            f"{steps}, {min_blocks}>")


def step_name_expression(in_dtype: torch.dtype, bc_dtype: torch.dtype, n_states: int, threads: int,
                         states_per_lane: int) -> str:
    return (f"selective_state_update_kernel<{_type_name(in_dtype, 'x')}, {_type_name(bc_dtype, 'B')}, "
            f"{n_states}, {threads}, {states_per_lane}>")


# --- launchers ----------------------------------------------------------------------------------

def _require(name: str, tensor: torch.Tensor | None, dtype: torch.dtype | None = None) -> None:
    if tensor is None:
        return
    if not tensor.is_contiguous():
        raise ValueError(f"{name} must be contiguous for the CUDA backend; got strides {tuple(tensor.stride())}")
    if dtype is not None and tensor.dtype != dtype:
        want, found = (str(t).replace("torch.", "") for t in (dtype, tensor.dtype))
        raise TypeError(f"{name} must be {want}; got {found}")


def selective_scan_fwd_cuda(config: Mapping[str, Any], u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                            B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
                            delta_bias: torch.Tensor | None, delta_softplus: bool,
                            initial_state: torch.Tensor | None, out: torch.Tensor,
                            last_state: torch.Tensor | None, chunk_states: torch.Tensor | None = None,
                            checkpoints: torch.Tensor | None = None, BC: torch.Tensor | None = None) -> None:
    """y = selective scan of u (see module docstring) into ``out``; final state into ``last_state``;
    the state entering each chunk into ``chunk_states`` when given (warp layout), and every
    CHECKPOINT_STEPS-th state into ``checkpoints`` (either layout; the channel and Triton backwards'
    input). The channel layout reads B and C packed by ``selective_scan.pack_bc`` (``BC``, packed
    here when not given)."""
    batch, dim, length = u.shape
    groups, n_states = (B.shape[1], B.shape[2]) if B.dim() == 4 else (1, B.shape[1])
    for name, tensor in (("u", u), ("delta", delta), ("z", z), ("out", out)):
        _require(name, tensor, u.dtype)
    for name, tensor in (("A", A), ("D", D), ("delta_bias", delta_bias), ("initial_state", initial_state),
                         ("last_state", last_state)):
        _require(name, tensor, torch.float32)
    _require("B", B)
    _require("C", C, B.dtype)
    if batch == 0 or dim == 0:
        return
    shape = {"batch": batch, "dim": dim, "L": length, "N": n_states, "G": groups}
    layout = config.get("layout", "warp")   # configs from before the channel layout name none
    if layout == "channel":
        if chunk_states is not None:
            raise ValueError("the channel layout writes checkpoints (keyword checkpoints), not chunk_states")
        if BC is None:
            from .selective_scan import pack_bc   # (that module imports this one)
            BC = pack_bc(B if B.dim() == 4 else B.unsqueeze(1), C if C.dim() == 4 else C.unsqueeze(1),
                         packed_states(n_states))
        _launch_fwd_channel(config, shape, u, delta, A, BC, D, z, delta_bias, delta_softplus,
                            initial_state, out, last_state, checkpoints)
        return
    if layout != "warp":
        raise ValueError(f"layout must be 'warp' or 'channel'; got {layout!r}")
    defaults = warp_fwd_default_config(shape)
    threads = int(config.get("threads", defaults["threads"]))
    items = int(config.get("items_per_thread", defaults["items_per_thread"]))
    unroll = int(config.get("state_unroll", defaults["state_unroll"]))
    occupancy = int(config.get("occupancy", defaults["occupancy"]))
    warps = threads // 32
    if chunk_states is not None:
        _check_chunk_states(chunk_states, (batch, dim, chunk_count({"items_per_thread": items}, length), n_states))
    ckpt_steps = _checkpoint_steps(checkpoints, shape)
    if ckpt_steps % items:   # each checkpoint is the start state of some lane
        raise ValueError(f"checkpoints need items_per_thread dividing {ckpt_steps}; got {items}")
    expression = fwd_name_expression(u.dtype, B.dtype, n_states, warps, items, unroll, occupancy,
                                     rows_aligned(length, u, delta, z, out, B, C))
    grid = (batch * math.ceil(dim / warps),)
    p, i = cuda_jit.pointer, cuda_jit.i32
    args = (p(u), p(delta), p(A), p(B), p(C), p(D), p(z), p(delta_bias), p(initial_state), p(out),
            p(last_state), p(chunk_states), p(checkpoints), i(dim), i(length), i(groups),
            i(int(bool(delta_softplus))), i(ckpt_steps))
    cuda_jit.launch(SOURCE, expression, grid, (threads,), args, device=u.device)


@functools.lru_cache(maxsize=1024)
def _channel_launch_config(config_items: tuple, shape_items: tuple) -> tuple[dict, str | None]:
    """The channel layout's full config for a call (missing keys from the defaults) and why it
    cannot run, if so. Cached: the op calls this on every forward with the same few keys."""
    config, shape = dict(config_items), dict(shape_items)
    defaults = cuda_default_config(shape, "fwd")
    if defaults["layout"] != "channel":
        chunk = channel_default_chunk(shape["N"])
        defaults = {"threads": 128, "occupancy": 8, **CHANNEL_DEFAULTS, "chunk": chunk,
                    "steps": channel_default_steps(chunk)}
    given = config
    config = {k: given.get(k, defaults[k]) for k in ("threads", "occupancy", "split", "chunk", "poly")}
    # A config without steps (partial, or stored before the knob) takes the default that divides
    # its chunk, as cuda_check_config assumes.
    chunk = config["chunk"]
    config["steps"] = given.get("steps", channel_default_steps(chunk) if isinstance(chunk, int) and chunk > 0 else 8)
    return config, cuda_check_config({**config, "layout": "channel"}, shape, "fwd")


def _launch_fwd_channel(config, shape, u, delta, A, BC, D, z, delta_bias, delta_softplus,
                        initial_state, out, last_state, checkpoints) -> None:
    batch, dim, length, n_states, groups = (shape[k] for k in ("batch", "dim", "L", "N", "G"))
    l_pad, broadcast = _check_packed_bc(BC, batch, groups, n_states, length)
    config, reason = _channel_launch_config(tuple(sorted(config.items())), tuple(sorted(shape.items())))
    if reason is not None:
        raise ValueError(f"selective_scan_fwd_cuda: config {config} cannot run {shape}: {reason}")
    ckpt_steps = _checkpoint_steps(checkpoints, shape)
    threads = int(config["threads"])
    channels_per_block = threads // int(config["split"])
    grid = (batch * groups * math.ceil(dim // groups / channels_per_block),)
    expression = fwd_channel_name_expression(u.dtype, n_states, int(config["split"]), threads,
                                             int(config["chunk"]), int(config["poly"]), int(config["occupancy"]),
                                             int(config["steps"]), bool(delta_softplus),
                                             rows_aligned(length, u, delta, z, out))
    p, i = cuda_jit.pointer, cuda_jit.i32
    args = (p(u), p(delta), p(A), p(BC), p(D), p(z), p(delta_bias), p(initial_state), p(out),
            p(last_state), p(checkpoints), i(dim), i(length), i(groups), i(l_pad), i(int(broadcast)),
            i(ckpt_steps))
    cuda_jit.launch(SOURCE, expression, grid, (threads,), args, device=u.device)


def _check_packed_bc(BC: torch.Tensor, batch: int, groups: int, n_states: int, length: int) -> tuple[int, bool]:
    """(l_pad, broadcast over the batch) of pack_bc's fp32 [batch, G, L_pad, 2, N_pad], or ValueError."""
    want_pad = packed_states(n_states)
    if BC.dim() != 5 or BC.dtype != torch.float32 or BC.shape[4] != want_pad or BC.shape[3] != 2 \
            or BC.shape[2] % CHECKPOINT_STEPS or BC.shape[2] < length or BC.shape[0] != batch or BC.shape[1] != groups:
        raise ValueError(f"BC must be pack_bc's fp32 [batch={batch}, G={groups}, L_pad, 2, {want_pad}] with L_pad a "
                         f"multiple of {CHECKPOINT_STEPS} >= L={length}; got {BC.dtype} {list(BC.shape)}")
    if batch and (not BC[0].is_contiguous() or BC.stride(0) not in (0, BC[0].numel()) or BC.data_ptr() % 16):
        raise ValueError(f"BC must be contiguous (or broadcast over the batch) and 16-byte aligned; got strides "
                         f"{tuple(BC.stride())}")
    return BC.shape[2], batch > 1 and BC.stride(0) == 0


def _checkpoint_steps(checkpoints: torch.Tensor | None, shape: Mapping[str, int]) -> int:
    """The forward kernels' ckpt_steps argument: CHECKPOINT_STEPS when ``checkpoints`` (fp32
    [batch, dim, ceil(L / CHECKPOINT_STEPS), N], contiguous) is given, else 0."""
    if checkpoints is None:
        return 0
    _require("checkpoints", checkpoints, torch.float32)
    expected = (shape["batch"], shape["dim"], -(-shape["L"] // CHECKPOINT_STEPS), shape["N"])
    if tuple(checkpoints.shape) != expected:
        raise ValueError(f"checkpoints must be [batch, dim, ceil(L / {CHECKPOINT_STEPS}), N] = {list(expected)}; "
                         f"got {list(checkpoints.shape)}")
    return CHECKPOINT_STEPS


def _check_chunk_states(chunk_states: torch.Tensor, expected: tuple[int, ...]) -> None:
    _require("chunk_states", chunk_states, torch.float32)
    if tuple(chunk_states.shape) != expected:
        raise ValueError(f"chunk_states must be [batch, dim, chunks, N] = {list(expected)} for this "
                         f"items_per_thread; got {list(chunk_states.shape)}")


def selective_scan_bwd_cuda(config: Mapping[str, Any], u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                            B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
                            delta_bias: torch.Tensor | None, delta_softplus: bool,
                            initial_state: torch.Tensor | None, dout: torch.Tensor,
                            dlast_state: torch.Tensor | None, du: torch.Tensor, ddelta: torch.Tensor,
                            dA: torch.Tensor, dB: torch.Tensor, dC: torch.Tensor, dD: torch.Tensor | None,
                            dz: torch.Tensor | None, ddelta_bias: torch.Tensor | None,
                            dinitial_state: torch.Tensor | None, chunk_states: torch.Tensor | None = None) -> None:
    """Gradients of the selective scan (see module docstring), written into the given tensors."""
    batch, dim, length = u.shape
    groups, n_states = (B.shape[1], B.shape[2]) if B.dim() == 4 else (1, B.shape[1])
    for name, tensor in (("u", u), ("delta", delta), ("z", z), ("dout", dout), ("du", du), ("ddelta", ddelta),
                         ("dz", dz)):
        _require(name, tensor, u.dtype)
    for name, tensor in (("A", A), ("D", D), ("delta_bias", delta_bias), ("initial_state", initial_state),
                         ("dlast_state", dlast_state), ("dA", dA), ("dD", dD), ("ddelta_bias", ddelta_bias),
                         ("dinitial_state", dinitial_state)):
        _require(name, tensor, torch.float32)
    _require("B", B)
    _require("C", C, B.dtype)
    for name, grad, like in (("dB", dB, B), ("dC", dC, C)):
        if grad.shape != like.shape:
            raise ValueError(f"{name} must have {name[1:]}'s shape {list(like.shape)}; got {list(grad.shape)}")
    shape = {"batch": batch, "dim": dim, "L": length, "N": n_states, "G": groups}
    defaults = cuda_default_config(shape, "bwd")
    config = {k: config.get(k, v) for k, v in defaults.items()}
    reason = cuda_check_config(config, shape, "bwd")
    if reason is not None:
        raise ValueError(f"selective_scan_bwd_cuda: config {config} cannot run {shape}: {reason}")
    dA.zero_()
    for grad in (dD, ddelta_bias):
        if grad is not None:
            grad.zero_()
    if batch == 0 or dim == 0:
        dB.zero_()
        dC.zero_()
        return
    # dB, dC are sums of fp32 atomics: accumulate in fp32, copy out when the caller wants another dtype.
    dB_acc = dB.zero_() if dB.dtype == torch.float32 and dB.is_contiguous() else torch.zeros(B.shape, device=B.device)
    dC_acc = dC.zero_() if dC.dtype == torch.float32 and dC.is_contiguous() else torch.zeros(C.shape, device=C.device)
    if z is not None and dz is None:
        dz = torch.empty_like(z)
    warps, items = config["threads"] // 32, config["items_per_thread"]
    chunks = chunk_count(config, length)
    have_states = chunk_states is not None
    if have_states:
        _check_chunk_states(chunk_states, (batch, dim, chunks, n_states))
    else:
        chunk_states = torch.empty(batch, dim, chunks, n_states, device=u.device)
    expression = bwd_name_expression(u.dtype, B.dtype, n_states, warps, items, config["occupancy"])
    p, i = cuda_jit.pointer, cuda_jit.i32
    args = (p(u), p(delta), p(A), p(B), p(C), p(D), p(z), p(delta_bias), p(initial_state), p(dout), p(dlast_state),
            p(chunk_states), p(du), p(ddelta), p(dA), p(dB_acc), p(dC_acc), p(dD), p(dz), p(ddelta_bias),
            p(dinitial_state), i(dim), i(length), i(groups), i(int(bool(delta_softplus))), i(int(have_states)))
    cuda_jit.launch(SOURCE, expression, (batch * dim // warps,), (config["threads"],), args, device=u.device)
    if dB_acc is not dB:
        dB.copy_(dB_acc)
    if dC_acc is not dC:
        dC.copy_(dC_acc)


@functools.lru_cache(maxsize=1024)
def _bwd_channel_launch_config(config_items: tuple, shape_items: tuple) -> tuple[dict, str | None]:
    """The channel backward's full config for a call and why it cannot run, if so (cached)."""
    config, shape = dict(config_items), dict(shape_items)
    defaults = bwd_channel_default_config(shape)
    config = {k: config.get(k, defaults[k]) for k in CUDA_BWD_CHANNEL_SPACE}
    return config, cuda_check_config(config, shape, "bwd")


def _bwd_channel_key(config: Mapping[str, Any], shape: Mapping[str, int]) -> tuple[tuple, tuple]:
    return (tuple(sorted(cuda_canonical({**config, "layout": "channel"}, "bwd").items())),
            tuple(sorted(shape.items())))


def bwd_channel_problem(config: Mapping[str, Any], shape: Mapping[str, int]) -> str | None:
    """Why the channel backward cannot run ``config`` on ``shape`` (keys batch, dim, L, N, G), or
    None; cached, for the per-call dispatch."""
    return _bwd_channel_launch_config(*_bwd_channel_key(config, shape))[1]


def selective_scan_bwd_channel_cuda(config: Mapping[str, Any], u: torch.Tensor, delta: torch.Tensor,
                                    A: torch.Tensor, BC: torch.Tensor, n_states: int, D: torch.Tensor | None,
                                    z: torch.Tensor | None, delta_bias: torch.Tensor | None, delta_softplus: bool,
                                    checkpoints: torch.Tensor, dout: torch.Tensor, dlast: torch.Tensor | None,
                                    du: torch.Tensor, ddelta: torch.Tensor, dz: torch.Tensor | None,
                                    want_dinitial: bool) -> dict[str, Any]:
    """The channel-layout backward; the Triton backward's contract (selective_scan_bwd_triton).

    u, delta, dout, du, ddelta (and z, dz) [batch, dim, L] contiguous, one dtype; A [dim, N],
    D, delta_bias [dim], dlast [batch, dim, N] fp32 contiguous; BC pack_bc's fp32
    [batch, G, L_pad, 2, N_pad] (a stride-0 batch is fine); checkpoints the forward's fp32
    [batch, dim, ceil(L / CHECKPOINT_STEPS), N]. Writes du, ddelta (and dz); returns dA [dim, N],
    dBC fp32 [batch, G, L_pad / steps, N, 2, steps] (dB and dC, see selective_scan.unpack_dbc; a view),
    dD, ddelta_bias [dim] and dinitial_state [batch, dim, N] (None unless asked), all fp32.
    Channel sums (config ``block_sum``): fp32 atomics into one buffer, or per-block partials added
    here by torch (deterministic; always so under torch.use_deterministic_algorithms)."""
    batch, dim, length = u.shape
    groups, l_pad, n_pad = BC.shape[1], BC.shape[2], BC.shape[4]
    for name, tensor in (("u", u), ("delta", delta), ("z", z), ("dout", dout), ("du", du), ("ddelta", ddelta),
                         ("dz", dz)):
        _require(name, tensor, u.dtype)
    for name, tensor in (("A", A), ("D", D), ("delta_bias", delta_bias), ("dlast", dlast),
                         ("checkpoints", checkpoints)):
        _require(name, tensor, torch.float32)
    if z is not None and dz is None:
        raise ValueError("dz must be given when z is")
    _check_packed_bc(BC, batch, groups, n_states, length)
    n_ckpt = -(-length // CHECKPOINT_STEPS)
    if tuple(checkpoints.shape) != (batch, dim, n_ckpt, n_states):
        raise ValueError(f"checkpoints must be [batch, dim, ceil(L / {CHECKPOINT_STEPS}), N] = "
                         f"{[batch, dim, n_ckpt, n_states]}; got {list(checkpoints.shape)}")
    shape = {"batch": batch, "dim": dim, "L": length, "N": n_states, "G": groups}
    config, reason = _bwd_channel_launch_config(*_bwd_channel_key(config, shape))
    if reason is not None:
        raise ValueError(f"selective_scan_bwd_channel_cuda: config {config} cannot run {shape}: {reason}")
    threads, split, steps = config["threads"], config["split"], config["steps"]
    blocks_per_group = -(-(dim // groups) // (threads // split))
    # torch.use_deterministic_algorithms(True) asks for bitwise-reproducible gradients: partials
    atomic = config["block_sum"] == "atomic" and not torch.are_deterministic_algorithms_enabled()
    f32 = dict(device=u.device, dtype=torch.float32)
    if atomic:
        dBC_part = torch.zeros(batch, groups, 1, l_pad // steps, steps, 2, n_states, **f32)
    else:
        dBC_part = torch.empty(batch, groups, blocks_per_group, l_pad // steps, steps, 2, n_states, **f32)
    dA_part = torch.empty(batch, dim, n_states, **f32)
    dD_part = torch.empty(batch, dim, **f32) if D is not None else None
    dbias_part = torch.empty(batch, dim, **f32) if delta_bias is not None else None
    dh0 = torch.empty(batch, dim, n_states, **f32) if want_dinitial else None
    if batch and dim:
        expression = bwd_channel_name_expression(u.dtype, n_states, split, threads, steps, config["occupancy"])
        p, i = cuda_jit.pointer, cuda_jit.i32
        args = (p(u), p(delta), p(A), p(BC), p(D), p(z), p(delta_bias), p(checkpoints), p(dout), p(dlast), p(du),
                p(ddelta), p(dz), p(dBC_part), p(dA_part), p(dD_part), p(dbias_part), p(dh0), i(dim), i(length),
                i(l_pad), i(groups), i(int(batch > 1 and BC.stride(0) == 0)), i(int(bool(delta_softplus))),
                i(int(atomic)))
        cuda_jit.launch(SOURCE, expression, (batch * groups * blocks_per_group,), (threads,), args, device=u.device)
    # Sums over channel blocks (partials) and the batch: separate passes, deterministic.
    dBC = dBC_part.sum(2) if dBC_part.shape[2] > 1 else dBC_part[:, :, 0]     # [batch, G, chunks, steps, 2, N]
    return {"dA": dA_part.sum(0), "dBC": dBC.permute(0, 1, 2, 5, 4, 3),      # unpack_dbc's order
            "dD": dD_part.sum(0) if dD_part is not None else None,
            "ddelta_bias": dbias_part.sum(0) if dbias_part is not None else None, "dinitial_state": dh0}


def selective_state_update_cuda(config: Mapping[str, Any], state: torch.Tensor, x: torch.Tensor,
                                dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                                D: torch.Tensor | None, z: torch.Tensor | None, dt_bias: torch.Tensor | None,
                                dt_softplus: bool, out: torch.Tensor) -> None:
    """One decode step: ``state`` updated in place, y written to ``out`` [batch, dim]."""
    batch, dim, n_states = state.shape
    groups = B.shape[1] if B.dim() == 3 else 1
    for name, tensor in (("x", x), ("dt", dt), ("z", z), ("out", out)):
        _require(name, tensor, x.dtype)
    for name, tensor in (("state", state), ("A", A), ("D", D), ("dt_bias", dt_bias)):
        _require(name, tensor, torch.float32)
    _require("B", B)
    _require("C", C, B.dtype)
    if batch == 0 or dim == 0:
        return
    defaults = cuda_default_config({"batch": batch, "dim": dim, "N": n_states, "G": groups}, "step")
    threads = int(config.get("threads", defaults["threads"]))
    states_per_lane = int(config.get("items_per_thread", defaults["items_per_thread"]))
    channels_per_block = threads // step_lanes_per_channel(n_states, states_per_lane)
    expression = step_name_expression(x.dtype, B.dtype, n_states, threads, states_per_lane)
    grid = (math.ceil(batch * dim / channels_per_block),)
    vec_ok = state.data_ptr() % 16 == 0 and A.data_ptr() % 16 == 0
    p, i = cuda_jit.pointer, cuda_jit.i32
    args = (p(state), p(x), p(dt), p(A), p(B), p(C), p(D), p(z), p(dt_bias), p(out),
            i(batch), i(dim), i(groups), i(int(bool(dt_softplus))), i(int(vec_ok)))
    cuda_jit.launch(SOURCE, expression, grid, (threads,), args, device=state.device)
