"""Public ops: ``linear_attention`` (chunked, with autograd) and ``linear_attention_step`` (decode).

    o_t = Σ_{s≤t} Γ(s→t)·w(t,s)·v_s   [/ (Σ_{s≤t} Γ(s→t)·w(t,s) + 1e-6) with normalize]

with w(t,s) = scale·φ(q_t)·φ(k_s) (φ = identity / elu1 / relu) or 1 + x + x²/2, x = scale·q_t·k_s
(taylor2), and Γ(s→t) = exp(Σ_{r=s+1..t} g_r) (``g``), exp((t−s)·γ_h) (``g_gamma``) or 1.

States are fp32. Without ``normalize`` a state is the tensor S [N, H, K', V]; with it, the tuple
(S, z) with z [N, H, K'] (the decayed feature sum the output is divided by). K' = K, or
1 + K + K² for taylor2, whose feature vector is φ'(x) = [1, √scale·x, (scale/√2)·vec(x⊗x)]
(row-major x⊗x). ``initial_state`` takes exactly what ``final_state`` returns, and so does the
decode step. Layout and keywords follow flash-linear-attention's ``chunk_simple_gla``
([B, T, H, K] inputs, ``g`` / ``g_gamma``, ``cu_seqlens`` with B = 1).
"""
from __future__ import annotations

import math
import numbers
from typing import Optional, Tuple, Union

import torch

from kernelgen.checks import (bf16_dot_on_interpreter, check_cu_seqlens, check_cu_values, check_float,
                              check_same_device, check_shape)
from kernelgen.dispatch import config_for
from kernelgen.grid import MAX_GRID_YZ, grid_groups
from kernelgen.ops import eager_op, first_order
from kernelgen.templates import linear_attention as tmpl

State = Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]

FEATURE_MAPS = (None, "identity", "elu1", "relu", "taylor2")
HEAD_DIM_RANGE = (16, 256)
TAYLOR2_MAX_K = 32
# Decays and states are fp32 quantities: float64 ones are accepted and rounded to fp32.
DECAY_STATE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
# The kernels put the (sequence, head) pairs on the grid's second axis, which CUDA caps at 65535;
# larger problems are cut into groups of sequences, one launch each.
MAX_GRID_Y = MAX_GRID_YZ


def _check_feature_map(feature_map, K: int) -> Optional[str]:
    if feature_map not in FEATURE_MAPS:
        raise ValueError(f"feature_map must be one of None, 'identity', 'elu1', 'relu', 'taylor2'; "
                         f"got {feature_map!r}")
    if feature_map == "taylor2" and K > TAYLOR2_MAX_K:
        raise ValueError(f"feature_map='taylor2' expands K to 1 + K + K² features and supports "
                         f"K <= {TAYLOR2_MAX_K}; got K={K}")
    return None if feature_map == "identity" else feature_map


def _check_qkv(q, k, v, K: int, V: int, feature_map) -> Optional[str]:
    """dtypes and head sizes shared by the chunked op and the decode step; returns the feature map."""
    for name, tensor in (("q", q), ("k", k), ("v", v)):
        check_float(name, tensor)
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q, k and v must share one dtype; got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    _check_head_dim("K (q.shape[-1])", K)
    _check_head_dim("V (v.shape[-1])", V)
    return _check_feature_map(feature_map, K)


def _check_head_dim(name: str, size: int) -> None:
    lo, hi = HEAD_DIM_RANGE
    if not lo <= size <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}]; got {size}")


def _decay_kind(g, g_gamma) -> str:
    return "g" if g is not None else "g_gamma" if g_gamma is not None else "none"


def _check_scale(scale, K: int, feature_map: Optional[str]) -> float:
    if scale is None:
        return K ** -0.5
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f"scale must be a real number or None; got {type(scale).__name__}")
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite; got {scale}")
    if feature_map == "taylor2" and scale < 0:   # the taylor2 state holds √scale·x
        raise ValueError(f"feature_map='taylor2' needs scale >= 0 (its state holds sqrt(scale)·k); got {scale}")
    return scale


