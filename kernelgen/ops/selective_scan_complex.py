"""Complex weights for kernelgen.selective_scan (mamba-ssm's complex64 ``wtype``), in plain PyTorch.

The complex mode is chosen by a complex A (S4D-style diagonal SSMs). Its conventions, as mamba-ssm's:

* A: complex [dim, N]. A constant B or C: [dim, N], complex (a real one is promoted).
* A variable B or C stays *real* with its time axis doubled: [batch, N, 2L] or [batch, G, N, 2L],
  entries 2t and 2t+1 being the real and imaginary parts of B_t[n] (a projection to 2N features
  per token, moved time-last, lands there).
* The state is complex: h_t = exp(δ_t·A)·h_{t-1} + δ_t·B_t·u_t, and
  y_t = 2·Re(Σ_n C_t[n]·h_t[n]) + D·u_t, then ·silu(z_t). The factor 2 counts each state's
  conjugate partner: N complex states stand for 2N real ones whose output is real.
* u, delta, z, D and delta_bias stay real (δ, softplus, D and z act as in the real mode);
  y comes back in u's dtype; last_state is complex64 [batch, dim, N].
* initial_state (mamba-ssm has none): complex [batch, dim, N] (a real one is promoted). As in the
  real mode, gradients flow into it and from last_state.

The Triton/CUDA kernels are real-only, so this mode runs plain PyTorch ops and autograd
differentiates them: slower than the kernels (complex weights are rare), any device. Memory:
autograd keeps a few [batch, dim, L, N] complex64 tensors (~48 bytes per (b, d, t, n)).

The recurrence is exact and chunked over L. Within a chunk, with S_t = Σ_{k≤t} δ_k·A (a cumulative
sum of the log decay), h_t = e^{S_t}·h_0 + Σ_{k≤t} e^{S_t−S_k}·x_k, x_k = δ_k·B_k·u_k; the state
after the chunk starts the next one. See :func:`_chunk_len` for why chunks are short.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kernelgen.checks import check_float, check_one_device, check_shape, shape_str

__all__ = ["selective_scan_complex"]

STATE_DTYPE = torch.complex64
# Bound on Σ|δ·A| over one chunk. It bounds the exponents of the chunk's factors (within ±16 after
# centring: far from fp32's e^±87, whatever the decay) and the size of the cumulative phase, whose
# fp32 rounding grows with it: against the complex128 loop, the relative error of y and of every
# gradient measured ~1e-6 at 32 (2e-6 at 128, 6e-7 at 8), as a step-by-step fp32 recurrence.
CHUNK_LOG_RANGE = 32.0
# Chunks of slowly varying steps: longer ones only save Python iterations, not precision.
MAX_CHUNK_LEN = 128


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


# --- checks ----------------------------------------------------------------------------------------

def _check_real(**tensors: torch.Tensor | None) -> None:
    for name, tensor in tensors.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_complex():
            raise TypeError(f"{name} must be real (with a complex A only A, B, C and initial_state are complex); "
                            f"got {_dtype_name(tensor.dtype)}")


def _check_real_or_complex(name: str, tensor: torch.Tensor) -> None:
    if not tensor.is_complex():
        check_float(name, tensor)


def _check_weight(name: str, BC, batch: int, dim: int, n_states: int, length: int) -> int | None:
    """Check B or C of the complex mode; returns its number of groups, or None when it is constant."""
    if not isinstance(BC, torch.Tensor) or BC.dim() not in (2, 3, 4):
        found = shape_str(BC.shape) if isinstance(BC, torch.Tensor) else type(BC).__name__
        raise ValueError(f"{name} must be [dim, N] (constant), [batch, N, 2L] or [batch, G, N, 2L] (variable) "
                         f"when A is complex; got {found}")
    if BC.dim() == 2:
        check_shape(name, BC, "dim, N", [dim, n_states])
        _check_real_or_complex(name, BC)
        return None
    if BC.is_complex():
        raise TypeError(f"{name} (variable) must be real when A is complex, each step t stored as the pair "
                        f"(real, imaginary) at 2t, 2t+1 of its last axis [..., 2L] (mamba-ssm's layout); "
                        f"got {_dtype_name(BC.dtype)}")
    if BC.dim() == 3:
        check_shape(name, BC, "batch, N, 2L", [batch, n_states, 2 * length])
        groups = 1
    else:
        check_shape(name, BC, "batch, G, N, 2L", [batch, None, n_states, 2 * length])
        groups = BC.shape[1]
        if groups < 1 or dim % groups:
            raise ValueError(f"dim={dim} must be a multiple of the number of groups G={groups} of {name}")
    check_float(name, BC)
    return groups


def check_complex_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state) -> int:
    """Every argument check of the complex mode; returns the number of groups G of B and C
    (1 when both are constant)."""
    _check_real(u=u, delta=delta, z=z, D=D, delta_bias=delta_bias)
    check_shape("u", u, "batch, dim, L", [None, None, None])
    check_float("u", u)
    batch, dim, length = u.shape
    for name, tensor in (("delta", delta), ("z", z)):
        if tensor is not None:
            check_shape(name, tensor, "batch, dim, L", [batch, dim, length])
            check_float(name, tensor)
            if tensor.dtype != u.dtype:
                raise TypeError(f"{name} must have the dtype of u ({_dtype_name(u.dtype)}); "
                                f"got {_dtype_name(tensor.dtype)}")
    check_shape("A", A, "dim, N", [dim, None])
    n_states = A.shape[1]
    if n_states < 1:
        raise ValueError(f"the state size N (A.shape[1]) must be at least 1; got {n_states}")
    b_groups = _check_weight("B", B, batch, dim, n_states, length)
    c_groups = _check_weight("C", C, batch, dim, n_states, length)
    if b_groups is not None and c_groups is not None and b_groups != c_groups:
        raise ValueError(f"B and C must have the same number of groups; got G={b_groups} and G={c_groups}")
    for name, tensor in (("D", D), ("delta_bias", delta_bias)):
        if tensor is not None:
            check_shape(name, tensor, "dim", [dim])
            check_float(name, tensor)
    if initial_state is not None:
        check_shape("initial_state", initial_state, "batch, dim, N", [batch, dim, n_states])
        _check_real_or_complex("initial_state", initial_state)
    check_one_device(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias, initial_state=initial_state)
    return b_groups or c_groups or 1


# --- the scan --------------------------------------------------------------------------------------

def _variable_as_complex(BC: torch.Tensor) -> torch.Tensor:
    """Real [batch, N, 2L] or [batch, G, N, 2L] (re, im pairs along time) -> complex [batch, G, N, L]."""
    pairs = (BC.unsqueeze(1) if BC.dim() == 3 else BC).float()
    return torch.complex(pairs[..., 0::2], pairs[..., 1::2])


def _weight_operand(BC: torch.Tensor, groups: int, dim: int) -> torch.Tensor:
    """B or C -> complex64 broadcastable to [batch, G, dim/G, L, N] (time before states, so that a
    chunk is a slice and the cumulative sums run along one axis)."""
    if BC.dim() == 2:   # constant: one row per channel, the same at every batch row and step
        return BC.to(STATE_DTYPE).reshape(1, groups, dim // groups, 1, BC.shape[1])
    return _variable_as_complex(BC).transpose(-1, -2).unsqueeze(2)


def _steps(operand: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Steps [start, stop) of a [..., L, N] operand; a constant one (time axis of 1) as it is."""
    return operand if operand.shape[-2] == 1 else operand[..., start:stop, :]


