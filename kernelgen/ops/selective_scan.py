"""Mamba selective scan: argument checks, autograd, dispatch. Drop-in for mamba-ssm's
``selective_scan_fn`` and ``selective_state_update``.

    δ_t = softplus?(delta_t + delta_bias);  h_t = exp(δ_t·A)·h_{t-1} + δ_t·B_t·u_t
    y_t = C_t·h_t + D·u_t  (then · silu(z_t))

Kernels and their search spaces: templates/selective_scan.py (Triton) and selective_scan_cuda.py
(CUDA). The forward's config picks the backend; training mode always runs the Triton forward,
because it also saves the state every CHECKPOINT_STEPS steps for the backward.

Dtypes: u, delta and z share one dtype (fp32, fp16 or bf16; they are full activations, so a silent
cast would copy them). A, D, delta_bias and initial_state may be fp32, fp16 or bf16: they are cast to
fp32 (mamba-ssm requires fp32 for them; casting a [dim, N] parameter costs nothing and autograd
casts the gradient back). B and C may be fp32, fp16 or bf16 (they are packed to fp32 anyway).
Complex weights (mamba-ssm's complex64 ``wtype``): a complex A selects the complex mode, which runs
in plain PyTorch (kernelgen/ops/selective_scan_complex.py; its docstring gives the conventions).
The decode step is real-only.

B and C of the scan may also be "constant" ([dim, N]: one row per channel, the same at every batch
row and step, as mamba-ssm's non-variable B/C). The kernels share B_t, C_t between the channels of
a group and step through a packed fp32 [batch, G, L, 2, N] copy of them, so a constant operand
is run as dim groups of one channel: see :func:`_per_channel` for the memory this costs.
"""
from __future__ import annotations

import math

import torch
from torch.autograd.graph import increment_version

from kernelgen.checks import check_float, check_same_device, check_shape, shape_str
from kernelgen.grid import MAX_GRID_YZ, grid_groups
from kernelgen.dispatch import config_for
from kernelgen.ops import eager_op, first_order
from kernelgen.ops.selective_scan_complex import check_complex_scan_args, selective_scan_complex
from kernelgen.templates.selective_scan import (BWD, CHECKPOINT_STEPS, FWD, MAX_STATES, STEP, dbc_gradients,
                                                pack_bc, padded_states, selective_scan_bwd, selective_scan_fwd,
                                                selective_state_update_run)

__all__ = ["selective_scan", "selective_state_update"]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _refuse_complex(why: str, **tensors: torch.Tensor | None) -> None:
    # Checked before any shape: mamba-ssm's complex mode also doubles the length of a variable
    # B/C, which would otherwise surface as a confusing shape error.
    for name, tensor in tensors.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_complex():
            raise TypeError(f"{name} must be real; got {_dtype_name(tensor.dtype)}: {why}")


# Why a complex tensor is refused where it is.
_REAL_SCAN = "with a real A the scan is real (complex weights need a complex A, as in mamba-ssm)"
_REAL_STEP = "the decode step has no complex mode"


def _check_same_dtype(first_name: str, first: torch.Tensor, **others: torch.Tensor | None) -> None:
    for name, tensor in others.items():
        if tensor is not None and tensor.dtype != first.dtype:
            raise TypeError(f"{name} must have the dtype of {first_name} ({_dtype_name(first.dtype)}); "
                            f"got {_dtype_name(tensor.dtype)}")


def _check_states(n_states: int, source: str) -> None:
    # ``source`` names where N was read, so the message points at the argument to fix.
    if not 1 <= n_states <= MAX_STATES:
        raise ValueError(f"the state size N ({source}) must be in [1, {MAX_STATES}]; got {n_states}")


def _check_groups(name: str, groups: int, dim: int) -> None:
    if groups < 1 or dim % groups:
        raise ValueError(f"dim={dim} must be a multiple of the number of groups G={groups} of {name}")


def _fp32(name: str, tensor: torch.Tensor | None, layout: str, expected: list[int | None]) -> torch.Tensor | None:
    """Check a parameter-like tensor and return it as contiguous fp32 (autograd casts back)."""
    if tensor is None:
        return None
    check_shape(name, tensor, layout, expected)
    _refuse_complex(_REAL_SCAN, **{name: tensor})
    check_float(name, tensor)
    return tensor.to(torch.float32).contiguous()


def _as_fp32(tensor: torch.Tensor | None) -> torch.Tensor | None:
    # The already-checked fast path: no torch call at all when the tensor is fp32 and contiguous.
    if tensor is None or (tensor.dtype is torch.float32 and tensor.is_contiguous()):
        return tensor
    return tensor.to(torch.float32).contiguous()


