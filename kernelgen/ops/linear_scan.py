"""kernelgen.linear_scan: the gated linear recurrence h_t = exp(g_t) * h_{t-1} + x_t, o_t = h_t.

Drop-in for flash-linear-attention's ``chunk_hgrn`` / ``fused_recurrent_hgrn``: same layout
([B, T, D], sequence-first), log-space gates, keyword names and return values. Kernels, search
space and algorithms: templates/linear_scan.py; the math: kernelgen/reference/linear_scan.py.
"""
from __future__ import annotations

import torch

from kernelgen.checks import FLOAT_DTYPES, check_float, check_same_device, check_shape
from kernelgen.grid import MAX_GRID_YZ, grid_groups
from kernelgen.dispatch import config_for
from kernelgen.ops import eager_op, first_order
from kernelgen.templates.linear_scan import BWD, FWD, linear_scan_bwd, linear_scan_fwd


# fp32 is the state's native dtype; the others (float64 too, as a model's buffers may be) are cast.
STATE_DTYPES = (*FLOAT_DTYPES, torch.float64)
# The sequential and chunked kernels put the batch on the grid's z axis, which CUDA caps at 65535:
# larger batches run in groups of rows, one launch each.
MAX_GRID_Z = MAX_GRID_YZ


def _launch_in_batch_groups(template, launch, dtype: torch.dtype, *tensors: torch.Tensor | None) -> None:
    """launch(config, *tensors) on at most MAX_GRID_Z rows of the batch (dim 0) at a time, each
    group with its own config; None passes through. Rows of a contiguous tensor are contiguous views."""
    batch, steps, width = tensors[0].shape
    groups = [tensors] if batch <= MAX_GRID_Z else [tuple(None if t is None else t[start:stop] for t in tensors)
                                                     for start, stop in grid_groups(batch, 1, MAX_GRID_Z)]
    for group in groups:
        shape = {"B": group[0].shape[0], "T": steps, "D": width}
        launch(config_for(template, shape, dtype, "", tensors[0].device), *group)


class LinearScanFunction(torch.autograd.Function):
    """Forward and backward of the scan. The backward reads h_{t-1} from the saved output o (no
    recomputation: o is already in memory, and its rounding to x's dtype is below dg's own).
    o is written in ``out_dtype`` (x's for the public op; fp32 where packed sequences gather
    their fp32 final states from o)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, g: torch.Tensor, initial_state: torch.Tensor | None,
                output_final_state: bool, out_dtype: torch.dtype):
        x, g = x.contiguous(), g.contiguous()
        h0 = initial_state.to(torch.float32).contiguous() if initial_state is not None else None
        batch, _, width = x.shape
        o = torch.empty_like(x, dtype=out_dtype)
        final_state = x.new_empty((batch, width), dtype=torch.float32) if output_final_state else None
        _launch_in_batch_groups(FWD, linear_scan_fwd, x.dtype, x, g, h0, o, final_state)
        ctx.save_for_backward(g, o, h0)
        ctx.x_dtype = x.dtype
        ctx.initial_dtype = initial_state.dtype if initial_state is not None else None
        ctx.set_materialize_grads(False)   # an unused final_state (or o) gives no gradient, not zeros
        return o, final_state

    @staticmethod
    @first_order   # the kernels' backward is not differentiable: a double backward raises
    def backward(ctx, do: torch.Tensor | None, dfinal: torch.Tensor | None):
        g, o, h0 = ctx.saved_tensors
        do = torch.zeros_like(o) if do is None else do.contiguous()
        dfinal = dfinal.to(torch.float32).contiguous() if dfinal is not None else None
        dx, dg = torch.empty_like(o, dtype=ctx.x_dtype), torch.empty_like(g)
        dh0 = torch.empty_like(h0) if h0 is not None and ctx.needs_input_grad[2] else None
        _launch_in_batch_groups(BWD, linear_scan_bwd, o.dtype, g, o, do, h0, dfinal, dx, dg, dh0)
        if dh0 is not None:
            dh0 = dh0.to(ctx.initial_dtype)
        return dx, dg, dh0, None, None


@eager_op
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
    restarts at each sequence, initial_state and final_state are then [N, D]. The packed row runs
    as it is, one [1, T, D] scan with no padding (memory and work grow with T, not N * max length);
    with initial_state, or final_state asked for, x or o is carried in fp32 there so that states
    keep fp32 accuracy. A restart multiplies the previous state by 0, so a state that overflowed to
    inf in one sequence makes the next one NaN.
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
        return _linear_scan_packed(x, g, initial_state, output_final_state, cu_seqlens)
    if initial_state is not None:
        check_shape("initial_state", initial_state, "B, D", (batch, width))
        check_float("initial_state", initial_state, STATE_DTYPES)
    check_same_device(x=x, g=g, initial_state=initial_state)
    return LinearScanFunction.apply(x, g, initial_state, output_final_state, x.dtype)


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
    bounds = cu_seqlens.tolist()   # one host sync: the resets and gathers index by the offsets
    if bounds[0] != 0 or bounds[-1] != steps or any(b < a for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"cu_seqlens must rise from 0 to T={steps}; got {bounds if len(bounds) <= 8 else bounds[:8]}")
    return bounds


def _linear_scan_packed(x, g, initial_state, output_final_state, cu_seqlens):
    """Packed sequences as one [1, T, D] row of the scan, no padding. At each sequence's first token
    s the gate becomes -inf (decay exactly 0), so no state flows in from the sequence before, and
    h0 enters through that token's own step: x_s' = x_s + exp(g_s) * h0. final_state is h at each
    sequence's last token, or h0 (zeros) for an empty one. The reset, the fold and the gather are
    differentiable torch ops around the scan, so autograd gives the exact gradients."""
    _, steps, width = x.shape
    device = check_same_device(x=x, g=g)   # before cu_seqlens is read on the host
    bounds = _sequence_bounds(cu_seqlens, x.shape[0], steps, device)
    count = len(bounds) - 1
    if initial_state is not None:
        check_shape("initial_state", initial_state, "N, D", (count, width))
        check_float("initial_state", initial_state, STATE_DTYPES)
    check_same_device(x=x, g=g, initial_state=initial_state)
    offsets = torch.tensor(bounds)
    kept = (offsets[1:] > offsets[:-1]).nonzero().squeeze(1)   # the non-empty sequences
    kept, firsts, lasts = torch.stack((kept, offsets[kept], offsets[kept + 1] - 1)).to(device).unbind(0)

    g_row = g[0].index_fill(0, firsts, float("-inf"))
    x_row = x[0]
    h0 = initial_state.to(torch.float32) if initial_state is not None else None
    if h0 is not None:
        # In fp32: rounding x_s' to a 16-bit x would round the fp32 state h0 with it.
        decay_first = torch.exp(g[0].index_select(0, firsts).float())
        x_row = x_row.float().index_add(0, firsts, decay_first * h0.index_select(0, kept))
    # o in fp32 when the fp32 final states are gathered from it, else in x's dtype.
    out_dtype = torch.float32 if output_final_state else x.dtype
    o_row, _ = LinearScanFunction.apply(x_row[None], g_row[None], None, False, out_dtype)
    o = o_row.to(x.dtype)
    if not output_final_state:
        return o, None
    start = h0 if h0 is not None else x.new_zeros((count, width), dtype=torch.float32)
    return o, start.index_copy(0, kept, o_row[0].index_select(0, lasts))
