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
    selective_state_update_cuda(config, state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, out)
        state [batch, dim, N] fp32 updated in place; x, dt, z [batch, dim]; B, C [batch, G, N];
        writes out [batch, dim].

Config keys. Forward (``CUDA_SPACE``): ``threads`` per block (32 per channel: one warp owns a
channel), ``items_per_thread`` consecutive timesteps per lane (chunk = 32 * items),
``state_unroll`` (1 or 2 states in flight) and ``occupancy``, the warps per SM the register
allocation must leave room for (8: no cap, no spills; 16: at most 128 registers). Backward
(``CUDA_BWD_SPACE``): the same keys but no unroll; its warps must divide dim / G (a block's
channels share one group, whose dB/dC they sum in shared memory). Decode step
(``CUDA_STEP_SPACE``): ``threads`` per block and ``items_per_thread`` consecutive states per
lane. Unknown keys (the backend, Triton parameters) are ignored; missing ones take the
heuristic default. ``cuda_check_config``/``cuda_default_config`` take ``kernel`` = "fwd",
"bwd" or "step" (left out: "fwd" when the shape has L, else "step").
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import torch

from kernelgen import cuda_jit

SOURCE = cuda_jit.CudaSource(Path(__file__).with_name("selective_scan.cu"))

CUDA_SPACE: dict[str, list] = {
    "threads": [32, 64, 128, 256],
    "items_per_thread": [4, 8, 16],
    "state_unroll": [1, 2],
    "occupancy": [8, 16],
}
CUDA_BWD_SPACE: dict[str, list] = {
    "threads": [32, 64, 128, 256],
    "items_per_thread": [4, 8, 16],
    "occupancy": [8, 16],
}
CUDA_STEP_SPACE: dict[str, list] = {
    "threads": [64, 128, 256, 512],
    "items_per_thread": [1, 2, 4, 8, 16],
}
MAX_STATES = 256
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


def bwd_shared_bytes(warps: int, n_states: int, items: int) -> int:
    """Static shared memory of the backward kernel: carries and dA per channel, dB/dC partials."""
    return 4 * (2 * warps * n_states + 2 * warps * 32 * (items + 1))


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
    length = int(shape.get("L", 4096))
    # Per state a lane runs a dependent chain (B load, exps, lane scan, 5 shuffle levels, replay):
    # ~600 cycles for ~160 instructions at 16 items, so a scheduler needs several chains in
    # flight. 8 items x 2 states interleaved fits 103 registers (sm_90 ptxas: 16 warps/SM, 32
    # chains) where 16 items x 1 needs 140 (12 warps/SM, 12 chains); the tuner checks the trade.
    items = 8 if length >= 256 else 4
    unroll = 2 if int(shape.get("N", 16)) % 2 == 0 else 1
    channels = int(shape.get("batch", 1)) * int(shape.get("dim", 1))
    # Four channels per block when there are enough to fill every SM several times over.
    threads = 128 if channels >= 2048 else 32
    return {"threads": threads, "items_per_thread": items, "state_unroll": unroll, "occupancy": 8}