def _signature(*tensors: torch.Tensor | None) -> tuple | None:
    """What the checks of a call depend on: each tensor's shape, dtype and device (None if absent).
    None when an argument is not a tensor at all (the full checks then name it)."""
    try:
        return tuple(None if t is None else (t.shape, t.dtype, t.device) for t in tensors)
    except AttributeError:
        return None


# The Triton kernels and the decode step put the batch on the grid's last axis, which CUDA caps at
# 65535 programs: larger batches run in groups of rows, one call each (autograd joins them).
MAX_GRID_BATCH = MAX_GRID_YZ
# Groups of B and C are the grid's y axis (a constant B or C makes every channel one): the same cap.
MAX_GRID_CHANNELS = MAX_GRID_YZ


def _batch_groups(batch: int) -> list[tuple[int, int]]:
    return grid_groups(batch, 1, MAX_GRID_BATCH)


def _rows(tensor: torch.Tensor | None, b0: int, b1: int) -> torch.Tensor | None:
    """Batch rows [b0, b1) of a per-row tensor; None and per-channel [dim, N] B/C pass as they are."""
    return tensor[b0:b1] if tensor is not None and tensor.dim() >= 3 else tensor


# Signatures of calls whose arguments passed every check. A serving loop calls the decode step
# with the same shapes every token: after the first call the checks cost one tuple and one dict
# lookup (~3 µs instead of ~45 µs of Python). Bounded, as shapes vary with batch and length.
_CHECKED_MAX = 4096
_checked_scan: set[tuple] = set()
_checked_step: set[tuple] = set()
_checked_head_step: set[tuple] = set()


def _remember(checked: set[tuple], signature: tuple) -> None:
    if len(checked) >= _CHECKED_MAX:
        checked.clear()
    checked.add(signature)


def _l_contiguous(tensor: torch.Tensor | None) -> torch.Tensor | None:
    # The kernels take any batch/channel strides but need unit stride along time (as mamba-ssm).
    if tensor is not None and tensor.stride(-1) != 1:
        tensor = tensor.contiguous()
    return tensor


# --- B and C layouts of the scan -------------------------------------------------------------------

def _as_groups(BC: torch.Tensor) -> torch.Tensor:
    """Variable B or C, [batch, N, L] or [batch, G, N, L] -> [batch, G, N, L] (a view)."""
    return BC.unsqueeze(1) if BC.dim() == 3 else BC


