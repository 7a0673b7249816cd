"""Float64 reference of the linear-recurrence scan, written from the math.

    h_0 = initial_state (or 0),   h_t = exp(g_t) * h_{t-1} + x_t,   o_t = h_t,   final_state = h_T

Backward, with dh_T = do_T + dfinal and dh_t = do_t + exp(g_{t+1}) * dh_{t+1}:
    dx_t = dh_t,   dg_t = dh_t * exp(g_t) * h_{t-1},   d initial_state = exp(g_1) * dh_1.

Shapes: x, g, o: [B, T, D] (sequence-first, as flash-linear-attention's hgrn ops); states [B, D].
Everything is computed in float64 on the inputs' device.

Each step h -> a*h + b is an affine map, and composing maps is associative, so the scan is done
by recursive doubling (Hillis-Steele): log2(T) vectorised passes, each exact in the same sense as
the sequential loop (products of decays, sums of decayed inputs, no division). That keeps the
reference fast enough to verify every tuning trial at T = 65536 on the GPU. ``linear_scan_loop``
is the literal sequential recurrence, for cross-checking on small shapes.
"""
from __future__ import annotations

import torch


def _affine_scan(decay: torch.Tensor, value: torch.Tensor, reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive scan of the maps h -> decay_t * h + value_t along dim 1 ([B, T, D]).

    Returns (A, H) with h_t = A_t * h_start + H_t, where A_t is the product of the decays applied
    so far and H_t the state reached from h_start = 0. ``reverse`` scans from t = T-1 down to 0.
    """
    a, b = decay.clone(), value.clone()
    if reverse:
        a, b = a.flip(1), b.flip(1)
    steps = a.shape[1]
    shift = 1
    while shift < steps:
        # Element t absorbs the composed map of the `shift` elements before it.
        a_prev, b_prev = a[:, :-shift], b[:, :-shift]
        new_b = b.clone()
        new_b[:, shift:] = a[:, shift:] * b_prev + b[:, shift:]
        new_a = a.clone()
        new_a[:, shift:] = a[:, shift:] * a_prev
        a, b = new_a, new_b
        shift *= 2
    if reverse:
        a, b = a.flip(1), b.flip(1)
    return a, b


def linear_scan_ref(x: torch.Tensor, g: torch.Tensor, initial_state: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(o, final_state) in float64; o [B, T, D], final_state [B, D] (= h0 or 0 when T = 0)."""
    x64, g64 = x.to(torch.float64), g.to(torch.float64)
    batch, _, width = x64.shape
    h0 = (initial_state.to(torch.float64) if initial_state is not None
          else torch.zeros(batch, width, dtype=torch.float64, device=x64.device))
    decay_prod, local = _affine_scan(torch.exp(g64), x64)
    o = decay_prod * h0[:, None, :] + local
    final = o[:, -1] if o.shape[1] > 0 else h0.clone()
    return o, final


def linear_scan_backward_ref(x: torch.Tensor, g: torch.Tensor, initial_state: torch.Tensor | None,
                             do: torch.Tensor | None, dfinal: torch.Tensor | None
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dg, d initial_state) in float64 for upstream gradients ``do`` [B, T, D] and ``dfinal`` [B, D]
    (either may be None = zero). h_{t-1} is recomputed exactly from x, g and initial_state."""
    x64, g64 = x.to(torch.float64), g.to(torch.float64)
    batch, steps, width = x64.shape
    zeros_state = torch.zeros(batch, width, dtype=torch.float64, device=x64.device)
    h0 = initial_state.to(torch.float64) if initial_state is not None else zeros_state
    do64 = do.to(torch.float64) if do is not None else torch.zeros_like(x64)
    dfinal64 = dfinal.to(torch.float64) if dfinal is not None else zeros_state
    if steps == 0:
        return torch.zeros_like(x64), torch.zeros_like(g64), dfinal64.clone()
    decay = torch.exp(g64)
    # dh_t = do_t + exp(g_{t+1}) dh_{t+1}: a reverse scan whose decay at t is exp(g_{t+1}), with
    # exp(g_{T+1}) := 1 so that dfinal enters as the state "after" the last step.
    shifted = torch.cat([decay[:, 1:], torch.ones_like(decay[:, :1])], dim=1)
    decay_prod, local = _affine_scan(shifted, do64, reverse=True)
    dh = decay_prod * dfinal64[:, None, :] + local
    h, _ = linear_scan_ref(x64, g64, h0)
    h_prev = torch.cat([h0[:, None, :], h[:, :-1]], dim=1)
    dg = dh * decay * h_prev
    dh0 = decay[:, 0] * dh[:, 0]
    return dh, dg, dh0


def linear_scan_loop(x: torch.Tensor, g: torch.Tensor, initial_state: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence as written, one step at a time, in float64 (differentiable; small shapes only)."""
    x64, g64 = x.to(torch.float64), g.to(torch.float64)
    h = (initial_state.to(torch.float64) if initial_state is not None
         else torch.zeros(x64.shape[0], x64.shape[2], dtype=torch.float64, device=x64.device))
    outs = []
    for t in range(x64.shape[1]):
        h = torch.exp(g64[:, t]) * h + x64[:, t]
        outs.append(h)
    o = torch.stack(outs, dim=1) if outs else x64.new_zeros(x64.shape)
    return o, h
