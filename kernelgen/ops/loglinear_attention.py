"""Log-linear attention (Fenwick-tree buckets): argument checks, state object, autograd, dispatch.

    o_t = scale · Σ_{s≤t} λ[t, level(t,s)] · exp(G_t − G_s) · (q_t·k_s) · v_s,   G_t = Σ_{r≤t} g_r
    level(t, s) = 0 if s == t else bit_length(t XOR s)   (positions count from 0 in each sequence)

With λ ≡ 1 this is decayed linear attention. Kernels: templates/loglinear_attention.py; math and
float64 references: kernelgen/reference/loglinear_attention.py; notes: docs/loglinear_attention.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate

import torch
from torch.autograd.graph import increment_version

from kernelgen.checks import (bf16_dot_on_interpreter, check_cu_seqlens, check_cu_values, check_float,
                              check_same_device, check_scale, check_shape)
from kernelgen.dispatch import config_for
from kernelgen.ops import eager_op, first_order
from kernelgen.templates.loglinear_attention import (LogLinearBackward, LogLinearForward, LogLinearStep,
                                                     backward, backward_can_read_blocks, forward, make_plan, step)

__all__ = ["LogLinearState", "loglinear_attention", "loglinear_attention_step"]

FORWARD, BACKWARD, STEP = LogLinearForward(), LogLinearBackward(), LogLinearStep()
MAX_HEAD_SIZE = 256
# The chunked kernels index token positions (a sequence's start plus its tokens) in 32 bits.
MAX_POSITION = 2 ** 31 - 1
# g and level_scales may come in any float dtype; float64 is rounded to fp32 for the kernels (a
# differentiable cast: its gradients come back in float64)
GATE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _gates_for_kernels(g: torch.Tensor, level_scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(x.float() if x.dtype == torch.float64 else x for x in (g, level_scales))


@dataclass
class LogLinearState:
    """What continues a sequence exactly, one entry per sequence.

    states    [N, H, Ls, K, V] fp32: ``states[:, :, l]`` is the level-l Fenwick bucket of the next
              position P, Σ_{s in bucket_l(P)} exp(G_{P−1} − G_s)·k_s·v_sᵀ, zero where bit l−1 of P
              is clear; level 0 is always zero. Ls may exceed the call's L (a position reaching a
              new power of two needs one more level).
    position  [N] int64: tokens seen so far (the next token's position P).
    max_position  host-side copy of ``position.max()`` when known, so checks need no device sync.
              It is trusted: code that writes ``position`` in place (e.g. loading a sequence into
              a slot of a serving cache) must set it too, or to None to have it read again; a
              stale value skips the level check and decides when the state grows new levels.
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
        """The largest position, read from the device once (one sync, which also checks that no
        position is negative: the step would advance a meaningless state)."""
        if self.max_position is None:
            low, high = torch.stack(torch.aminmax(self.position)).tolist() if self.position.numel() else (0, 0)
            if low < 0:
                raise ValueError(f"state.position must be >= 0; got a position of {low}")
            self.max_position = int(high)
        return self.max_position


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------
def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


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
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_float(name, x)
    for name, x in (("g", g), ("level_scales", level_scales)):
        check_float(name, x, GATE_DTYPES)
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


def _sequence_lengths(cu_seqlens, batch: int, seq_len: int, device) -> list[int] | None:
    """Lengths of the packed sequences; cu_seqlens is checked (type, batch 1, device, values)
    before anything reads it, since the kernels index tokens with it."""
    if cu_seqlens is None:
        return None
    cu_seqlens = check_cu_seqlens(cu_seqlens, batch)
    if cu_seqlens.device != torch.device(device):
        raise ValueError(f"cu_seqlens is on {cu_seqlens.device} but q is on {device}; all inputs must be on one device")
    bounds = check_cu_values(cu_seqlens, seq_len)
    if bounds is None:   # capturing a CUDA graph: the plan needs the lengths on the host regardless
        bounds = [int(x) for x in cu_seqlens.tolist()]
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
# state terms: the initial state's share of o and the final state, differentiated in plain torch
# --------------------------------------------------------------------------------------------
# The kernels' backward covers the pairs of the call's own tokens. What a state adds is linear in
# it, and the level a token sees it at is constant over a few runs of tokens (at most one per
# level), so its gradients are a few O(T·K·V) fp32 products per run (log decays summed in
# float64). They run only when a call continues from a state or a loss reads the final state.
@dataclass
class _Span:
    """Sequences of one call that start at the same position: where their tokens and states live."""
    rows: slice | torch.Tensor     # batch rows
    tokens: slice                  # tokens of those rows
    seqs: slice | torch.Tensor     # entries of the states (N)
    start: int                     # position of the first token


def _sequence_spans(batch: int, lengths: list[int] | None, starts: list[int] | None, device) -> list[_Span]:
    """Dense rows grouped by start position (one group when they share it), or one per packed sequence."""
    starts = starts if starts is not None else [0] * (batch if lengths is None else len(lengths))
    if lengths is not None:
        bounds = [0, *accumulate(lengths)]
        return [_Span(slice(0, 1), slice(a, a + n), slice(i, i + 1), p)
                for i, (a, n, p) in enumerate(zip(bounds, lengths, starts))]
    if len(set(starts)) == 1:
        return [_Span(slice(None), slice(None), slice(None), starts[0])]
    spans = []
    for p in sorted(set(starts)):
        rows = torch.tensor([i for i, s in enumerate(starts) if s == p], dtype=torch.int64, device=device)
        spans.append(_Span(rows, slice(None), rows, p))
    return spans


def _distance_spans(start: int, length: int) -> list[tuple[int, int, int]]:
    """(d, first, stop): the tokens j in [first, stop) with bit_length((start + j) XOR start) == d.
    Tokens within an aligned 2^d block of ``start`` have distance ≤ d, so each d is one run."""
    spans, first, dist = [], 0, 0
    while first < length:
        stop = min(length, (((start >> dist) + 1) << dist) - start)
        if stop > first:
            spans.append((dist, first, stop))
            first = stop
        dist += 1
    return spans


def _end_bucket_spans(start: int, length: int) -> list[tuple[int, int, int]]:
    """(l, first, stop): the tokens j in [first, stop) that lie in the level-l bucket of the end
    position ``start + length`` (the final state's level l)."""
    end, spans = start + length, []
    for level in range(1, end.bit_length() + 1):
        if (end >> (level - 1)) & 1:
            low = (end >> level) << level
            first, stop = max(low, start) - start, min(low + (1 << (level - 1)), end) - start
            if first < stop:
                spans.append((level, first, stop))
    return spans


def _read_columns(dist: int, levels_used: int) -> tuple[int, int]:
    """(first λ column, column count) a token at distance ``dist`` reads the initial state with:
    levels 1 … min(first, levels_used − 1) merged into column first = max(dist, 1), then each
    higher level l < levels_used in its own column l."""
    first = max(dist, 1)
    return first, 1 + max(0, levels_used - 1 - first)


# fp32 values of one token chunk's products with the state matrices it reads: the backward of
# the initial state's share runs a distance span at a time, in chunks of tokens whose temporaries
# (about three of this size at once) stay bounded whatever T and the level count
_SHARE_CHUNK_VALUES = 1 << 25


def _initial_share_backward(q, lam, do, states, G, scale: float, start: int):
    """Gradients of o_t += scale·e^{G_t}·Σ_l λ[t, max(l, d_t)]·q_t·S_l over levels 1 ≤ l < min(Ls, L),
    d_t = bit_length(t XOR start), for one span (fp32 [R, n, H, *], states [R, H, Ls, K, V]; G float64).
    Returns (dq, dλ, dG, dS); dG is per token (before the reverse cumsum into dg).

    A distance span's tokens read the same J matrices (the merged low levels, then each higher
    level), so each chunk of them takes two batched products over all J at once: S_j·do_t, giving
    dλ, dG and dq, and Σ_t coef·q_t ⊗ do_t, giving dS. The higher levels are read and their
    gradients accumulated in place (views of states and dS): no copy of the states is made."""
    dlam, dG = torch.zeros_like(lam), torch.zeros_like(G)
    dS = torch.zeros(states.shape, device=states.device, dtype=torch.float32)   # contiguous: viewed below
    R, n, H, K = q.shape
    levels_used = min(states.shape[2], lam.shape[-1])
    if levels_used <= 1 or q.numel() == 0:
        return torch.zeros_like(q), dlam, dG, dS
    V = do.shape[-1]
    q_h, do_h = q.transpose(1, 2).contiguous(), do.transpose(1, 2).contiguous()     # [R, H, n, *]
    lam_h = lam.transpose(1, 2)
    weight = (scale * torch.exp(G)).float().transpose(1, 2)                          # [R, H, n]
    dq_h = torch.zeros_like(q_h)
    for dist, a, b in _distance_spans(start, n):
        first, count = _read_columns(dist, levels_used)
        merged = min(first, levels_used - 1)
        higher = count - 1                                   # levels first + 1 … levels_used − 1
        merged_t = states[:, :, 1:merged + 1].sum(2).transpose(-1, -2)               # [R, H, V, K]
        higher_t = states[:, :, first + 1:levels_used].reshape(R, H, higher * K, V).transpose(-1, -2)
        d_merged = torch.zeros(R, H, K, V, device=q.device, dtype=torch.float32)
        d_higher = dS[:, :, first + 1:levels_used].view(R * H, higher * K, V)         # dS itself
        step = max(1, _SHARE_CHUNK_VALUES // (R * H * count * K))
        for c0 in range(a, b, step):
            m = min(b, c0 + step) - c0
            q_c, do_c = q_h[:, :, c0:c0 + m], do_h[:, :, c0:c0 + m]
            reads = torch.matmul(do_c, merged_t)[:, :, :, None]                      # S_j·do_t, [R, H, m, J, K]
            if higher:
                reads = torch.cat([reads, torch.matmul(do_c, higher_t).view(R, H, m, higher, K)], 3)
            d_w = weight[:, :, c0:c0 + m, None] * (reads * q_c[:, :, :, None]).sum(-1)   # [R, H, m, J]
            lam_c = lam_h[:, :, c0:c0 + m, first:first + count]
            dlam[:, c0:c0 + m, :, first:first + count] = d_w.transpose(1, 2)
            dG[:, c0:c0 + m] += (lam_c * d_w).sum(-1).transpose(1, 2)
            coef = weight[:, :, c0:c0 + m, None] * lam_c
            dq_h[:, :, c0:c0 + m] = (coef[..., None] * reads).sum(-2)
            del reads
            weighted_q = coef[..., None] * q_c[:, :, :, None]                          # [R, H, m, J, K]
            d_merged += torch.matmul(weighted_q[:, :, :, 0].transpose(-1, -2), do_c)
            if higher:
                d_higher.baddbmm_(weighted_q[:, :, :, 1:].reshape(R * H, m, higher * K).transpose(1, 2),
                                  do_c.reshape(R * H, m, V))
        dS[:, :, 1:merged + 1] += d_merged[:, :, None]       # the merged column feeds each of its levels
    return dq_h.transpose(1, 2), dlam, dG, dS


def _final_state_backward(k, v, G, d_final, states, start: int):
    """Gradients of the final state F_l = Σ_{s in bucket_l(end)} e^{G_last − G_s}·k_s·v_sᵀ
    + e^{G_last}·Σ_{l': max(l', d_end) = l} S_l' (d_end = bit_length(end XOR start)) for one span
    (fp32 [R, n, H, *], d_final [R, H, L_out, K, V]; G float64). Returns (dk, dv, dG, dS or None)."""
    count, length = k.shape[0], k.shape[1]
    final_levels = d_final.shape[2]
    dk, dv, dG = torch.zeros_like(k), torch.zeros_like(v), torch.zeros_like(G)
    g_last = G[:, -1] if length else G.new_zeros(count, G.shape[2])
    d_last = torch.zeros_like(g_last)            # ∂/∂G_last: every term of F decays from the last token
    for level, a, b in _end_bucket_spans(start, length):
        decay = torch.exp(g_last[:, None] - G[:, a:b]).float()[..., None]
        d_state = d_final[:, :, level]
        dk_span = decay * torch.einsum("rnhv,rhkv->rnhk", v[:, a:b], d_state)
        dk[:, a:b] = dk_span
        dv[:, a:b] = decay * torch.einsum("rnhk,rhkv->rnhv", k[:, a:b], d_state)
        term = (k[:, a:b] * dk_span).sum(-1)
        dG[:, a:b] -= term
        d_last += term.sum(1)
    dS = None
    if states is not None:
        dS = torch.zeros_like(states)
        d_end = (start ^ (start + length)).bit_length()
        e_last = torch.exp(g_last).float()
        for level in range(1, states.shape[2]):
            target = max(level, d_end)
            if target < final_levels:
                dS[:, :, level] = e_last[..., None, None] * d_final[:, :, target]
                d_last += e_last * (d_final[:, :, target] * states[:, :, level]).sum((-2, -1))
    if length:
        dG[:, -1] += d_last
    return dk, dv, dG, dS


def _fp32_zeros(like: torch.Tensor | None, wanted: bool = True) -> torch.Tensor | None:
    return torch.zeros(like.shape, device=like.device, dtype=torch.float32) if wanted and like is not None else None


def _state_backward(q, k, v, g, lam, init, do, d_final, scale: float, spans: list[_Span]):
    """fp32 (dq, dk, dv, dg, dλ, d_init) of the state terms; None where no term reaches."""
    with_init = init is not None and do is not None
    dq, dlam = _fp32_zeros(q, with_init), _fp32_zeros(lam, with_init)
    dk, dv = _fp32_zeros(k, d_final is not None), _fp32_zeros(v, d_final is not None)
    dg, d_init = _fp32_zeros(g), _fp32_zeros(init)
    for span in spans:
        at = (span.rows, span.tokens)
        G = g[at].double().cumsum(1)          # float64: G_last − G_s stays exact on long sequences
        dG = torch.zeros_like(G)
        states = init[span.seqs].float() if init is not None else None
        if with_init:
            span_dq, span_dlam, span_dG, span_dS = _initial_share_backward(
                q[at].float(), lam[at].float(), do[at].float(), states, G, scale, span.start)
            dq[at], dlam[at], d_init[span.seqs] = span_dq, span_dlam, span_dS
            dG += span_dG
        if d_final is not None:
            span_dk, span_dv, span_dG, span_dS = _final_state_backward(
                k[at].float(), v[at].float(), G, d_final[span.seqs].float(), states, span.start)
            dk[at], dv[at] = span_dk, span_dv
            dG += span_dG
            if span_dS is not None:
                d_init[span.seqs] += span_dS
        dg[at] = dG.flip(1).cumsum(1).flip(1).float()    # dg_t = Σ_{t' ≥ t} dG_t' inside the sequence
    return dq, dk, dv, dg, dlam, d_init


def _add_grad(kernel_grad, state_grad, like: torch.Tensor):
    """Kernel gradient (input dtype) plus the fp32 state-term gradient, in the input's dtype."""
    if state_grad is None:
        return kernel_grad
    if kernel_grad is None:
        return state_grad.to(like.dtype)
    return (kernel_grad.float() + state_grad).to(like.dtype)


# --------------------------------------------------------------------------------------------
# autograd
# --------------------------------------------------------------------------------------------
class _NoTokens(torch.autograd.Function):
    """o of a call without tokens (B, T or H is 0): empty, with empty gradients for every input."""

    @staticmethod
    def forward(ctx, q, k, v, g, level_scales):
        ctx.inputs = [(x.shape, x.dtype, x.device) for x in (q, k, v, g, level_scales)]
        return v.new_zeros(v.shape)

    @staticmethod
    def backward(ctx, do):
        return tuple(torch.zeros(shape, dtype=dtype, device=device) for shape, dtype, device in ctx.inputs)


class _LogLinearAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, g, level_scales, init, scale, lengths, starts, cu_seqlens, shape, config, plan,
                final_levels, save_blocks):
        kept = None
        if save_blocks and init is None and not final_levels:   # only blocks the backward will read
            bwd_config = _exact_fp32(config_for(BACKWARD, shape, q.dtype, "", q.device), q.dtype)
            kept = [] if backward_can_read_blocks(plan, config, bwd_config) else None
        o, final = forward(q, k, v, g, level_scales, scale, config, plan, cu_seqlens, init, final_levels,
                           keep_blocks=kept)
        # (the kernels' own intermediates, never handed out: kept on ctx, dropped after one use)
        ctx.saved_blocks = kept[0] if kept else None
        ctx.save_for_backward(q, k, v, g, level_scales, init)
        ctx.scale, ctx.lengths, ctx.starts, ctx.cu_seqlens, ctx.shape = scale, lengths, starts, cu_seqlens, shape
        ctx.set_materialize_grads(False)   # an unused o or final state brings None, not zeros
        return o, final

    @staticmethod
    @first_order   # the kernels' backward is not differentiable: a double backward raises
    def backward(ctx, do, d_final):
        q, k, v, g, level_scales, init = ctx.saved_tensors
        inputs = (q, k, v, g, level_scales)
        grads = [None] * 5
        if do is not None:
            do = do.contiguous()
            config = _exact_fp32(config_for(BACKWARD, ctx.shape, q.dtype, "", q.device), q.dtype)
            batch, seq_len = q.shape[:2]
            plan = make_plan(batch, seq_len, int(config["chunk"]), ctx.lengths, ctx.starts, q.device)
            grads = list(backward(*inputs, do, ctx.scale, config, plan, ctx.cu_seqlens, saved=ctx.saved_blocks))
        ctx.saved_blocks = None
        d_init = None
        if d_final is not None or (init is not None and do is not None):
            spans = _sequence_spans(q.shape[0], ctx.lengths, ctx.starts, q.device)
            *state_grads, d_init = _state_backward(*inputs, init, do, d_final, ctx.scale, spans)
            grads = [_add_grad(a, b, x) for a, b, x in zip(grads, state_grads, inputs)]
        return (*grads, d_init) + (None,) * 9


# --------------------------------------------------------------------------------------------
# public ops
# --------------------------------------------------------------------------------------------
@eager_op
def loglinear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
                        level_scales: torch.Tensor, scale: float | None = None,
                        initial_state: LogLinearState | tuple | None = None, output_final_state: bool = False,
                        cu_seqlens: torch.Tensor | None = None, save_blocks: bool = False,
                        ) -> tuple[torch.Tensor, LogLinearState | None]:
    """Log-linear attention over [B, T, H, *] inputs (or packed [1, total, H, *] with cu_seqlens [N+1]).

    q, k [B, T, H, K]; v [B, T, H, V] (one float dtype); g [B, T, H] log decay and level_scales λ
    [B, T, H, L] (any float dtype, fp32 recommended; float64 is rounded to fp32), L >= ceil(log2 T) + 1
    (more levels are unused).
    Returns (o [B, T, H, V] in q's dtype, LogLinearState or None). Differentiable in q, k, v, g,
    level_scales and initial_state.states, through o and through the final state's states.
    Token positions (initial_state.position plus the tokens of the call) stop at 2^31 - 1 here;
    loglinear_attention_step continues a sequence at any int64 position.

    save_blocks: keep the forward's chunk-block states [chunks, H, K, V] (V / chunk times the size
    of k: 2× at V = 128, chunk 64) until the backward, which then does not rebuild them (training
    from position 0 with no state in or out; elsewhere the flag changes nothing). Memory for time.
    """
    if bf16_dot_on_interpreter(q, k, v):
        o, final_state = loglinear_attention(q.float(), k.float(), v.float(), g, level_scales, scale, initial_state,
                                             output_final_state, cu_seqlens, save_blocks)
        return o.to(q.dtype), final_state
    device = _check_inputs(q, k, v, g, level_scales, ("B", "T"))
    g, level_scales = _gates_for_kernels(g, level_scales)
    batch, seq_len, heads, head_k = q.shape
    head_v, level_count = v.shape[-1], level_scales.shape[-1]
    scale = check_scale(scale, head_k)
    for flag, value in (("output_final_state", output_final_state), ("save_blocks", save_blocks)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be a bool; got {type(value).__name__}")
    lengths = _sequence_lengths(cu_seqlens, batch, seq_len, device)
    num_seqs = batch if lengths is None else len(lengths)
    init = starts = None
    if initial_state is not None:
        state = _unpack_state(initial_state, "initial_state", num_seqs, heads, head_k, head_v, device)
        starts = [int(p) for p in state.position.tolist()]
        if any(p < 0 for p in starts):
            raise ValueError(f"initial_state.position must be >= 0; got {starts}")
        init = state.states.contiguous()
    if cu_seqlens is not None:
        cu_seqlens = cu_seqlens.contiguous()
    seq_lengths = lengths if lengths is not None else [seq_len] * batch
    ends = [(p if starts else 0) + n for p, n in zip(starts or [0] * num_seqs, seq_lengths)]
    _check_levels(level_count, ends, seq_lengths)
    if any(n and e > MAX_POSITION + 1 for e, n in zip(ends, seq_lengths)):
        raise ValueError(f"loglinear_attention takes token positions up to 2^31 - 1 (its kernels index them in "
                         f"32 bits); this call reaches {max(ends) - 1}. loglinear_attention_step continues a "
                         "sequence at any int64 position")
    final_levels = max(level_count, max(ends, default=0).bit_length() + 1) if output_final_state else 0

    if q.numel() == 0 or v.numel() == 0:
        # no token: o is empty, and still a node of the graph (its inputs' gradients are empty, not
        # missing, as the other ops give); the final state is the initial one, level 0 (always
        # zero) left out as every call with tokens leaves it
        inputs = (q, k, v, g, level_scales)
        o = _NoTokens.apply(*inputs) if torch.is_grad_enabled() and any(x.requires_grad for x in inputs) \
            else v.new_zeros(v.shape)
        if not output_final_state:
            return o, None
        final = torch.zeros(num_seqs, heads, final_levels, head_k, head_v, device=device, dtype=torch.float32)
        if init is not None:
            kept = min(final_levels, init.shape[2])
            final[:, :, 1:kept] = init[:, :, 1:kept]
        return o, LogLinearState(final, torch.tensor(ends, dtype=torch.int64, device=device), max(ends, default=0))

    shape = _bucket(FORWARD, batch, seq_len, heads, head_k, head_v, level_count, lengths)
    config = _exact_fp32(config_for(FORWARD, shape, q.dtype, "", device), q.dtype)
    plan = make_plan(batch, seq_len, int(config["chunk"]), lengths, starts, device)
    tensors = [x.contiguous() for x in (q, k, v, g, level_scales)]
    if torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in (*tensors, init)):
        o, final = _LogLinearAttention.apply(*tensors, init, scale, lengths, starts, cu_seqlens, shape, config, plan,
                                             final_levels, save_blocks)
    else:   # inference: no autograd node (its host time shows on short calls)
        o, final = forward(*tensors, scale, config, plan, cu_seqlens, init, final_levels)
    if not output_final_state:
        return o, None
    position = torch.tensor(ends, dtype=torch.int64, device=device)
    return o, LogLinearState(final, position, max(ends, default=0))