def cuda_check_config(config: Mapping[str, Any], shape: Mapping[str, int], kernel: str | None = None) -> str | None:
    """Why ``config`` cannot run ``shape`` (keys batch, dim, L, N, G) on the CUDA backend, or None."""
    kernel = _kernel_of(shape, kernel)
    defaults = cuda_default_config(shape, kernel)
    threads = config.get("threads", defaults["threads"])
    items = config.get("items_per_thread", defaults["items_per_thread"])
    n_states, dim, groups = int(shape.get("N", 16)), int(shape.get("dim", 1)), int(shape.get("G", 1))
    if not isinstance(threads, int) or threads % 32 or not 32 <= threads <= 1024:
        return f"threads must be a multiple of 32 in [32, 1024]; got {threads!r}"
    if not 1 <= n_states <= MAX_STATES:
        return f"N must be in [1, {MAX_STATES}]; got {n_states}"
    if groups < 1 or dim % groups:
        return f"dim ({dim}) must be a multiple of the number of groups G ({groups})"
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
    unroll = config.get("state_unroll", defaults["state_unroll"])
    if not _is_pow2(items) or items > 16:
        return f"items_per_thread must be a power of two <= 16; got {items!r}"
    if unroll not in (1, 2):
        return f"state_unroll must be 1 or 2; got {unroll!r}"
    occupancy = config.get("occupancy", defaults["occupancy"])
    if occupancy not in (8, 16):
        return f"occupancy must be 8 or 16 warps per SM; got {occupancy!r}"
    if items * unroll > MAX_ITEMS_X_UNROLL:
        return (f"items_per_thread * state_unroll = {items * unroll} > {MAX_ITEMS_X_UNROLL}: "
                "the lane's registers would spill")
    return None


def cuda_canonical(config: Mapping[str, Any], kernel: str = "fwd") -> dict:
    """Only the keys the CUDA ``kernel`` ("fwd", "bwd", "step") reads (so equal launches compare equal)."""
    return {k: config[k] for k in _SPACES[kernel] if k in config}


# --- name expressions -----------------------------------------------------------------------

def _type_name(dtype: torch.dtype, what: str) -> str:
    try:
        return _TYPE_NAMES[dtype]
    except KeyError:
        raise TypeError(f"{what} must be float32, float16 or bfloat16 for the CUDA backend; got {dtype}") from None


def fwd_name_expression(in_dtype: torch.dtype, bc_dtype: torch.dtype, n_states: int, warps: int,
                        items: int, unroll: int, occupancy: int = 8) -> str:
    min_blocks = max(1, occupancy // warps)   # __launch_bounds__'s minimum blocks per SM
    return (f"selective_scan_fwd_kernel<{_type_name(in_dtype, 'u')}, {_type_name(bc_dtype, 'B')}, "
            f"{n_states}, {warps}, {items}, {unroll}, {min_blocks}>")


def bwd_name_expression(in_dtype: torch.dtype, bc_dtype: torch.dtype, n_states: int, warps: int,
                        items: int, occupancy: int = 8) -> str:
    min_blocks = max(1, occupancy // warps)
    return (f"selective_scan_bwd_kernel<{_type_name(in_dtype, 'u')}, {_type_name(bc_dtype, 'B')}, "
            f"{n_states}, {warps}, {items}, {min_blocks}>")


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
                            last_state: torch.Tensor | None, chunk_states: torch.Tensor | None = None) -> None:
    """y = selective scan of u (see module docstring) into ``out``; final state into ``last_state``;
    the state entering each chunk into ``chunk_states`` when given."""
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
    defaults = cuda_default_config({"batch": batch, "dim": dim, "L": length, "N": n_states, "G": groups}, "fwd")
    threads = int(config.get("threads", defaults["threads"]))
    items = int(config.get("items_per_thread", defaults["items_per_thread"]))
    unroll = int(config.get("state_unroll", defaults["state_unroll"]))
    occupancy = int(config.get("occupancy", defaults["occupancy"]))
    warps = threads // 32
    if chunk_states is not None:
        _check_chunk_states(chunk_states, (batch, dim, chunk_count({"items_per_thread": items}, length), n_states))
    expression = fwd_name_expression(u.dtype, B.dtype, n_states, warps, items, unroll, occupancy)
    grid = (batch * math.ceil(dim / warps),)
    p, i = cuda_jit.pointer, cuda_jit.i32
    args = (p(u), p(delta), p(A), p(B), p(C), p(D), p(z), p(delta_bias), p(initial_state), p(out),
            p(last_state), p(chunk_states), i(dim), i(length), i(groups), i(int(bool(delta_softplus))))
    cuda_jit.launch(SOURCE, expression, grid, (threads,), args, device=u.device)


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