def _per_channel(BC: torch.Tensor, batch: int, dim: int, length: int) -> torch.Tensor:
    """B or C in any accepted layout -> [batch, dim, N, L], each channel its own group.

    Used when B or C is constant ([dim, N]): the kernels read B_t and C_t per group, so a per-channel
    operand makes every channel a group, and the other operand must follow. A constant operand and a
    variable one with G = 1 or G = dim become stride-0 views (no memory); a variable one with
    1 < G < dim is copied (batch·dim·N·L in its dtype). Autograd sums the gradient of a view back
    over the broadcast axes (the gradient of a constant B is Σ over batch and time)."""
    if BC.dim() == 2:
        return BC[None, :, :, None].expand(batch, dim, BC.shape[1], length)
    grouped = _as_groups(BC)
    groups, n_states = grouped.shape[1], grouped.shape[2]
    if groups in (1, dim):
        return grouped.expand(batch, dim, n_states, length)
    return grouped.repeat_interleave(dim // groups, dim=1)


def _pack_per_channel(B: torch.Tensor, C: torch.Tensor, n_states: int) -> torch.Tensor:
    """Per-channel B, C [batch, dim, N, L] -> the kernels' packed fp32 [batch, dim, L_pad, 2, N_pad].

    When neither varies over batch (both constant, or any stride-0 batch axis), one batch row is
    packed and broadcast (the kernels take the batch stride): dim·L·2·N_pad floats instead of
    batch times that. A variable operand makes the buffer batch·dim·L·2·N_pad floats."""
    if B.stride(0) == 0 and C.stride(0) == 0:
        one_row = pack_bc(B[:1], C[:1], padded_states(n_states))
        return one_row.expand(B.shape[0], *one_row.shape[1:])
    return pack_bc(B, C, padded_states(n_states))


def _one_channel_per_group(shape: dict[str, int]) -> dict[str, int]:
    # The kernels' configs are sized by the channels of a group; per channel there is one.
    return {**shape, "dim": 1}


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus, per_channel):
        # B, C [batch, N, L] come as they are and are viewed here as one group: a view outside
        # would put an autograd node per operand into every backward (~15 µs of host time each)
        ungrouped = (B.dim() == 3, C.dim() == 3)
        B, C = _as_groups(B), _as_groups(C)
        batch, dim, length = u.shape
        n_states = A.shape[1]
        shape = FWD.shape_of(batch=batch, dim=dim, L=length, N=n_states)
        flags = "z" if z is not None else ""
        training = any(ctx.needs_input_grad)
        packed = None
        if per_channel:
            # Triton (the CUDA kernel would want B, C copied out contiguous, [batch, dim, N, L] each)
            # with a config sized for one channel per program: a tuned block_d would leave lanes idle.
            config = FWD.triton_default_config(_one_channel_per_group(shape))
            packed = _pack_per_channel(B, C, n_states)
        else:
            config = config_for(FWD, shape, u.dtype, flags, u.device)
        out = torch.empty(batch, dim, length, device=u.device, dtype=u.dtype)
        last_state = torch.empty(batch, dim, n_states, device=u.device, dtype=torch.float32)
        checkpoints = None
        if training:
            checkpoints = torch.empty(batch, dim, math.ceil(length / CHECKPOINT_STEPS), n_states,
                                      device=u.device, dtype=torch.float32)
        BC = selective_scan_fwd(config, u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
                                out, last_state, checkpoints, BC=packed)
        ctx.set_materialize_grads(False)
        if training:
            ctx.save_for_backward(u, delta, A, BC, D, z, delta_bias, initial_state, checkpoints)
            ctx.delta_softplus, ctx.shape, ctx.flags = delta_softplus, shape, flags
            ctx.b_dtype, ctx.c_dtype, ctx.per_channel = B.dtype, C.dtype, per_channel
            ctx.ungrouped = ungrouped
        return out, last_state

    @staticmethod
    @first_order   # the kernels' backward is not differentiable: a double backward raises
    def backward(ctx, dout, dlast):
        u, delta, A, BC, D, z, delta_bias, initial_state, checkpoints = ctx.saved_tensors
        batch, dim, length = u.shape
        n_states = A.shape[1]
        if dout is None:
            dout = torch.zeros_like(u)
        dout = _l_contiguous(dout)
        if dlast is not None:
            dlast = dlast.to(torch.float32).contiguous()
        if ctx.per_channel:   # also keeps the recompute scratch (∝ block_d per program) small
            config = BWD.default_config(_one_channel_per_group(ctx.shape))
        else:
            config = config_for(BWD, ctx.shape, u.dtype, ctx.flags, u.device)
        du = torch.empty(batch, dim, length, device=u.device, dtype=u.dtype)
        ddelta = torch.empty(batch, dim, length, device=u.device, dtype=delta.dtype)
        dz = torch.empty(batch, dim, length, device=u.device, dtype=z.dtype) if z is not None else None
        want_dinitial = initial_state is not None and ctx.needs_input_grad[8]
        if dim == 0:   # no channel reads B or C: their gradients are zeros; every other one is empty
            f32 = dict(device=u.device, dtype=torch.float32)
            grads = {"dA": torch.zeros(0, n_states, **f32), "dD": None if D is None else torch.zeros(0, **f32),
                     "ddelta_bias": None if delta_bias is None else torch.zeros(0, **f32),
                     "dinitial_state": torch.zeros(batch, 0, n_states, **f32) if want_dinitial else None}
            dB, dC = (torch.zeros(batch, BC.shape[1], n_states, length, device=u.device, dtype=dtype)
                      for dtype in (ctx.b_dtype, ctx.c_dtype))
        else:
            grads = selective_scan_bwd(config, u, delta, A, BC, n_states, D, z, delta_bias, ctx.delta_softplus,
                                       checkpoints, dout, dlast, du, ddelta, dz, want_dinitial)
            dB, dC = dbc_gradients(grads["dBC"], n_states, length, ctx.b_dtype, ctx.c_dtype)
        dB, dC = (grad[:, 0] if ungrouped else grad for grad, ungrouped in zip((dB, dC), ctx.ungrouped))
        return (du, ddelta, grads["dA"], dB, dC, grads["dD"], dz,
                grads["ddelta_bias"], grads["dinitial_state"], None, None)


def _check_scan_bc(name: str, BC, batch: int, dim: int, n_states: int, length: int) -> int | None:
    """Check B or C of the scan; returns its number of groups, or None when it is constant."""
    if not isinstance(BC, torch.Tensor) or BC.dim() not in (2, 3, 4):
        found = shape_str(BC.shape) if isinstance(BC, torch.Tensor) else type(BC).__name__
        raise ValueError(f"{name} must be [dim, N] (constant), [batch, N, L] or [batch, G, N, L]; got {found}")
    if BC.dim() == 2:
        check_shape(name, BC, "dim, N", [dim, n_states])
        groups = None
    elif BC.dim() == 3:
        check_shape(name, BC, "batch, N, L", [batch, n_states, length])
        groups = 1
    else:
        check_shape(name, BC, "batch, G, N, L", [batch, None, n_states, length])
        groups = BC.shape[1]
        _check_groups(name, groups, dim)
    check_float(name, BC)
    return groups


