"""kernelgen.linear_scan: the gated linear recurrence h_t = exp(g_t) * h_{t-1} + x_t, o_t = h_t.

Drop-in for flash-linear-attention's ``chunk_hgrn`` / ``fused_recurrent_hgrn``: same layout
([B, T, D], sequence-first), log-space gates, keyword names and return values. Kernels, search
space and algorithms: templates/linear_scan.py; the math: kernelgen/reference/linear_scan.py.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from kernelgen.checks import FLOAT_DTYPES, check_float, check_same_device, check_shape
from kernelgen.dispatch import config_for
from kernelgen.templates.linear_scan import BWD, FWD, linear_scan_bwd, linear_scan_fwd


# fp32 is the state's native dtype; the others (float64 too, as a model's buffers may be) are cast.
STATE_DTYPES = (*FLOAT_DTYPES, torch.float64)


class LinearScanFunction(torch.autograd.Function):
    """Forward and backward of the scan. The backward reads h_{t-1} from the saved output o (no
    recomputation: o is already in memory, and its rounding to x's dtype is below dg's own)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, g: torch.Tensor, initial_state: torch.Tensor | None,
                output_final_state: bool):
        x, g = x.contiguous(), g.contiguous()
        h0 = initial_state.to(torch.float32).contiguous() if initial_state is not None else None
        batch, steps, width = x.shape
        shape = {"B": batch, "T": steps, "D": width}
        o = torch.empty_like(x)
        final_state = x.new_empty((batch, width), dtype=torch.float32) if output_final_state else None
        linear_scan_fwd(config_for(FWD, shape, x.dtype, "", x.device), x, g, h0, o, final_state)
        ctx.save_for_backward(g, o, h0)
        ctx.initial_dtype = initial_state.dtype if initial_state is not None else None
        ctx.set_materialize_grads(False)   # an unused final_state (or o) gives no gradient, not zeros
        return o, final_state

    @staticmethod
    @once_differentiable   # the kernels' backward is not differentiable: a double backward raises
    def backward(ctx, do: torch.Tensor | None, dfinal: torch.Tensor | None):
        g, o, h0 = ctx.saved_tensors
        batch, steps, width = o.shape
        do = torch.zeros_like(o) if do is None else do.contiguous()
        dfinal = dfinal.to(torch.float32).contiguous() if dfinal is not None else None
        dx, dg = torch.empty_like(o), torch.empty_like(g)
        dh0 = torch.empty_like(h0) if h0 is not None and ctx.needs_input_grad[2] else None
        config = config_for(BWD, {"B": batch, "T": steps, "D": width}, o.dtype, "", o.device)
        linear_scan_bwd(config, g, o, do, h0, dfinal, dx, dg, dh0)
        if dh0 is not None:
            dh0 = dh0.to(ctx.initial_dtype)
        return dx, dg, dh0, None


def linear_scan(x: torch.Tensor, g: torch.Tensor, initial_state: torch.Tensor | None = None,
                output_final_state: bool = False, cu_seqlens: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gated linear recurrence along T, per channel: h_t = exp(g_t) * h_{t-1} + x_t, o_t = h_t.

    x, g: [B, T, D], fp32/fp16/bf16 (they may differ); g is the log of the decay (<= 0 decays).
    initial_state: [B, D] (h_0; fp32 is the native dtype, fp16 / bf16 / float64 are cast) or None for zeros.
    Returns (o [B, T, D] in x's dtype, final_state = h_T [B, D] fp32, or None unless
    output_final_state; None counts as False, as in fla). Accumulation is fp32. Differentiable in
    x, g and initial_state.
    cu_seqlens: [N+1] offsets of N sequences packed along T (B must be 1, as in fla); the state
    restarts at each sequence, initial_state and final_state are then [N, D].
    """
    check_shape("x", x, "B, T, D", (None, None, None))
    check_float("x", x)
    batch, steps, width = x.shape
    check_shape("g", g, "B, T, D", (batch, steps, width))
    check_float("g", g)
    if output_final_state is None:   # fla's hgrn ops accept None for False
        output_final_state = False
    if not isinstance(output_final_state, bool):
        raise TypeError(f"output_final_state must be a bool; got {type(output_final_state).__name__}")
    if cu_seqlens is not None:
        return _linear_scan_varlen(x, g, initial_state, output_final_state, cu_seqlens)
    if initial_state is not None:
        check_shape("initial_state", initial_state, "B, D", (batch, width))
        check_float("initial_state", initial_state, STATE_DTYPES)
    check_same_device(x=x, g=g, initial_state=initial_state)
    return LinearScanFunction.apply(x, g, initial_state, output_final_state)


def _sequence_bounds(cu_seqlens: torch.Tensor, batch: int, steps: int, device: torch.device) -> list[int]:
    if batch != 1:
        raise ValueError(f"with cu_seqlens, x must hold the packed sequences as [1, T, D]; got B={batch}")
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2 \
            or cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise ValueError("cu_seqlens must be a 1-D int32/int64 tensor [N+1] of sequence offsets; got "
                         + (f"{cu_seqlens.dtype} {list(cu_seqlens.shape)}" if isinstance(cu_seqlens, torch.Tensor)
                            else type(cu_seqlens).__name__))
    # Only the offsets' values are used (read on the host), so a CPU copy is as good as x's device.
    if cu_seqlens.device not in (device, torch.device("cpu")):
        raise ValueError(f"cu_seqlens is on {cu_seqlens.device} but x is on {device}; "
                         "cu_seqlens must be on x's device or the CPU")
    bounds = cu_seqlens.tolist()   # one host sync: the padded layout is sized from the lengths
    if bounds[0] != 0 or bounds[-1] != steps or any(b < a for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"cu_seqlens must rise from 0 to T={steps}; got {bounds if len(bounds) <= 8 else bounds[:8]}")
    return bounds


def _linear_scan_varlen(x, g, initial_state, output_final_state, cu_seqlens):
    """Packed sequences, exactly: each sequence goes to its own row of a [N, max_len, D] batch, padded
    at the end with x = 0 and g = 0 (decay 1), which carries its last state unchanged to the row's end,
    so the row's final state is the sequence's. Gathering o back is differentiable, so autograd
    gives the packed gradients."""
    _, steps, width = x.shape
    device = check_same_device(x=x, g=g)   # before cu_seqlens is read on the host
    bounds = _sequence_bounds(cu_seqlens, x.shape[0], steps, device)
    count = len(bounds) - 1
    if initial_state is not None:
        check_shape("initial_state", initial_state, "N, D", (count, width))
        check_float("initial_state", initial_state, STATE_DTYPES)
    check_same_device(x=x, g=g, initial_state=initial_state)
    lengths = torch.tensor([b - a for a, b in zip(bounds, bounds[1:])], device=x.device)
    max_len = int(max(b - a for a, b in zip(bounds, bounds[1:])))
    sequence = torch.repeat_interleave(torch.arange(count, device=x.device), lengths)
    starts = torch.tensor(bounds[:-1], device=x.device)
    padded_index = sequence * max_len + torch.arange(steps, device=x.device) - starts[sequence]
    x_rows = x.new_zeros(count * max_len, width).index_copy(0, padded_index, x[0])
    g_rows = g.new_zeros(count * max_len, width).index_copy(0, padded_index, g[0])
    o_rows, final_state = LinearScanFunction.apply(x_rows.view(count, max_len, width),
                                                   g_rows.view(count, max_len, width),
                                                   initial_state, output_final_state)
    return o_rows.reshape(count * max_len, width).index_select(0, padded_index).unsqueeze(0), final_state