def _check_decays(g, g_gamma, g_layout: str, g_sizes, H: int):
    """g [g_layout] or g_gamma [H], not both; float64 ones become fp32 (differentiably)."""
    if g is not None and g_gamma is not None:
        raise ValueError(f"pass g (data-dependent decay [{g_layout}]) or g_gamma (constant decay [H]), not both")
    if g is not None:
        check_shape("g", g, g_layout, g_sizes)
        check_float("g", g, DECAY_STATE_DTYPES)
        g = g.float() if g.dtype == torch.float64 else g
    if g_gamma is not None:
        check_shape("g_gamma", g_gamma, "H", (H,))
        check_float("g_gamma", g_gamma, DECAY_STATE_DTYPES)
        g_gamma = g_gamma.float() if g_gamma.dtype == torch.float64 else g_gamma
    return g, g_gamma


def _check_state(name: str, state, normalize: bool, N: int, H: int, KF: int, V: int, device):
    """The (S, z) pair of a state argument, fp32 contiguous (z None without normalize)."""
    if normalize:
        if not (isinstance(state, (tuple, list)) and len(state) == 2):
            raise TypeError(f"{name} must be the tuple (S [N, H, K', V], z [N, H, K']) when normalize=True; "
                            f"got {type(state).__name__}")
        S, z = state
        check_shape(f"{name}[1] (z)", z, "N, H, K'", (N, H, KF))
        check_float(f"{name}[1] (z)", z, DECAY_STATE_DTYPES)
    else:
        if isinstance(state, (tuple, list)):
            raise TypeError(f"{name} must be a tensor S [N, H, K', V] when normalize=False; got a "
                            f"{type(state).__name__} (a (S, z) pair belongs to normalize=True)")
        S, z = state, None
    check_shape(f"{name}[0] (S)" if normalize else name, S, "N, H, K', V", (N, H, KF, V))
    check_float(f"{name}[0] (S)" if normalize else name, S, DECAY_STATE_DTYPES)
    for label, part in ((f"{name}[0] (S)" if normalize else name, S), (f"{name}[1] (z)", z)):
        if part is not None and part.device != device:
            raise ValueError(f"{label} is on {part.device} but q is on {device}; all inputs must be on one device")
    S = S.to(torch.float32).contiguous()
    z = z.to(torch.float32).contiguous() if z is not None else None
    return S, z


