"""Float64 reference for the Mamba selective scan, written from the math of issue 3.

Per batch b, channel d and state n, with h = initial_state (or 0):

    δ_t      = delta_t[d] + delta_bias[d]            (then softplus(δ_t) when delta_softplus)
    h_t[d,n] = exp(δ_t·A[d,n]) · h_{t-1}[d,n] + δ_t · B_t[g(d),n] · u_t[d]
    y_t[d]   = Σ_n C_t[g(d),n] · h_t[d,n] + D[d]·u_t[d]          (then y_t *= silu(z_t[d]))

where g(d) = d // (dim / G) is the group of channel d. Everything is computed in float64 with
plain torch ops, so ``torch.autograd`` through it gives the float64 reference gradients.
The loop runs over time one step at a time: slow, but obviously right.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _per_channel(BC: torch.Tensor, dim: int) -> torch.Tensor:
    """[batch, N, L] or [batch, G, N, L] -> [batch, dim, N, L] (each channel sees its group's row)."""
    if BC.dim() == 3:
        BC = BC.unsqueeze(1)
    groups = BC.shape[1]
    return BC.repeat_interleave(dim // groups, dim=1)


def selective_scan_ref(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                       C: torch.Tensor, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                       delta_bias: torch.Tensor | None = None, delta_softplus: bool = False,
                       return_last_state: bool = False, initial_state: torch.Tensor | None = None,
                       restarts: frozenset[int] = frozenset()):
    """u, delta, z [batch, dim, L]; A [dim, N]; B, C [batch, (G,) N, L]; D, delta_bias [dim];
    initial_state [batch, dim, N]. Returns y [batch, dim, L] (float64), and the last state
    [batch, dim, N] when ``return_last_state``. At each step t in ``restarts`` the state before
    the step is dropped (a packed sequence starts there): h_t = δ_t·B_t·u_t."""
    f64 = torch.float64
    u, delta, A = u.to(f64), delta.to(f64), A.to(f64)
    batch, dim, length = u.shape
    Bd = _per_channel(B.to(f64), dim)
    Cd = _per_channel(C.to(f64), dim)
    if delta_bias is not None:
        delta = delta + delta_bias.to(f64)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    h = (initial_state.to(f64) if initial_state is not None
         else u.new_zeros(batch, dim, A.shape[1]))
    ys = []
    for t in range(length):
        dt = delta[:, :, t, None]                                   # [batch, dim, 1]
        carried = torch.zeros_like(h) if t in restarts else torch.exp(dt * A) * h
        h = carried + dt * Bd[..., t] * u[:, :, t, None]
        ys.append((h * Cd[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, dim, 0)
    if D is not None:
        y = y + D.to(f64)[:, None] * u
    if z is not None:
        y = y * F.silu(z.to(f64))
    return (y, h) if return_last_state else y


def selective_state_update_ref(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
                               B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None = None,
                               z: torch.Tensor | None = None, dt_bias: torch.Tensor | None = None,
                               dt_softplus: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One decode step: state [batch, dim, N]; x, dt, z [batch, dim]; B, C [batch, (G,) N].
    Returns (y [batch, dim], new_state [batch, dim, N]) in float64; nothing is updated in place."""
    y, new_state = selective_scan_ref(
        x[..., None], dt[..., None], A, B[..., None], C[..., None], D, None if z is None else z[..., None],
        dt_bias, dt_softplus, return_last_state=True, initial_state=state)
    return y[..., 0], new_state


def _complex_steps(BC: torch.Tensor, batch: int, dim: int, length: int) -> torch.Tensor:
    """B or C of the complex mode -> complex128 [batch, dim, N, L], channel d seeing its group's row.
    Constant [dim, N]: the same row at every batch row and step. Variable (real) [batch, (G,) N, 2L]:
    step t is the complex number (BC[..., 2t], BC[..., 2t+1])."""
    if BC.dim() == 2:
        return BC.to(torch.complex128)[None, :, :, None].expand(batch, dim, BC.shape[1], length)
    pairs = _per_channel(BC.to(torch.float64), dim)
    return torch.complex(pairs[..., 0::2], pairs[..., 1::2])


def selective_scan_complex_ref(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                               C: torch.Tensor, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                               delta_bias: torch.Tensor | None = None, delta_softplus: bool = False,
                               return_last_state: bool = False, initial_state: torch.Tensor | None = None,
                               restarts: frozenset[int] = frozenset()):
    """mamba-ssm's complex mode, one step at a time in complex128 / float64.

    A complex [dim, N]; B, C complex (or real) [dim, N], or real [batch, (G,) N, 2L] holding
    (real, imaginary) pairs along time; u, delta, z real [batch, dim, L]; D, delta_bias real [dim];
    initial_state [batch, dim, N] (complex or real). Per channel d and state n (h = initial_state or 0):

        h_t[d,n] = exp(δ_t·A[d,n])·h_{t-1}[d,n] + δ_t·B_t[g(d),n]·u_t[d]
        y_t[d]   = 2·Re(Σ_n C_t[g(d),n]·h_t[d,n]) + D[d]·u_t[d]          (then y_t *= silu(z_t[d]))

    (the 2 counts each state's conjugate partner). Returns y [batch, dim, L] (float64), and the last
    state [batch, dim, N] (complex128) when ``return_last_state``. ``restarts``: as in
    :func:`selective_scan_ref`."""
    u, delta, A = u.to(torch.float64), delta.to(torch.float64), A.to(torch.complex128)
    batch, dim, length = u.shape
    Bd = _complex_steps(B, batch, dim, length)
    Cd = _complex_steps(C, batch, dim, length)
    if delta_bias is not None:
        delta = delta + delta_bias.to(torch.float64)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    h = (initial_state.to(torch.complex128) if initial_state is not None
         else torch.zeros(batch, dim, A.shape[1], dtype=torch.complex128, device=u.device))
    ys = []
    for t in range(length):
        dt = delta[:, :, t, None]                                   # [batch, dim, 1]
        carried = torch.zeros_like(h) if t in restarts else torch.exp(dt * A) * h
        h = carried + dt * Bd[..., t] * u[:, :, t, None]
        ys.append(2 * (h * Cd[..., t]).sum(-1).real)
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, dim, 0)
    if D is not None:
        y = y + D.to(torch.float64)[:, None] * u
    if z is not None:
        y = y * F.silu(z.to(torch.float64))
    return (y, h) if return_last_state else y