def _chunk_len(step: torch.Tensor, A: torch.Tensor) -> int:
    """Chunk length keeping Σ|δ_t·A| over any chunk within CHUNK_LOG_RANGE.

    The in-chunk factors e^{±S} would overflow fp32 (or underflow to 0 and lose the state) once a
    chunk's decay passes e^±88, and the cumulative phase loses precision as it grows, so chunks are
    as long as the largest step allows. One host sync per call; a single huge step gives chunks of
    one step, i.e. the plain recurrence (exp(δ·A) computed directly, exact however large)."""
    if step.numel() == 0:
        return MAX_CHUNK_LEN
    with torch.no_grad():
        largest_step = (step.abs().amax(dim=(0, 2)) * A.abs().amax(dim=1)).max().item()
    if not math.isfinite(largest_step):
        return 1
    if largest_step * MAX_CHUNK_LEN <= CHUNK_LOG_RANGE:
        return MAX_CHUNK_LEN
    return max(1, int(CHUNK_LOG_RANGE / largest_step))


def _scan_chunk(log_decay: torch.Tensor, inputs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """Every state of one chunk of h_t = exp(s_t)·h_{t-1} + x_t, exactly.

    log_decay s, inputs x: [..., T, N] complex; state: [..., N], the state before the chunk.
    Returns h [..., T, N]."""
    cumulative = torch.cumsum(log_decay, dim=-2)   # S_t
    # Σ_{k≤t} e^{S_t−S_k}·x_k = e^{S_t−m}·Σ_{k≤t} e^{m−S_k}·x_k with m the midpoint of Re S over the
    # chunk: both exponents stay within half the chunk's range. m cancels, so it takes no gradient.
    real = cumulative.real.detach()
    centre = (real.amax(dim=-2, keepdim=True) + real.amin(dim=-2, keepdim=True)) / 2
    summed_inputs = torch.cumsum(torch.exp(centre - cumulative) * inputs, dim=-2)
    return torch.exp(cumulative - centre) * summed_inputs + torch.exp(cumulative) * state.unsqueeze(-2)


def selective_scan_complex(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                           C: torch.Tensor, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                           delta_bias: torch.Tensor | None = None, delta_softplus: bool = False,
                           return_last_state: bool = False, initial_state: torch.Tensor | None = None):
    """The selective scan with complex A (conventions in the module docstring).

    u, delta, z: real [batch, dim, L]; A: complex [dim, N]; B, C: [dim, N] (complex or real) or real
    [batch, (G,) N, 2L]; D, delta_bias: real [dim]; initial_state: [batch, dim, N] (complex or real).
    Returns y [batch, dim, L] in u's dtype, and last_state complex64 [batch, dim, N] when
    ``return_last_state``. Math in fp32 / complex64; differentiable in every tensor."""
    groups = check_complex_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state)
    batch, dim, length = u.shape
    n_states = A.shape[1]
    grouped = (batch, groups, dim // groups)
    u32 = u.float()
    step = delta.float()
    if delta_bias is not None:
        step = step + delta_bias.float()[:, None]
    if delta_softplus:
        step = F.softplus(step)
    A_complex = A.to(STATE_DTYPE)
    A_grouped = A_complex.reshape(groups, dim // groups, 1, n_states)
    B_operand, C_operand = _weight_operand(B, groups, dim), _weight_operand(C, groups, dim)
    step_grouped = step.reshape(*grouped, length, 1)
    step_u = (step * u32).reshape(*grouped, length, 1)
    if initial_state is None:
        state = torch.zeros(*grouped, n_states, device=u.device, dtype=STATE_DTYPE)
    else:
        state = initial_state.to(STATE_DTYPE).reshape(*grouped, n_states)

    chunk_len = _chunk_len(step, A_complex)
    outputs = []
    for start in range(0, length, chunk_len):
        stop = min(start + chunk_len, length)
        states = _scan_chunk(step_grouped[..., start:stop, :] * A_grouped,
                             step_u[..., start:stop, :] * _steps(B_operand, start, stop), state)
        outputs.append(2 * (states * _steps(C_operand, start, stop)).real.sum(dim=-1))
        state = states[..., -1, :]
    y = torch.cat(outputs, dim=-1).reshape(batch, dim, length) if outputs else torch.zeros_like(u32)
    if D is not None:
        y = y + D.float()[:, None] * u32
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(u.dtype)
    return (y, state.reshape(batch, dim, n_states)) if return_last_state else y