class _LinearAttentionFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, q, k, v, g, g_gamma, s0, z0, scale, feature_map, normalize, want_final, cu_seqlens, shape):
        ctx.empty = q.numel() == 0
        if ctx.empty:
            return _LinearAttentionFunction._forward_empty(ctx, q, k, v, g, g_gamma, s0, z0, normalize,
                                                           want_final, shape)
        flags = tmpl.make_flags(_decay_kind(g, g_gamma), feature_map, normalize)
        config = config_for(tmpl.templates_for(feature_map)[0], shape, q.dtype, flags, q.device)
        o, den, final_s, final_z, seg = tmpl.forward(q, k, v, g, g_gamma, scale, feature_map, normalize,
                                                     s0, z0, want_final, cu_seqlens, config)
        ctx.save_for_backward(q, k, v, g, g_gamma, s0, z0, o if normalize else None, den,
                              final_s, final_z, cu_seqlens)
        ctx.seg = seg
        ctx.meta = (scale, feature_map, normalize, flags, shape)
        return o, final_s, final_z

    @staticmethod
    def _forward_empty(ctx, q, k, v, g, g_gamma, s0, z0, normalize, want_final, shape):
        """No (token, head) pair: o is empty and the state passes through unchanged (as a copy)."""
        ctx.save_for_backward(q, k, v, g, g_gamma, s0, z0)
        final_s = final_z = None
        if want_final:
            size = (shape["B"], shape["H"], shape["F"], shape["V"])
            final_s = s0.clone() if s0 is not None else q.new_zeros(size, dtype=torch.float32)
            if normalize:
                final_z = z0.clone() if z0 is not None else q.new_zeros(size[:3], dtype=torch.float32)
        return torch.zeros_like(v), final_s, final_z

    @staticmethod
    @first_order   # the kernels' backward is not differentiable: a double backward raises
    def backward(ctx, do, d_final_s, d_final_z):
        if ctx.empty:
            return _LinearAttentionFunction._backward_empty(ctx, d_final_s, d_final_z)
        q, k, v, g, g_gamma, s0, z0, o, den, final_s, final_z, cu_seqlens = ctx.saved_tensors
        scale, feature_map, normalize, flags, shape = ctx.meta
        need = ctx.needs_input_grad
        config = config_for(tmpl.templates_for(feature_map)[1], shape, q.dtype, flags, q.device)
        if d_final_s is not None:
            d_final_s = d_final_s.to(torch.float32).contiguous()
        if d_final_z is not None:
            d_final_z = d_final_z.to(torch.float32).contiguous()
        if normalize and d_final_s is None and d_final_z is not None:
            d_final_s = torch.zeros_like(final_s)
        need_dg = bool(need[3] or need[4])
        dq, dk, dv, dg, ds0, dz0 = tmpl.backward(
            q, k, v, g, g_gamma, scale, feature_map, normalize, s0, z0, o, den, do.to(v.dtype).contiguous(),
            d_final_s, d_final_z, final_s, final_z, cu_seqlens, config, fwd_seg=ctx.seg,
            need_dq=need[0], need_dk=need[1], need_dv=need[2], need_dg=need_dg,
            need_dinit=bool(need[5] or need[6]))
        ctx.seg = None
        grad_g = dg.view_as(g).to(g.dtype) if need[3] else None
        grad_gamma = dg.sum(0).to(g_gamma.dtype) if need[4] else None
        return (dq if need[0] else None, dk if need[1] else None, dv if need[2] else None,
                grad_g, grad_gamma, ds0 if need[5] else None, dz0 if need[6] else None,
                None, None, None, None, None, None)

    @staticmethod
    def _backward_empty(ctx, d_final_s, d_final_z):
        """Zeros for the token inputs; the final state was the initial state, so its gradient flows through."""
        q, k, v, g, g_gamma, s0, z0 = ctx.saved_tensors
        need = ctx.needs_input_grad

        def passed(grad, like):
            return grad.to(like.dtype) if grad is not None else torch.zeros_like(like)

        grads = [torch.zeros_like(t) if wanted and t is not None else None
                 for wanted, t in zip(need[:5], (q, k, v, g, g_gamma))]
        ds0 = passed(d_final_s, s0) if need[5] else None
        dz0 = passed(d_final_z, z0) if need[6] else None
        return (*grads, ds0, dz0, None, None, None, None, None, None)


def _run(q, k, v, g, g_gamma, s0, z0, scale, feature_map, normalize, want_final, cu_seqlens):
    """One autograd call on checked inputs: (o, final S or None, final z or None)."""
    B, T, H, K = q.shape
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    shape = {"B": N, "T": (B * T) // N if N else T, "H": H, "K": K, "V": v.shape[-1],
             "F": tmpl.feature_rows(feature_map, K)}
    return _LinearAttentionFunction.apply(
        q.contiguous(), k.contiguous(), v.contiguous(), g.contiguous() if g is not None else None,
        g_gamma.contiguous() if g_gamma is not None else None, s0, z0, scale, feature_map,
        bool(normalize), bool(want_final), cu_seqlens, shape)


def _sequence_groups(N: int, H: int) -> list:
    """[n0, n1) groups of sequences whose (sequence, head) pairs fit the grid's second axis."""
    return grid_groups(N, H, MAX_GRID_Y)


def _narrow(x: Optional[torch.Tensor], dim: int, start: int, stop: int) -> Optional[torch.Tensor]:
    return None if x is None else x.narrow(dim, start, stop - start)