def _check_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state) -> None:
    """Every argument check of :func:`selective_scan` (run once per call signature)."""
    _refuse_complex(_REAL_SCAN, A=A, B=B, C=C, D=D, delta_bias=delta_bias, initial_state=initial_state, u=u,
                    delta=delta, z=z)
    check_shape("u", u, "batch, dim, L", [None, None, None])
    check_float("u", u)
    batch, dim, length = u.shape
    check_shape("delta", delta, "batch, dim, L", [batch, dim, length])
    check_float("delta", delta)
    if z is not None:
        check_shape("z", z, "batch, dim, L", [batch, dim, length])
        check_float("z", z)
    _check_same_dtype("u", u, delta=delta, z=z)
    check_shape("A", A, "dim, N", [dim, None])
    n_states = A.shape[1]
    _check_states(n_states, "A.shape[1]")
    b_groups = _check_scan_bc("B", B, batch, dim, n_states, length)
    c_groups = _check_scan_bc("C", C, batch, dim, n_states, length)
    # Both variable: one group layout. A constant operand runs per channel, so any G fits it.
    if b_groups is not None and c_groups is not None and b_groups != c_groups:
        raise ValueError(f"B and C must have the same number of groups; got G={b_groups} and G={c_groups}")
    _fp32("A", A, "dim, N", [dim, n_states])
    _fp32("D", D, "dim", [dim])
    _fp32("delta_bias", delta_bias, "dim", [dim])
    _fp32("initial_state", initial_state, "batch, dim, N", [batch, dim, n_states])
    check_same_device(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias, initial_state=initial_state)


def _initial_state_of(initial_state, prev_state):
    # mamba-ssm versions with a chunked prefill name the argument prev_state; one of them at most.
    if prev_state is None:
        return initial_state
    if initial_state is not None:
        raise ValueError("pass the starting state as initial_state or as prev_state, not both")
    return prev_state


@eager_op
def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   delta_bias: torch.Tensor | None = None, delta_softplus: bool = False,
                   return_last_state: bool = False, initial_state: torch.Tensor | None = None, *,
                   prev_state: torch.Tensor | None = None, cu_seqlens: torch.Tensor | None = None):
    """Mamba's selective scan (mamba-ssm ``selective_scan_fn``), differentiable in every tensor.

    u, delta, z: [batch, dim, L] (one dtype); A: [dim, N]; B, C: [batch, N, L] or [batch, G, N, L]
    (channel d uses group d // (dim / G)), or [dim, N] (constant over batch and time, one row per
    channel; either or both); D, delta_bias: [dim]; initial_state: [batch, dim, N].
    Returns y [batch, dim, L] in u's dtype, and (y, last_state [batch, dim, N] fp32) when
    ``return_last_state``. Unlike mamba-ssm, gradients also flow from last_state and into
    initial_state, so a long prefill can be split into chunks that pass the state along.

    Complex A (mamba-ssm's complex mode): a constant B/C is complex [dim, N], a variable one real
    [batch, (G,) N, 2L] holding (real, imaginary) pairs along time; y = 2·Re(C·h) + D·u (·silu(z));
    last_state and initial_state are complex64. Plain PyTorch, exact, slower than the kernels:
    see kernelgen/ops/selective_scan_complex.py.

    ``prev_state`` is another name for ``initial_state`` (the keyword some mamba-ssm versions use for
    a chunked prefill).

    ``cu_seqlens`` (1-D integer tensor, as mamba-ssm's variable-length ``selective_scan_fn``): sequences
    packed along L. The state restarts (h = δ·B·u, the carried state dropped) at every entry but the
    first and the last, for every batch row, as in mamba-ssm's reference; so pass the offsets
    [0, end_1, ..., L] (mamba-ssm's test passes the starts alone, whose last entry then restarts
    nothing). last_state is the state after step L - 1. Each packed sequence runs as its own call
    (its slices of u, delta, z, B, C), so N sequences cost N launches of the kernels.

    Memory of a constant B or C: the kernels step through an fp32 copy of B_t, C_t per group, and a
    constant operand makes every channel a group (see ``_per_channel``). Both constant: the forward
    packs dim·L·2·N_pad fp32 once for all batch rows; one constant and one variable: batch·dim·L·2·N_pad
    fp32 (the variable operand repeated per channel). Training adds the backward's per-channel
    partial dB/dC, batch·dim·L·2·N_pad fp32, before they are summed. Such calls run the Triton
    kernels with their default configs for one channel per program (correct, not tuned for speed).
    """
    initial_state = _initial_state_of(initial_state, prev_state)
    if cu_seqlens is not None:
        return _packed_sequences(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                                 initial_state, cu_seqlens)
    if isinstance(A, torch.Tensor) and A.is_complex():
        return selective_scan_complex(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus),
                                      return_last_state, initial_state)
    signature = _signature(u, delta, A, B, C, D, z, delta_bias, initial_state)
    if signature is None or signature not in _checked_scan:
        _check_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state)
        _remember(_checked_scan, signature)
    out, last_state = _scan_checked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    return (out, last_state) if return_last_state else out