def _squeeze_token(name: str, x: torch.Tensor, rank: int) -> torch.Tensor:
    """Accept [N, 1, ...] (one token of a [B, T, ...] layout) as well as [N, ...]."""
    if isinstance(x, torch.Tensor) and x.dim() == rank + 1 and x.shape[1] == 1:
        return x[:, 0]
    return x


@eager_op
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
    g, level_scales = _gates_for_kernels(g, level_scales)
    num_seqs, heads, head_k = q.shape
    head_v, level_count = v.shape[-1], level_scales.shape[-1]
    as_pair = not isinstance(state, LogLinearState)
    found = _unpack_state(state, "state", num_seqs, heads, head_k, head_v, device)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, g, level_scales, found.states)):
        raise NotImplementedError("loglinear_attention_step has no backward; call it under torch.no_grad() "
                                  "(or use loglinear_attention, which is differentiable)")
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
    o = step(*tensors, found.states, found.position, check_scale(scale, head_k), config)
    # the kernel wrote the states in place: tell autograd, so a graph that saved them (a prefill's
    # initial_state) refuses to run backward on the changed values instead of using them
    increment_version(found.states)
    found.position.add_(1)
    found.max_position = last + 1
    if token_layout:
        o = o[:, None]
    return o, ((found.states, found.position) if as_pair else found)
