"""Mamba selective scan: argument checks, autograd, dispatch. Drop-in for mamba-ssm's
``selective_scan_fn`` and ``selective_state_update``.

    δ_t = softplus?(delta_t + delta_bias);  h_t = exp(δ_t·A)·h_{t-1} + δ_t·B_t·u_t
    y_t = C_t·h_t + D·u_t  (then · silu(z_t))

Kernels and their search spaces: templates/selective_scan.py (Triton) and selective_scan_cuda.py
(CUDA). The forward's config picks the backend; training mode always runs the Triton forward,
because it also saves the state every CHECKPOINT_STEPS steps for the backward.

Dtypes: u, delta and z share one dtype (fp32, fp16 or bf16; they are full activations, so a silent
cast would copy them). A, D, delta_bias and initial_state may be any float dtype: they are cast to
fp32 (mamba-ssm requires fp32 for them; casting a [dim, N] parameter costs nothing and autograd
casts the gradient back). B and C may be any float dtype (they are packed to fp32 anyway).
"""
from __future__ import annotations

import math

import torch

from kernelgen.checks import check_float, check_same_device, check_shape
from kernelgen.dispatch import config_for
from kernelgen.templates.selective_scan import (BWD, CHECKPOINT_STEPS, FWD, MAX_STATES, STEP,
                                                selective_scan_bwd_triton, selective_scan_fwd,
                                                selective_state_update_run, unpack_dbc)

__all__ = ["selective_scan", "selective_state_update"]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _check_same_dtype(first_name: str, first: torch.Tensor, **others: torch.Tensor | None) -> None:
    for name, tensor in others.items():
        if tensor is not None and tensor.dtype != first.dtype:
            raise TypeError(f"{name} must have the dtype of {first_name} ({_dtype_name(first.dtype)}); "
                            f"got {_dtype_name(tensor.dtype)}")


def _check_states(n_states: int) -> None:
    if not 1 <= n_states <= MAX_STATES:
        raise ValueError(f"the state size N (A.shape[1]) must be in [1, {MAX_STATES}]; got {n_states}")


def _check_groups(name: str, groups: int, dim: int) -> None:
    if groups < 1 or dim % groups:
        raise ValueError(f"dim={dim} must be a multiple of the number of groups G={groups} of {name}")


def _fp32(name: str, tensor: torch.Tensor | None, layout: str, expected: list[int | None]) -> torch.Tensor | None:
    """Check a parameter-like tensor and return it as contiguous fp32 (autograd casts back)."""
    if tensor is None:
        return None
    check_shape(name, tensor, layout, expected)
    if tensor.is_complex():
        raise TypeError(f"{name} must be real; complex {name} (mamba-ssm's complex A) is not supported")
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


# Signatures of calls whose arguments passed every check. A serving loop calls the decode step
# with the same shapes every token: after the first call the checks cost one tuple and one dict
# lookup (~3 µs instead of ~45 µs of Python). Bounded, as shapes vary with batch and length.
_CHECKED_MAX = 4096
_checked_scan: set[tuple] = set()
_checked_step: set[tuple] = set()


def _remember(checked: set[tuple], signature: tuple) -> None:
    if len(checked) >= _CHECKED_MAX:
        checked.clear()
    checked.add(signature)


def _l_contiguous(tensor: torch.Tensor | None) -> torch.Tensor | None:
    # The kernels take any batch/channel strides but need unit stride along time (as mamba-ssm).
    if tensor is not None and tensor.stride(-1) != 1:
        tensor = tensor.contiguous()
    return tensor


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus):
        batch, dim, length = u.shape
        n_states = A.shape[1]
        shape = FWD.shape_of(batch=batch, dim=dim, L=length, N=n_states)
        flags = "z" if z is not None else ""
        training = any(ctx.needs_input_grad)
        config = config_for(FWD, shape, u.dtype, flags, u.device)
        out = torch.empty(batch, dim, length, device=u.device, dtype=u.dtype)
        last_state = torch.empty(batch, dim, n_states, device=u.device, dtype=torch.float32)
        checkpoints = None
        if training:
            checkpoints = torch.empty(batch, dim, math.ceil(length / CHECKPOINT_STEPS), n_states,
                                      device=u.device, dtype=torch.float32)
        BC = selective_scan_fwd(config, u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
                                out, last_state, checkpoints)
        ctx.set_materialize_grads(False)
        if training:
            ctx.save_for_backward(u, delta, A, BC, D, z, delta_bias, initial_state, checkpoints)
            ctx.delta_softplus, ctx.shape, ctx.flags = delta_softplus, shape, flags
            ctx.b_dtype, ctx.c_dtype = B.dtype, C.dtype
        return out, last_state

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, BC, D, z, delta_bias, initial_state, checkpoints = ctx.saved_tensors
        batch, dim, length = u.shape
        n_states = A.shape[1]
        if dout is None:
            dout = torch.zeros_like(u)
        dout = _l_contiguous(dout)
        if dlast is not None:
            dlast = dlast.to(torch.float32).contiguous()
        config = config_for(BWD, ctx.shape, u.dtype, ctx.flags, u.device)
        du = torch.empty(batch, dim, length, device=u.device, dtype=u.dtype)
        ddelta = torch.empty(batch, dim, length, device=u.device, dtype=delta.dtype)
        dz = torch.empty(batch, dim, length, device=u.device, dtype=z.dtype) if z is not None else None
        want_dinitial = initial_state is not None and ctx.needs_input_grad[8]
        grads = selective_scan_bwd_triton(config, u, delta, A, BC, n_states, D, z, delta_bias, ctx.delta_softplus,
                                          checkpoints, dout, dlast, du, ddelta, dz, want_dinitial)
        dB, dC = unpack_dbc(grads["dBC"], n_states, length)
        return (du, ddelta, grads["dA"], dB.to(ctx.b_dtype), dC.to(ctx.c_dtype), grads["dD"], dz,
                grads["ddelta_bias"], grads["dinitial_state"], None)