def _scan_checked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state):
    """(y, last_state) of the real scan, its arguments already checked."""
    if u.shape[0] > MAX_GRID_BATCH:
        parts = [_scan_checked(u[b0:b1], delta[b0:b1], A, _rows(B, b0, b1), _rows(C, b0, b1), D, _rows(z, b0, b1),
                               delta_bias, delta_softplus, _rows(initial_state, b0, b1))
                 for b0, b1 in _batch_groups(u.shape[0])]
        return torch.cat([y for y, _ in parts]), torch.cat([last for _, last in parts])
    per_channel = B.dim() == 2 or C.dim() == 2
    if per_channel:
        batch, dim, length = u.shape
        B4, C4 = _per_channel(B, batch, dim, length), _per_channel(C, batch, dim, length)
    else:
        B4, C4 = B, C   # grouped inside _SelectiveScan
    groups = B4.shape[1] if B4.dim() == 4 else 1
    if groups > MAX_GRID_CHANNELS:   # groups are the grid's y axis: runs of whole groups
        parts = [_scan_groups(u, delta, A, B4, C4, D, z, delta_bias, delta_softplus, initial_state, per_channel,
                              run) for run in _group_runs(groups, u.shape[1])]
        return torch.cat([y for y, _ in parts], 1), torch.cat([last for _, last in parts], 1)
    A32, D32, bias32, h0 = _as_fp32(A), _as_fp32(D), _as_fp32(delta_bias), _as_fp32(initial_state)
    return _SelectiveScan.apply(_l_contiguous(u), _l_contiguous(delta), A32, B4, C4, D32, _l_contiguous(z),
                                bias32, h0, bool(delta_softplus), per_channel)


def _group_runs(groups: int, dim: int) -> list[tuple[slice, slice]]:
    """(groups, channels) slices of runs of whole groups, each within the grid's y axis."""
    per_group = dim // groups
    return [(slice(g0, g1), slice(g0 * per_group, g1 * per_group))
            for g0, g1 in grid_groups(groups, 1, MAX_GRID_CHANNELS)]


def _cut(tensor: torch.Tensor | None, axis: int, part: slice) -> torch.Tensor | None:
    """``part`` of ``tensor`` along ``axis`` (a view; None stays None)."""
    return None if tensor is None else tensor.narrow(axis, part.start, part.stop - part.start)


def _scan_groups(u, delta, A, B4, C4, D, z, delta_bias, delta_softplus, initial_state, per_channel: bool,
                 run: tuple[slice, slice]):
    """(y, last_state) of one run of groups (B4, C4 [batch, G, N, L]; see _group_runs)."""
    groups, channels = run
    return _SelectiveScan.apply(_l_contiguous(_cut(u, 1, channels)), _l_contiguous(_cut(delta, 1, channels)),
                                _as_fp32(_cut(A, 0, channels)), _cut(B4, 1, groups), _cut(C4, 1, groups),
                                _as_fp32(_cut(D, 0, channels)), _l_contiguous(_cut(z, 1, channels)),
                                _as_fp32(_cut(delta_bias, 0, channels)), _as_fp32(_cut(initial_state, 1, channels)),
                                bool(delta_softplus), per_channel)


def _complex_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state):
    """(y, last_state) of the complex mode (selective_scan_complex checks its own arguments)."""
    return selective_scan_complex(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), True, initial_state)


def _restarts(cu_seqlens, length: int) -> list[int]:
    """The steps where a packed sequence starts: cu_seqlens' entries but its first and last."""
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.is_floating_point() \
            or cu_seqlens.is_complex() or cu_seqlens.dtype == torch.bool:
        found = (f"{_dtype_name(cu_seqlens.dtype)} {shape_str(cu_seqlens.shape)}"
                 if isinstance(cu_seqlens, torch.Tensor) else type(cu_seqlens).__name__)
        raise ValueError(f"cu_seqlens must be a 1-D integer tensor of sequence offsets along L; got {found}")
    offsets = cu_seqlens.tolist()   # one host sync: the segments are cut on the host
    if any(b < a for a, b in zip(offsets, offsets[1:])) or any(not 0 <= o <= length for o in offsets):
        shown = offsets if len(offsets) <= 8 else offsets[:8] + ["..."]
        raise ValueError(f"cu_seqlens must be non-decreasing offsets in [0, L={length}]; got {shown}")
    return sorted({o for o in offsets[1:-1] if o < length})