def _run_in_groups(q, k, v, g, g_gamma, s0, z0, scale, feature_map, normalize, want_final, cu_seqlens):
    """``_run`` on groups of whole sequences (rows of the batch, or runs of packed sequences),
    outputs and states concatenated back: the same result, with every launch inside the grid limit."""
    B, T, H, _ = q.shape
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    bounds = list(range(N + 1)) if cu_seqlens is None else cu_seqlens.tolist()
    token_dim = 0 if cu_seqlens is None else 1   # batch rows, or tokens of the packed row
    outs, finals_s, finals_z = [], [], []
    for n0, n1 in _sequence_groups(N, H):
        start, stop = bounds[n0], bounds[n1]
        sub_cu = None if cu_seqlens is None else cu_seqlens[n0:n1 + 1] - start
        o, final_s, final_z = _run(*(_narrow(x, token_dim, start, stop) for x in (q, k, v, g)), g_gamma,
                                   _narrow(s0, 0, n0, n1), _narrow(z0, 0, n0, n1),
                                   scale, feature_map, normalize, want_final, sub_cu)
        outs.append(o)
        finals_s.append(final_s)
        finals_z.append(final_z)
    o = torch.cat(outs, token_dim)
    final_s = torch.cat(finals_s, 0) if want_final else None
    final_z = torch.cat(finals_z, 0) if want_final and normalize else None
    return o, final_s, final_z


@eager_op
def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: Optional[torch.Tensor] = None,
    g_gamma: Optional[torch.Tensor] = None,
    scale: Optional[float] = None,
    feature_map: Optional[str] = None,
    normalize: bool = False,
    initial_state: Optional[State] = None,
    output_final_state: bool = False,
    cu_seqlens: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, Optional[State]]:
    """Chunked causal linear attention.

    q, k [B, T, H, K] and v [B, T, H, V] (one of fp32 / fp16 / bf16, K and V in 16..256, any
    strides; with fp16, state entries past fp16's 65504 overflow in the kernels' products: long
    undecayed sequences belong in bf16 or fp32); g [B, T, H] per-token log decay (finite, ≤ 0: a hard reset is a new sequence in
    cu_seqlens, not g = -inf, which makes exp(G_t − G_s) NaN in the chunked form) or g_gamma [H]
    constant log decay, not both (any float dtype; with taylor2, the g_gamma gradient's fp32
    rounding grows with the decay, ~1e-3 relative at γ = −5; for every map, the decay gradient
    that flows from final_state is a difference of fp32 sums, off by ~1e-6 of ‖S‖·‖dS‖ however
    small its true value: under decays below ~−10 a token it is rounding noise, while the
    gradient through o stays exact); scale defaults to K^-0.5;
    feature_map None / "elu1" / "relu" / "taylor2" (K ≤ 32) is applied to q and k inside the kernel. cu_seqlens [N+1] (int, with B = 1, rising
    from 0 to T) packs N sequences along T, each with its own state. Returns (o [B, T, H, V] in
    v's dtype, final_state or None), states fp32 as in the module docstring (initial_state may be
    any float dtype). T = 0 gives an empty o and the initial state back. Differentiable in q, k,
    v, g / g_gamma and initial_state.
    """
    if bf16_dot_on_interpreter(q, k, v):
        o, final_state = linear_attention(q.float(), k.float(), v.float(), g, g_gamma, scale, feature_map, normalize,
                                          initial_state, output_final_state, cu_seqlens)
        return o.to(v.dtype), final_state
    check_shape("q", q, "B, T, H, K", (None, None, None, None))
    B, T, H, K = q.shape
    check_shape("k", k, "B, T, H, K", (B, T, H, K))
    check_shape("v", v, "B, T, H, V", (B, T, H, None))
    V = v.shape[-1]
    feature_map = _check_qkv(q, k, v, K, V, feature_map)
    g, g_gamma = _check_decays(g, g_gamma, "B, T, H", (B, T, H), H)
    N = B
    if cu_seqlens is not None:
        cu_seqlens = check_cu_seqlens(cu_seqlens, B)
        N = cu_seqlens.numel() - 1
    device = check_same_device(q=q, k=k, v=v, g=g, g_gamma=g_gamma, cu_seqlens=cu_seqlens)
    if cu_seqlens is not None:
        check_cu_values(cu_seqlens, T)
    scale = _check_scale(scale, K, feature_map)
    KF = tmpl.feature_rows(feature_map, K)
    s0 = z0 = None
    if initial_state is not None:
        s0, z0 = _check_state("initial_state", initial_state, normalize, N, H, KF, V, device)

    args = (q, k, v, g, g_gamma, s0, z0, scale, feature_map, normalize, output_final_state, cu_seqlens)
    run = _run_in_groups if N * H > MAX_GRID_Y and q.numel() > 0 else _run
    o, final_s, final_z = run(*args)
    if not output_final_state:
        return o, None
    return o, ((final_s, final_z) if normalize else final_s)