def _check_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state) -> None:
    """Every argument check of :func:`selective_scan` (run once per call signature)."""
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
    _check_states(n_states)
    B4, C4 = [], []
    for name, BC, out in (("B", B, B4), ("C", C, C4)):
        if not isinstance(BC, torch.Tensor) or BC.dim() not in (3, 4):
            raise ValueError(f"{name} must be [batch, N, L] or [batch, G, N, L]; got "
                             f"{list(BC.shape) if isinstance(BC, torch.Tensor) else type(BC).__name__}")
        if BC.dim() == 3:
            check_shape(name, BC, "batch, N, L", [batch, n_states, length])
            BC = BC.unsqueeze(1)
        else:
            check_shape(name, BC, "batch, G, N, L", [batch, None, n_states, length])
            _check_groups(name, BC.shape[1], dim)
        if BC.is_complex():
            raise TypeError(f"{name} must be real; complex {name} is not supported")
        check_float(name, BC)
        out.append(BC)
    B4, C4 = B4[0], C4[0]
    if B4.shape[1] != C4.shape[1]:
        raise ValueError(f"B and C must have the same number of groups; got G={B4.shape[1]} and G={C4.shape[1]}")
    _fp32("A", A, "dim, N", [dim, n_states])
    _fp32("D", D, "dim", [dim])
    _fp32("delta_bias", delta_bias, "dim", [dim])
    _fp32("initial_state", initial_state, "batch, dim, N", [batch, dim, n_states])
    check_same_device(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias, initial_state=initial_state)


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   delta_bias: torch.Tensor | None = None, delta_softplus: bool = False,
                   return_last_state: bool = False, initial_state: torch.Tensor | None = None):
    """Mamba's selective scan (mamba-ssm ``selective_scan_fn``), differentiable in every tensor.

    u, delta, z: [batch, dim, L] (one dtype); A: [dim, N]; B, C: [batch, N, L] or [batch, G, N, L]
    (channel d uses group d // (dim / G)); D, delta_bias: [dim]; initial_state: [batch, dim, N].
    Returns y [batch, dim, L] in u's dtype, and (y, last_state [batch, dim, N] fp32) when
    ``return_last_state``. Unlike mamba-ssm, gradients also flow from last_state and into
    initial_state, so a long prefill can be split into chunks that pass the state along.
    """
    signature = _signature(u, delta, A, B, C, D, z, delta_bias, initial_state)
    if signature is None or signature not in _checked_scan:
        _check_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state)
        _remember(_checked_scan, signature)
    if B.dim() == 3:
        B4, C4 = B.unsqueeze(1), C.unsqueeze(1)
    else:
        B4, C4 = B, C
    A32, D32, bias32, h0 = _as_fp32(A), _as_fp32(D), _as_fp32(delta_bias), _as_fp32(initial_state)
    out, last_state = _SelectiveScan.apply(_l_contiguous(u), _l_contiguous(delta), A32, B4, C4, D32, _l_contiguous(z),
                                           bias32, h0, bool(delta_softplus))
    return (out, last_state) if return_last_state else out


def _check_step_args(state, x, dt, A, B, C, D, z, dt_bias) -> None:
    """Every argument check of :func:`selective_state_update` (run once per call signature)."""
    check_shape("state", state, "batch, dim, N", [None, None, None])
    check_float("state", state)
    batch, dim, n_states = state.shape
    _check_states(n_states)
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
    _fp32("A", A, "dim, N", [dim, n_states])
    _fp32("D", D, "dim", [dim])
    _fp32("dt_bias", dt_bias, "dim", [dim])
    check_same_device(state=state, x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias)


def selective_state_update(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
                           B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None = None,
                           z: torch.Tensor | None = None, dt_bias: torch.Tensor | None = None,
                           dt_softplus: bool = False) -> torch.Tensor:
    """One decode token of the selective scan (mamba-ssm ``selective_state_update``); updates
    ``state`` in place and returns y [batch, dim] in x's dtype. Not differentiable.

    state: [batch, dim, N] (fp32, fp16 or bf16; math in fp32); x, dt, z: [batch, dim] (one dtype);
    A: [dim, N]; B, C: [batch, N] or [batch, G, N]; D, dt_bias: [dim].
    """
    signature = _signature(state, x, dt, A, B, C, D, z, dt_bias)
    if signature is None or signature not in _checked_step:
        _check_step_args(state, x, dt, A, B, C, D, z, dt_bias)
        _remember(_checked_step, signature)
    batch, dim, n_states = state.shape
    if B.dim() == 2:
        B3, C3 = B.unsqueeze(1), C.unsqueeze(1)
    else:
        B3, C3 = B, C
    A32, D32, bias32 = _as_fp32(A), _as_fp32(D), _as_fp32(dt_bias)
    # The tuned bucket is the Mamba decode call (with z); the config fits a call without z too.
    config = config_for(STEP, {"batch": batch, "dim": dim, "N": n_states}, x.dtype, "z", x.device)
    out = torch.empty(batch, dim, device=x.device, dtype=x.dtype)
    # A raw kernel launch records nothing for autograd, so no torch.no_grad() (~2 µs) is needed.
    selective_state_update_run(config, state, state, x, dt, A32, B3, C3, D32, z, bias32, bool(dt_softplus), out)
    return out