def _packed_sequences(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, initial_state,
                      cu_seqlens):
    """selective_scan over sequences packed along L: one call per sequence (slices of the tensors
    that vary along L), the first from initial_state, the others from zero; autograd sums the
    shared parameters' gradients over the calls."""
    complex_mode = isinstance(A, torch.Tensor) and A.is_complex()
    # The whole call's shapes first: a slice along L could hide a B or C of the wrong length.
    if complex_mode:
        check_complex_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state)
    else:
        _check_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state)
    length = u.shape[-1]
    restarts = _restarts(cu_seqlens, length)

    def cut(tensor, start, stop, steps_per_token=1):
        return tensor[..., steps_per_token * start:steps_per_token * stop] if tensor is not None else None

    def cut_bc(BC, start, stop):
        if not isinstance(BC, torch.Tensor) or BC.dim() < 3:
            return BC   # constant over time
        return cut(BC, start, stop, 2 if complex_mode else 1)

    bounds = [0, *restarts, length]
    # The whole call is checked above, so its slices go straight to the scan.
    scan = _complex_scan if complex_mode else _scan_checked
    outs, state = [], None
    for i, (start, stop) in enumerate(zip(bounds, bounds[1:])):
        if stop == start:   # a restart at step 0 drops initial_state; the empty span runs nothing
            continue
        out, state = scan(cut(u, start, stop), cut(delta, start, stop), A, cut_bc(B, start, stop),
                          cut_bc(C, start, stop), D, cut(z, start, stop), delta_bias, delta_softplus,
                          initial_state if i == 0 else None)
        outs.append(out)
    if not outs:   # L = 0
        return selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                              initial_state)
    out = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
    return (out, state) if return_last_state else out


# --- decode step -----------------------------------------------------------------------------------

def _check_step_args(state, x, dt, A, B, C, D, z, dt_bias) -> None:
    """Every argument check of the [batch, dim, N] decode step (run once per call signature)."""
    _refuse_complex(_REAL_STEP, state=state, A=A, B=B, C=C, D=D, dt_bias=dt_bias, x=x, dt=dt, z=z)
    check_shape("state", state, "batch, dim, N", [None, None, None])
    check_float("state", state)
    _check_state_writable(state)
    batch, dim, n_states = state.shape
    _check_states(n_states, "state.shape[2]")
    check_shape("x", x, "batch, dim", [batch, dim])
    check_float("x", x)
    check_shape("dt", dt, "batch, dim", [batch, dim])
    if z is not None:
        check_shape("z", z, "batch, dim", [batch, dim])
    _check_same_dtype("x", x, dt=dt, z=z)
    B3, C3 = [], []
    for name, BC, out in (("B", B, B3), ("C", C, C3)):
        if not isinstance(BC, torch.Tensor) or BC.dim() not in (2, 3):
            raise ValueError(f"{name} must be [batch, N] or [batch, G, N]; got "
                             f"{list(BC.shape) if isinstance(BC, torch.Tensor) else type(BC).__name__}")
        if BC.dim() == 2:
            check_shape(name, BC, "batch, N", [batch, n_states])
            BC = BC.unsqueeze(1)
        else:
            check_shape(name, BC, "batch, G, N", [batch, None, n_states])
            _check_groups(name, BC.shape[1], dim)
        check_float(name, BC)
        out.append(BC)
    B3, C3 = B3[0], C3[0]
    if B3.shape[1] != C3.shape[1]:
        raise ValueError(f"B and C must have the same number of groups; got G={B3.shape[1]} and G={C3.shape[1]}")
    check_shape("A", A, "dim, N", [dim, n_states])   # required: _fp32 passes None through
    _fp32("A", A, "dim, N", [dim, n_states])
    _fp32("D", D, "dim", [dim])
    _fp32("dt_bias", dt_bias, "dim", [dim])
    check_same_device(state=state, x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias)


def _step_signature(state, *others) -> tuple | None:
    """A decode step's check signature: _signature's, plus the state's strides, since whether the
    state may be written in place (_check_state_writable) depends on them."""
    signature = _signature(state, *others)
    return None if signature is None else (signature, state.stride())


def _check_state_writable(state: torch.Tensor) -> None:
    """The decode step writes state in place: an expanded tensor (stride 0 over a dimension of more
    than one element) would have every row of that dimension race on the same memory."""
    if any(stride == 0 and size > 1 for stride, size in zip(state.stride(), state.shape)):
        raise ValueError(f"state is updated in place, so its elements must not share memory; got shape "
                         f"{list(state.shape)} with strides {list(state.stride())} (an expanded tensor?): "
                         "pass a tensor that owns its elements, e.g. state.clone()")


