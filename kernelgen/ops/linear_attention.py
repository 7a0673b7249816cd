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

from typing import Optional, Tuple, Union

import torch

from kernelgen.checks import check_float, check_same_device, check_shape
from kernelgen.dispatch import config_for
from kernelgen.templates import linear_attention as tmpl

State = Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]

FEATURE_MAPS = (None, "identity", "elu1", "relu", "taylor2")
HEAD_DIM_RANGE = (16, 256)
TAYLOR2_MAX_K = 32


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


def _check_state(name: str, state, normalize: bool, N: int, H: int, KF: int, V: int, device):
    """The (S, z) pair of a state argument, fp32 contiguous (z None without normalize)."""
    if normalize:
        if not (isinstance(state, (tuple, list)) and len(state) == 2):
            raise TypeError(f"{name} must be the tuple (S [N, H, K', V], z [N, H, K']) when normalize=True; "
                            f"got {type(state).__name__}")
        S, z = state
        check_shape(f"{name}[1] (z)", z, "N, H, K'", (N, H, KF))
        check_float(f"{name}[1] (z)", z)
    else:
        if isinstance(state, (tuple, list)):
            raise TypeError(f"{name} must be a tensor S [N, H, K', V] when normalize=False; got a "
                            f"{type(state).__name__} (a (S, z) pair belongs to normalize=True)")
        S, z = state, None
    check_shape(f"{name}[0] (S)" if normalize else name, S, "N, H, K', V", (N, H, KF, V))
    check_float(f"{name}[0] (S)" if normalize else name, S)
    if S.device != device or (z is not None and z.device != device):
        raise ValueError(f"{name} is on {S.device} but q is on {device}; all inputs must be on one device")
    S = S.to(torch.float32).contiguous()
    z = z.to(torch.float32).contiguous() if z is not None else None
    return S, z


class _LinearAttentionFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, q, k, v, g, g_gamma, s0, z0, scale, feature_map, normalize, want_final, cu_seqlens, shape):
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
    def backward(ctx, do, d_final_s, d_final_z):
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

    q, k [B, T, H, K] and v [B, T, H, V] (fp32 / fp16 / bf16, K and V in 16..256); g [B, T, H]
    per-token log decay (≤ 0) or g_gamma [H] constant log decay, not both; scale defaults to
    K^-0.5; feature_map None / "elu1" / "relu" / "taylor2" (K ≤ 32) is applied to q and k inside
    the kernel. cu_seqlens [N+1] (int, with B = 1) packs N sequences along T, each with its own
    state. Returns (o [B, T, H, V] in v's dtype, final_state or None), states as in the module
    docstring. Differentiable in q, k, v, g / g_gamma and initial_state.
    """
    check_shape("q", q, "B, T, H, K", (None, None, None, None))
    B, T, H, K = q.shape
    check_shape("k", k, "B, T, H, K", (B, T, H, K))
    check_shape("v", v, "B, T, H, V", (B, T, H, None))
    V = v.shape[-1]
    feature_map = _check_qkv(q, k, v, K, V, feature_map)
    if g is not None and g_gamma is not None:
        raise ValueError("pass g (data-dependent decay [B, T, H]) or g_gamma (constant decay [H]), not both")
    if g is not None:
        check_shape("g", g, "B, T, H", (B, T, H))
        check_float("g", g)
    if g_gamma is not None:
        check_shape("g_gamma", g_gamma, "H", (H,))
        check_float("g_gamma", g_gamma)
    device = check_same_device(q=q, k=k, v=v, g=g, g_gamma=g_gamma, cu_seqlens=cu_seqlens)
    if cu_seqlens is not None:
        if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
            raise ValueError(f"cu_seqlens must be [N+1] with N >= 1; got shape {list(cu_seqlens.shape)}")
        if cu_seqlens.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"cu_seqlens must be int32 or int64; got {cu_seqlens.dtype}")
        if B != 1:
            raise ValueError(f"cu_seqlens packs sequences along T and needs B = 1; got B={B}")
        N = cu_seqlens.numel() - 1
        cu_seqlens = cu_seqlens.contiguous()
    else:
        N = B
    scale = K ** -0.5 if scale is None else float(scale)
    KF = tmpl.feature_rows(feature_map, K)
    s0 = z0 = None
    if initial_state is not None:
        s0, z0 = _check_state("initial_state", initial_state, normalize, N, H, KF, V, device)

    if B * T == 0:   # nothing to attend to: the state passes through unchanged
        o = v.new_zeros(v.shape)
        if not output_final_state:
            return o, None
        S = s0 if s0 is not None else q.new_zeros(N, H, KF, V, dtype=torch.float32)
        if normalize:
            return o, (S, z0 if z0 is not None else q.new_zeros(N, H, KF, dtype=torch.float32))
        return o, S

    shape = {"B": N, "T": (B * T) // N if N else T, "H": H, "K": K, "V": V, "F": KF}
    o, final_s, final_z = _LinearAttentionFunction.apply(
        q.contiguous(), k.contiguous(), v.contiguous(), g.contiguous() if g is not None else None,
        g_gamma.contiguous() if g_gamma is not None else None, s0, z0, scale, feature_map,
        bool(normalize), bool(output_final_state), cu_seqlens, shape)
    if not output_final_state:
        return o, None
    return o, ((final_s, final_z) if normalize else final_s)


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
    state as ``linear_attention``'s final_state ([B, H, K', V], or (S, z) with normalize).
    Returns (o [B, H, V], new state); the input state is left unchanged. Inference only."""
    check_shape("q", q, "B, H, K", (None, None, None))
    B, H, K = q.shape
    check_shape("k", k, "B, H, K", (B, H, K))
    check_shape("v", v, "B, H, V", (B, H, None))
    V = v.shape[-1]
    feature_map = _check_qkv(q, k, v, K, V, feature_map)
    if g is not None and g_gamma is not None:
        raise ValueError("pass g (data-dependent decay [B, H]) or g_gamma (constant decay [H]), not both")
    if g is not None:
        check_shape("g", g, "B, H", (B, H))
        check_float("g", g)
    if g_gamma is not None:
        check_shape("g_gamma", g_gamma, "H", (H,))
        check_float("g_gamma", g_gamma)
    device = check_same_device(q=q, k=k, v=v, g=g, g_gamma=g_gamma)
    KF = tmpl.feature_rows(feature_map, K)
    S, z = _check_state("state", state, normalize, B, H, KF, V, device)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k, v, g, g_gamma, S, z)):
        raise NotImplementedError("linear_attention_step has no backward; call it under torch.no_grad() "
                                  "(or use linear_attention, which is differentiable)")
    scale = K ** -0.5 if scale is None else float(scale)
    flags = tmpl.make_flags(_decay_kind(g, g_gamma), feature_map, normalize)
    config = config_for(tmpl.STEP, {"B": B, "H": H, "K": K, "V": V, "F": KF}, q.dtype, flags, device)
    o, s_new, z_new = tmpl.step(q.contiguous(), k.contiguous(), v.contiguous(),
                                g.contiguous() if g is not None else None,
                                g_gamma.contiguous() if g_gamma is not None else None,
                                scale, feature_map, normalize, S, z, config)
    return o, ((s_new, z_new) if normalize else s_new)
