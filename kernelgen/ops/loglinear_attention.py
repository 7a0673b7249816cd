"""Log-linear attention (Fenwick-tree buckets): argument checks, state object, autograd, dispatch.

    o_t = scale · Σ_{s≤t} λ[t, level(t,s)] · exp(G_t − G_s) · (q_t·k_s) · v_s,   G_t = Σ_{r≤t} g_r
    level(t, s) = 0 if s == t else bit_length(t XOR s)   (positions count from 0 in each sequence)

With λ ≡ 1 this is decayed linear attention. Kernels: templates/loglinear_attention.py; math and
float64 references: kernelgen/reference/loglinear_attention.py; notes: docs/loglinear_attention.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernelgen.checks import check_float, check_same_device, check_shape
from kernelgen.dispatch import config_for
from kernelgen.templates.loglinear_attention import (LogLinearBackward, LogLinearForward, LogLinearStep,
                                                     backward, forward, make_plan, step)

__all__ = ["LogLinearState", "loglinear_attention", "loglinear_attention_step"]

FORWARD, BACKWARD, STEP = LogLinearForward(), LogLinearBackward(), LogLinearStep()
MAX_HEAD_SIZE = 256


@dataclass
class LogLinearState:
    """What continues a sequence exactly, one entry per sequence.

    states    [N, H, Ls, K, V] fp32: ``states[:, :, l]`` is the level-l Fenwick bucket of the next
              position P, Σ_{s in bucket_l(P)} exp(G_{P−1} − G_s)·k_s·v_sᵀ, zero where bit l−1 of P
              is clear; level 0 is always zero. Ls may exceed the call's L (a position reaching a
              new power of two needs one more level).
    position  [N] int64: tokens seen so far (the next token's position P).
    max_position  host-side copy of ``position.max()`` when known, so checks need no device sync.
    """
    states: torch.Tensor
    position: torch.Tensor
    max_position: int | None = None

    @classmethod
    def zeros(cls, num_seqs: int, heads: int, levels: int, head_k: int, head_v: int,
              device: torch.device | str = "cuda") -> "LogLinearState":
        """The state of empty sequences (position 0)."""
        return cls(torch.zeros(num_seqs, heads, levels, head_k, head_v, device=device, dtype=torch.float32),
                   torch.zeros(num_seqs, dtype=torch.int64, device=device), 0)

    def known_max_position(self) -> int:
        if self.max_position is None:
            self.max_position = int(self.position.max().item()) if self.position.numel() else 0
        return self.max_position


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------
def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _scale(scale, head_k: int) -> float:
    if scale is None:
        return head_k ** -0.5
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a float or None; got {type(scale).__name__}")
    return float(scale)


def _check_inputs(q, k, v, g, level_scales, token_dims: tuple[str, ...]):
    """Shapes and dtypes of q, k, v, g, level_scales with leading dims ``token_dims``."""
    lead = ", ".join(token_dims)
    check_shape("q", q, f"{lead}, H, K", [None] * (len(token_dims) + 2))
    sizes = tuple(q.shape)
    *outer, heads, head_k = sizes
    check_shape("k", k, f"{lead}, H, K", [*outer, heads, head_k])
    check_shape("v", v, f"{lead}, H, V", [*outer, heads, None])
    check_shape("g", g, f"{lead}, H", [*outer, heads])
    check_shape("level_scales", level_scales, f"{lead}, H, L", [*outer, heads, None])
    for name, x in (("q", q), ("k", k), ("v", v), ("g", g), ("level_scales", level_scales)):
        check_float(name, x)
    for name, x in (("k", k), ("v", v)):
        if x.dtype != q.dtype:
            raise TypeError(f"{name} must have the dtype of q ({_name(q.dtype)}); got {_name(x.dtype)}")
    head_v = v.shape[-1]
    for name, size in (("K", head_k), ("V", head_v)):
        if not 1 <= size <= MAX_HEAD_SIZE:
            raise ValueError(f"head size {name} must be in [1, {MAX_HEAD_SIZE}]; got {size}")
    if level_scales.shape[-1] < 1:
        raise ValueError("level_scales must have L >= 1 levels; got 0")
    return check_same_device(q=q, k=k, v=v, g=g, level_scales=level_scales)


def _unpack_state(state, name: str, num_seqs: int, heads: int, head_k: int, head_v: int,
                  device) -> LogLinearState:
    if isinstance(state, LogLinearState):
        found = state
    elif isinstance(state, (tuple, list)) and len(state) == 2:
        found = LogLinearState(state[0], state[1])
    else:
        raise TypeError(f"{name} must be a LogLinearState or a (states, position) pair; got {type(state).__name__}")
    check_shape(f"{name}.states", found.states, "N, H, Ls, K, V", [num_seqs, heads, None, head_k, head_v])
    check_shape(f"{name}.position", found.position, "N", [num_seqs])
    if found.states.dtype != torch.float32:
        raise TypeError(f"{name}.states must be float32; got {_name(found.states.dtype)}")
    if found.position.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name}.position must be int64; got {_name(found.position.dtype)}")
    if found.states.device != torch.device(device) or found.position.device != torch.device(device):
        raise ValueError(f"{name} is on {found.states.device}/{found.position.device} but q is on {device}")
    if found.states.shape[2] < 1:
        raise ValueError(f"{name}.states must have Ls >= 1 levels; got 0")
    return found


def _check_levels(level_count: int, ends: list[int], lengths: list[int]) -> None:
    """L must cover every level a token of the call reaches: bit_length(last position) + 1."""
    last = max((e - 1 for e, n in zip(ends, lengths) if n > 0), default=0)
    needed = last.bit_length() + 1
    if level_count < needed:
        raise ValueError(f"level_scales must have L >= ceil(log2(T)) + 1 = {needed} levels for positions up to "
                         f"{last}; got L={level_count}")


def _sequence_lengths(cu_seqlens, batch: int, seq_len: int) -> list[int] | None:
    if cu_seqlens is None:
        return None
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ValueError("cu_seqlens must be a 1-D tensor [N+1] of sequence offsets")
    if cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"cu_seqlens must be int32 or int64; got {_name(cu_seqlens.dtype)}")
    if batch != 1:
        raise ValueError(f"with cu_seqlens, q must be [1, total, H, K]; got batch {batch}")
    bounds = [int(x) for x in cu_seqlens.tolist()]
    if bounds[0] != 0 or bounds[-1] != seq_len or any(b > a for a, b in zip(bounds[1:], bounds[:-1])):
        raise ValueError(f"cu_seqlens must rise from 0 to T={seq_len}; got {bounds}")
    return [b - a for a, b in zip(bounds[:-1], bounds[1:])]


def _exact_fp32(config: dict, dtype: torch.dtype) -> dict:
    """fp32 inputs multiply in exact fp32 (no tf32), whose tiles take twice the registers: they
    are not tuned, and run with chunks and tiles capped at 32 (no spills on sm_90)."""
    if dtype != torch.float32:
        return config
    return {key: (min(value, 32) if key == "chunk" or key.endswith(("_bk", "_bv")) else value)
            for key, value in config.items()}


def _bucket(template, batch: int, length: int, heads: int, head_k: int, head_v: int, levels: int,
            lengths: list[int] | None) -> dict[str, int]:
    if lengths is not None:    # packed: N sequences of (on average) total / N tokens
        batch = max(len(lengths), 1)
        length = max(length // batch, 1)
    return template.shape_of(B=batch, T=length, H=heads, K=head_k, V=head_v, L=levels)


# --------------------------------------------------------------------------------------------
# autograd
# --------------------------------------------------------------------------------------------
class _LogLinearAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, g, level_scales, scale, lengths, cu_seqlens, shape, config, plan, init, final_levels):
        o, final = forward(q, k, v, g, level_scales, scale, config, plan, cu_seqlens, init, final_levels)
        ctx.save_for_backward(q, k, v, g, level_scales)
        ctx.scale, ctx.lengths, ctx.cu_seqlens, ctx.shape = scale, lengths, cu_seqlens, shape
        ctx.set_materialize_grads(False)   # an unused final state brings None, not zeros
        return o, final

    @staticmethod
    def backward(ctx, do, d_final):
        if d_final is not None:
            raise NotImplementedError("loglinear_attention: gradients through final_state are not implemented; "
                                      "detach the final state or leave it out of the loss")
        q, k, v, g, level_scales = ctx.saved_tensors
        if do is None:
            return (None,) * 13
        config = _exact_fp32(config_for(BACKWARD, ctx.shape, q.dtype, "", q.device), q.dtype)
        batch, seq_len = q.shape[:2]
        plan = make_plan(batch, seq_len, int(config["chunk"]), ctx.lengths, None, q.device)
        dq, dk, dv, dg, dlam = backward(q, k, v, g, level_scales, do.contiguous(), ctx.scale, config, plan,
                                        ctx.cu_seqlens)
        return dq, dk, dv, dg, dlam, None, None, None, None, None, None, None, None


# --------------------------------------------------------------------------------------------
# public ops
# --------------------------------------------------------------------------------------------
def loglinear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
                        level_scales: torch.Tensor, scale: float | None = None,
                        initial_state: LogLinearState | tuple | None = None, output_final_state: bool = False,
                        cu_seqlens: torch.Tensor | None = None) -> tuple[torch.Tensor, LogLinearState | None]:
    """Log-linear attention over [B, T, H, *] inputs (or packed [1, total, H, *] with cu_seqlens [N+1]).

    q, k [B, T, H, K]; v [B, T, H, V] (one float dtype); g [B, T, H] log decay and level_scales λ
    [B, T, H, L] (any float dtype, fp32 recommended), L >= ceil(log2 T) + 1 (more levels are unused).
    Returns (o [B, T, H, V] in q's dtype, LogLinearState or None). Differentiable in q, k, v, g,
    level_scales (not with initial_state, and not through the final state).
    """
    device = _check_inputs(q, k, v, g, level_scales, ("B", "T"))
    batch, seq_len, heads, head_k = q.shape
    head_v, level_count = v.shape[-1], level_scales.shape[-1]
    scale = _scale(scale, head_k)
    lengths = _sequence_lengths(cu_seqlens, batch, seq_len)
    num_seqs = batch if lengths is None else len(lengths)
    init = starts = None
    if initial_state is not None:
        state = _unpack_state(initial_state, "initial_state", num_seqs, heads, head_k, head_v, device)
        starts = [int(p) for p in state.position.tolist()]
        if any(p < 0 for p in starts):
            raise ValueError(f"initial_state.position must be >= 0; got {starts}")
        init = state.states.contiguous()
        if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v, g, level_scales, init)):
            raise NotImplementedError("loglinear_attention: backward with initial_state is not implemented; "
                                      "run the continued call under torch.no_grad() or without initial_state")
    if cu_seqlens is not None:
        check_same_device(q=q, cu_seqlens=cu_seqlens)
        cu_seqlens = cu_seqlens.contiguous()
    seq_lengths = lengths if lengths is not None else [seq_len] * batch
    ends = [(p if starts else 0) + n for p, n in zip(starts or [0] * num_seqs, seq_lengths)]
    _check_levels(level_count, ends, seq_lengths)
    final_levels = max(level_count, max(ends, default=0).bit_length() + 1) if output_final_state else 0

    if q.numel() == 0 or v.numel() == 0:
        o = v.new_zeros(v.shape)
        if not output_final_state:
            return o, None
        final = torch.zeros(num_seqs, heads, final_levels, head_k, head_v, device=device, dtype=torch.float32)
        if init is not None:
            final[:, :, :min(final_levels, init.shape[2])] = init[:, :, :final_levels]
        return o, LogLinearState(final, torch.tensor(ends, dtype=torch.int64, device=device), max(ends, default=0))

    shape = _bucket(FORWARD, batch, seq_len, heads, head_k, head_v, level_count, lengths)
    config = _exact_fp32(config_for(FORWARD, shape, q.dtype, "", device), q.dtype)
    plan = make_plan(batch, seq_len, int(config["chunk"]), lengths, starts, device)
    tensors = [x.contiguous() for x in (q, k, v, g, level_scales)]
    o, final = _LogLinearAttention.apply(*tensors, scale, lengths, cu_seqlens, shape, config, plan, init,
                                         final_levels)
    if not output_final_state:
        return o, None
    position = torch.tensor(ends, dtype=torch.int64, device=device)
    return o, LogLinearState(final, position, max(ends, default=0))


def _squeeze_token(name: str, x: torch.Tensor, rank: int) -> torch.Tensor:
    """Accept [N, 1, ...] (one token of a [B, T, ...] layout) as well as [N, ...]."""
    if isinstance(x, torch.Tensor) and x.dim() == rank + 1 and x.shape[1] == 1:
        return x[:, 0]
    return x


def loglinear_attention_step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
                             level_scales: torch.Tensor, state: LogLinearState | tuple,
                             scale: float | None = None) -> tuple[torch.Tensor, LogLinearState | tuple]:
    """One decode token per sequence: q, k [N, H, K]; v [N, H, V]; g [N, H]; level_scales [N, H, L]
    ([N, 1, H, *] also accepted). O(L·K·V) work: every level is read for o, then levels 1..p
    (p = trailing ones of the position) merge with the token into level p + 1.

    The state is updated in place (states and position) and returned; its level count grows by
    one, in a new tensor, when the position reaches a power of two that the states cannot hold.
    A (states, position) pair works too but costs a device sync per step (the position check);
    a LogLinearState remembers its largest position on the host.
    """
    token_layout = isinstance(q, torch.Tensor) and q.dim() == 4
    q, k, v = (_squeeze_token(n, x, 3) for n, x in (("q", q), ("k", k), ("v", v)))
    g, level_scales = _squeeze_token("g", g, 2), _squeeze_token("level_scales", level_scales, 3)
    device = _check_inputs(q, k, v, g, level_scales, ("N",))
    num_seqs, heads, head_k = q.shape
    head_v, level_count = v.shape[-1], level_scales.shape[-1]
    as_pair = not isinstance(state, LogLinearState)
    found = _unpack_state(state, "state", num_seqs, heads, head_k, head_v, device)
    if found.position.dtype != torch.int64:
        raise TypeError(f"state.position must be int64 (it is advanced in place); got {_name(found.position.dtype)}")
    if not found.states.is_contiguous():
        raise ValueError("state.states must be contiguous (it is updated in place)")
    last = found.known_max_position()
    _check_levels(level_count, [last + 1], [1])
    needed = (last + 1).bit_length() + 1
    if found.states.shape[2] < needed:
        grown = found.states.new_zeros(num_seqs, heads, needed, head_k, head_v)
        grown[:, :, :found.states.shape[2]] = found.states
        found.states = grown
    config = config_for(STEP, STEP.shape_of(B=num_seqs, H=heads, K=head_k, V=head_v, L=level_count), q.dtype, "",
                        device)
    tensors = [x.contiguous() for x in (q, k, v, g, level_scales)]
    o = step(*tensors, found.states, found.position, _scale(scale, head_k), config)
    found.position.add_(1)
    found.max_position = last + 1
    if token_layout:
        o = o[:, None]
    return o, ((found.states, found.position) if as_pair else found)