def _state_update_channels(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus) -> torch.Tensor:
    """The decode step on state [batch, dim, N] (updated in place); y [batch, dim]."""
    signature = _step_signature(state, x, dt, A, B, C, D, z, dt_bias)
    if signature is None or signature not in _checked_step:
        _check_step_args(state, x, dt, A, B, C, D, z, dt_bias)
        _remember(_checked_step, signature)
    batch, dim, n_states = state.shape
    if batch > MAX_GRID_BATCH:   # each group updates its rows of state in place (views)
        return torch.cat([_state_update_channels(state[b0:b1], x[b0:b1], dt[b0:b1], A, B[b0:b1], C[b0:b1], D,
                                                 None if z is None else z[b0:b1], dt_bias, dt_softplus)
                          for b0, b1 in _batch_groups(batch)])
    groups = B.shape[1] if B.dim() == 3 else 1
    if groups > MAX_GRID_CHANNELS:   # groups are the grid's y axis: runs of whole groups (state views)
        return torch.cat([_state_update_channels(_cut(state, 1, ch), _cut(x, 1, ch), _cut(dt, 1, ch), _cut(A, 0, ch),
                                                 _cut(B, 1, gr), _cut(C, 1, gr), _cut(D, 0, ch), _cut(z, 1, ch),
                                                 _cut(dt_bias, 0, ch), dt_softplus)
                          for gr, ch in _group_runs(groups, dim)], 1)
    A32, D32, bias32 = _as_fp32(A), _as_fp32(D), _as_fp32(dt_bias)
    # The tuned bucket is the Mamba decode call (with z); the config fits a call without z too.
    config = config_for(STEP, {"batch": batch, "dim": dim, "N": n_states}, x.dtype, "z", x.device)
    out = torch.empty(batch, dim, device=x.device, dtype=x.dtype)
    # A raw kernel launch records nothing for autograd, so no torch.no_grad() (~2 µs) is needed.
    # (B, C [batch, N] go as they are: the launchers read them as one group)
    selective_state_update_run(config, state, state, x, dt, A32, B, C, D32, z, bias32, bool(dt_softplus), out)
    return out


def _check_head_step_args(state, x, dt, A, B, C, D, z, dt_bias) -> None:
    """The shape checks of mamba-2's head form (dtypes are checked on the flattened call)."""
    _refuse_complex(_REAL_STEP, state=state, A=A, B=B, C=C, D=D, dt_bias=dt_bias, x=x, dt=dt, z=z)
    check_shape("state", state, "batch, nheads, headdim, N", [None] * 4)
    _check_state_writable(state)   # (an unviewable state is updated through a copy, then written back)
    batch, nheads, headdim, n_states = state.shape
    _check_states(n_states, "state.shape[3]")
    for name, tensor in (("x", x), ("dt", dt), ("z", z)):
        if tensor is not None:
            check_shape(name, tensor, "batch, nheads, headdim", [batch, nheads, headdim])
    check_shape("A", A, "nheads, headdim, N", [nheads, headdim, n_states])
    for name, tensor in (("D", D), ("dt_bias", dt_bias)):
        if tensor is not None:
            check_shape(name, tensor, "nheads, headdim", [nheads, headdim])
    groups = []
    for name, BC in (("B", B), ("C", C)):
        if not isinstance(BC, torch.Tensor) or BC.dim() not in (2, 3):
            found = shape_str(BC.shape) if isinstance(BC, torch.Tensor) else type(BC).__name__
            raise ValueError(f"{name} must be [batch, N] or [batch, ngroups, N]; got {found}")
        if BC.dim() == 2:
            check_shape(name, BC, "batch, N", [batch, n_states])
            groups.append(1)
        else:
            check_shape(name, BC, "batch, ngroups, N", [batch, None, n_states])
            groups.append(BC.shape[1])
        # A group is a set of whole heads (head h uses group h // (nheads / ngroups)).
        if groups[-1] < 1 or nheads % groups[-1]:
            raise ValueError(f"nheads={nheads} must be a multiple of the number of groups ngroups={groups[-1]} "
                             f"of {name}")
    if groups[0] != groups[1]:
        raise ValueError(f"B and C must have the same number of groups; got ngroups={groups[0]} and {groups[1]}")


def _view_or_none(tensor: torch.Tensor, *shape: int) -> torch.Tensor | None:
    try:
        return tensor.view(*shape)
    except RuntimeError:      # strides that no single flat stride can express
        return None