@eager_op
def linear_attention_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    state: State,
    g: Optional[torch.Tensor] = None,
    g_gamma: Optional[torch.Tensor] = None,
    scale: Optional[float] = None,
    feature_map: Optional[str] = None,
    normalize: bool = False,
) -> Tuple[torch.Tensor, State]:
    """One decode token per sequence: q, k [B, H, K], v [B, H, V], g [B, H] or g_gamma [H],
    state as ``linear_attention``'s final_state ([B, H, K', V], or (S, z) with normalize; any
    float dtype). Returns (o [B, H, V], new fp32 state); the input state is left unchanged.
    The one-token slice of the [B, T, H, *] layout is accepted too: q, k [B, 1, H, K], v [B, 1, H, V],
    g [B, 1, H], giving o [B, 1, H, V]. Inference only."""
    if isinstance(q, torch.Tensor) and q.dim() == 4 and q.shape[1] == 1:
        one_token = lambda x, rank: x[:, 0] if isinstance(x, torch.Tensor) and x.dim() == rank + 1 else x
        o, new_state = linear_attention_step(q[:, 0], one_token(k, 3), one_token(v, 3), state, one_token(g, 2),
                                             g_gamma, scale, feature_map, normalize)
        return o.unsqueeze(1), new_state
    check_shape("q", q, "B, H, K", (None, None, None))
    B, H, K = q.shape
    check_shape("k", k, "B, H, K", (B, H, K))
    check_shape("v", v, "B, H, V", (B, H, None))
    V = v.shape[-1]
    feature_map = _check_qkv(q, k, v, K, V, feature_map)
    g, g_gamma = _check_decays(g, g_gamma, "B, H", (B, H), H)
    device = check_same_device(q=q, k=k, v=v, g=g, g_gamma=g_gamma)
    KF = tmpl.feature_rows(feature_map, K)
    S, z = _check_state("state", state, normalize, B, H, KF, V, device)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k, v, g, g_gamma, S, z)):
        raise NotImplementedError("linear_attention_step has no backward; call it under torch.no_grad() "
                                  "(or use linear_attention, which is differentiable)")
    scale = _check_scale(scale, K, feature_map)
    flags = tmpl.make_flags(_decay_kind(g, g_gamma), feature_map, normalize)
    config = config_for(tmpl.STEP, {"B": B, "H": H, "K": K, "V": V, "F": KF}, q.dtype, flags, device)
    pieces = []   # one launch, or one per group of rows past the grid limit
    for b0, b1 in _sequence_groups(B, H) if B * H > MAX_GRID_Y else [(0, B)]:
        rows = [None if x is None else x[b0:b1].contiguous() for x in (q, k, v, g, S, z)]
        pieces.append(tmpl.step(*rows[:4], g_gamma.contiguous() if g_gamma is not None else None,
                                scale, feature_map, normalize, rows[4], rows[5], config))
    if len(pieces) == 1:
        o, s_new, z_new = pieces[0]
    else:
        o, s_new = torch.cat([p[0] for p in pieces]), torch.cat([p[1] for p in pieces])
        z_new = torch.cat([p[2] for p in pieces]) if normalize else None
    return o, ((s_new, z_new) if normalize else s_new)