def _state_update_heads(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus) -> torch.Tensor:
    """Mamba-2's head form: flattens heads × headdim into the channel axis of the 3-D step (channel
    h·headdim + p, whose group d // (dim / ngroups) is the head's group h // (nheads / ngroups))."""
    signature = _step_signature(state, x, dt, A, B, C, D, z, dt_bias)
    if signature is None or signature not in _checked_head_step:
        _check_head_step_args(state, x, dt, A, B, C, D, z, dt_bias)
        _remember(_checked_head_step, signature)
    batch, nheads, headdim, n_states = state.shape
    dim = nheads * headdim

    def flat(tensor: torch.Tensor | None, *shape: int) -> torch.Tensor | None:
        # A view where the strides allow, else a copy (e.g. mamba-2's "tied" stride-0 head dims).
        return None if tensor is None else tensor.reshape(*shape)

    state_view = _view_or_none(state, batch, dim, n_states)
    work = state_view if state_view is not None else state.reshape(batch, dim, n_states)
    y = _state_update_channels(work, flat(x, batch, dim), flat(dt, batch, dim), flat(A, dim, n_states), B, C,
                               flat(D, dim), flat(z, batch, dim), flat(dt_bias, dim), dt_softplus)
    if state_view is None:     # the update went to a copy: make it visible in the caller's tensor
        state.copy_(work.view(state.shape))
    return y.view(batch, nheads, headdim)


def _check_state_indices(indices, state, x) -> None:
    if not isinstance(indices, torch.Tensor) or indices.dtype.is_floating_point or indices.is_complex() \
            or indices.dtype is torch.bool:
        found = _dtype_name(indices.dtype) if isinstance(indices, torch.Tensor) else type(indices).__name__
        raise TypeError(f"state_batch_indices must be an integer tensor [batch]; got {found}")
    if not isinstance(state, torch.Tensor) or state.dim() not in (3, 4):
        found = shape_str(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
        raise ValueError(f"state must be [cache_rows, dim, N] or [cache_rows, nheads, headdim, N] with "
                         f"state_batch_indices; got {found}")
    batch = x.shape[0] if isinstance(x, torch.Tensor) and x.dim() else None
    check_shape("state_batch_indices", indices, "batch", [batch])
    if indices.device != state.device:
        raise ValueError(f"state_batch_indices is on {indices.device} but state is on {state.device}")


def _check_state_index_values(rows: torch.Tensor, cache_rows: int) -> None:
    """Indices in [0, cache_rows) and distinct: an out-of-range one would be a device-side fault on
    the GPU, a repeated one a race between two updates of one row. One host sync; skipped while a
    CUDA graph is captured (the values are not known then)."""
    if rows.numel() == 0 or rows.device.type == "meta" or \
            (rows.is_cuda and torch.cuda.is_current_stream_capturing()):
        return
    ordered = rows.sort().values
    bad = (ordered[0] < 0) | (ordered[-1] >= cache_rows) | (ordered[1:] == ordered[:-1]).any()
    if bool(bad):
        raise ValueError(f"state_batch_indices must be distinct rows of state, in [0, {cache_rows}); "
                         f"got {rows.tolist()}")


@eager_op
def selective_state_update(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
                           B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None = None,
                           z: torch.Tensor | None = None, dt_bias: torch.Tensor | None = None,
                           dt_softplus: bool = False,
                           state_batch_indices: torch.Tensor | None = None) -> torch.Tensor:
    """One decode token of the selective scan (mamba-ssm ``selective_state_update``); updates
    ``state`` in place and returns y in x's dtype. Not differentiable.

    Channel form: state [batch, dim, N] (fp32, fp16 or bf16; math in fp32); x, dt, z [batch, dim]
    (one dtype); A [dim, N]; B, C [batch, N] or [batch, G, N]; D, dt_bias [dim]; y [batch, dim].
    Head form (mamba-2): state [batch, nheads, headdim, N]; x, dt, z [batch, nheads, headdim];
    A [nheads, headdim, N]; D, dt_bias [nheads, headdim]; B, C [batch, ngroups, N] (head h uses group
    h // (nheads / ngroups)); y [batch, nheads, headdim]. Any strides, stride-0 broadcasts included
    (they are copied into the flat layout, except the state, which is updated through a view or,
    where none exists, a copy written back).
    state_batch_indices: int [batch], the state rows (of a larger cache, state.shape[0] >= batch)
    this batch uses; they are gathered, updated and scattered back (one extra read and write of
    those rows). Indices must be in range and distinct; there is no padding-slot value.
    """
    if state_batch_indices is not None:
        _check_state_indices(state_batch_indices, state, x)
        _check_state_writable(state)   # the cache rows are written back in place
        rows = state_batch_indices.long()
        _check_state_index_values(rows, state.shape[0])
        selected = state.index_select(0, rows)
        y = selective_state_update(selected, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
        state.index_copy_(0, rows, selected)
        return y
    if isinstance(state, torch.Tensor) and state.dim() == 4:
        y = _state_update_heads(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    else:
        y = _state_update_channels(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    # written in place by a kernel: autograd's version counter must see it (a graph that saved
    # the state, e.g. as a scan's initial_state, then refuses a backward on the changed values)
    increment_version(state)
    return y
