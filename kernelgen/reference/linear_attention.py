"""Float64 references for linear attention, written from the math of issue 4.

Pair weights (Γ(s→t) = exp(Σ_{r=s+1..t} g_r), with ``g_gamma`` every g_r = γ_h, else 1):
    w(t,s) = scale·φ(q_t)·φ(k_s)              φ ∈ {identity, elu1, relu}
    w(t,s) = 1 + x + x²/2,  x = scale·q_t·k_s  taylor2 (Based)
    o_t    = Σ_{s≤t} Γ(s→t)·w(t,s)·v_s   [/ (Σ_{s≤t} Γ(s→t)·w(t,s) + 1e-6) with normalize]

State form (what ``initial_state`` / ``final_state`` hold), with φ' the explicit feature vector:
    S_t = exp(g_t)·S_{t-1} + φ'(k_t)·v_tᵀ     [K', V]
    z_t = exp(g_t)·z_{t-1} + φ'(k_t)          [K']     (only with normalize)
    o_t = φ'_q(q_t)ᵀ·S_t  [/ (φ'_q(q_t)·z_t + 1e-6)]
where φ'(k) = φ(k) and φ'_q(q) = scale·φ(q) for identity / elu1 / relu (K' = K), and for taylor2
the symmetric map φ'(x) = φ'_q(x) = [1, √scale·x, (scale/√2)·vec(x ⊗ x)] (K' = 1 + K + K², row-major
x⊗x), so φ'(q)·φ'(k) = 1 + x + x²/2 with the scale folded in.

Three forms live here: ``linear_attention_recurrent`` (the token recurrence above; the tests'
ground truth), ``linear_attention_pairwise`` (the quadratic pair-weight form, an independent
check of the first) and ``linear_attention_chunked`` (the same math chunk by chunk with matmuls,
fast enough for the tuner's verification at full size). All return (o, final_state) with
final_state a tensor S, or the tuple (S, z) when normalizing.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FEATURE_MAPS = (None, "identity", "elu1", "relu", "taylor2")
NORM_EPS = 1e-6


def feature_size(feature_map: str | None, head_k: int) -> int:
    """K': rows of the state for this feature map."""
    return 1 + head_k + head_k * head_k if feature_map == "taylor2" else head_k


def phi(x: torch.Tensor, feature_map: str | None) -> torch.Tensor:
    """Elementwise feature map φ (identity / elu1 / relu); taylor2 is handled by ``phi_expanded``."""
    if feature_map in (None, "identity"):
        return x
    if feature_map == "elu1":
        return F.elu(x) + 1.0
    if feature_map == "relu":
        return torch.relu(x)
    raise ValueError(f"no elementwise feature map {feature_map!r}")


def phi_expanded(x: torch.Tensor, feature_map: str | None, scale: float, query: bool) -> torch.Tensor:
    """φ'(x) [..., K'] as stored in the state (keys) or applied to it (queries, ``query=True``)."""
    if feature_map == "taylor2":
        quad = (x[..., :, None] * x[..., None, :]).flatten(-2)
        ones = torch.ones_like(x[..., :1])
        return torch.cat([ones, math.sqrt(scale) * x, (scale / math.sqrt(2.0)) * quad], dim=-1)
    out = phi(x, feature_map)
    return out * scale if query else out


def _split_state(state, normalize: bool):
    if state is None:
        return None, None
    if normalize:
        return state[0], state[1]
    return state, None


def _log_decay(g, g_gamma, shape_bth, dtype, device):
    """Per-token log decay [B, T, H] in float64 (zeros when there is no decay)."""
    if g is not None:
        return g.to(dtype)
    if g_gamma is not None:
        return g_gamma.to(dtype).view(1, 1, -1).expand(*shape_bth)
    return torch.zeros(shape_bth, dtype=dtype, device=device)


def _sequences(batch: int, length: int, cu_seqlens):
    """(batch index, start, end) of each sequence."""
    if cu_seqlens is None:
        return [(b, 0, length) for b in range(batch)]
    bounds = [int(x) for x in cu_seqlens.tolist()]
    return [(0, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def linear_attention_recurrent(q, k, v, g=None, g_gamma=None, scale=None, feature_map=None,
                               normalize=False, initial_state=None, output_final_state=False,
                               cu_seqlens=None):
    """Token-by-token recurrence in float64: q, k [B, T, H, K], v [B, T, H, V] -> o [B, T, H, V]."""
    q, k, v = (x.to(torch.float64) for x in (q, k, v))
    B, T, H, K = q.shape
    scale = K ** -0.5 if scale is None else scale
    logd = _log_decay(g, g_gamma, (B, T, H), torch.float64, q.device)
    fq = phi_expanded(q, feature_map, scale, query=True)
    fk = phi_expanded(k, feature_map, scale, query=False)
    S0, z0 = _split_state(initial_state, normalize)
    finals_S, finals_z = [], []
    rows = []
    for n, (b, start, end) in enumerate(_sequences(B, T, cu_seqlens)):
        S = S0[n].to(torch.float64) if S0 is not None else fq.new_zeros(H, fq.shape[-1], v.shape[-1])
        z = (z0[n].to(torch.float64) if z0 is not None else fq.new_zeros(H, fq.shape[-1])) if normalize else None
        seq_out = []
        for t in range(start, end):
            decay = torch.exp(logd[b, t])                                   # [H]
            S = decay[:, None, None] * S + fk[b, t][:, :, None] * v[b, t][:, None, :]
            o_t = torch.einsum("hk,hkv->hv", fq[b, t], S)
            if normalize:
                z = decay[:, None] * z + fk[b, t]
                o_t = o_t / ((fq[b, t] * z).sum(-1, keepdim=True) + NORM_EPS)
            seq_out.append(o_t)
        rows.append((b, start, end, seq_out))
        finals_S.append(S)
        finals_z.append(z)
    o = v.new_zeros(B, T, H, v.shape[-1])
    for b, start, end, seq_out in rows:
        if seq_out:
            o[b, start:end] = torch.stack(seq_out, 0)
    final = None
    if output_final_state:
        S_f = torch.stack(finals_S, 0)
        final = (S_f, torch.stack(finals_z, 0)) if normalize else S_f
    return o, final


def linear_attention_pairwise(q, k, v, g=None, g_gamma=None, scale=None, feature_map=None,
                              normalize=False, cu_seqlens=None):
    """The quadratic pair-weight form (no states): o [B, T, H, V] in float64."""
    q, k, v = (x.to(torch.float64) for x in (q, k, v))
    B, T, H, K = q.shape
    scale = K ** -0.5 if scale is None else scale
    logd = _log_decay(g, g_gamma, (B, T, H), torch.float64, q.device)
    o = torch.zeros(B, T, H, v.shape[-1], dtype=torch.float64, device=q.device)
    for b, start, end in _sequences(B, T, cu_seqlens):
        qs, ks, vs = q[b, start:end], k[b, start:end], v[b, start:end]           # [L, H, *]
        G = logd[b, start:end].cumsum(0)                                          # [L, H]
        L = end - start
        causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
        if feature_map == "taylor2":
            x = scale * torch.einsum("thk,shk->hts", qs, ks)
            w = 1 + x + x * x / 2
        else:
            w = scale * torch.einsum("thk,shk->hts", phi(qs, feature_map), phi(ks, feature_map))
        diff = (G.T[:, :, None] - G.T[:, None, :]).masked_fill(~causal, float("-inf"))
        A = w * torch.exp(diff)                                                   # [H, t, s]
        out = torch.einsum("hts,shv->thv", A, vs)
        if normalize:
            out = out / (A.sum(-1).T[:, :, None] + NORM_EPS)
        o[b, start:end] = out
    return o


def linear_attention_chunked(q, k, v, g=None, g_gamma=None, scale=None, feature_map=None,
                             normalize=False, initial_state=None, output_final_state=False,
                             cu_seqlens=None, chunk: int = 64):
    """Same math as the recurrence, chunk by chunk with float64 matmuls (fast reference).

    The whole result (and autograd through it) is float64; only the order of summation differs
    from ``linear_attention_recurrent``.
    """
    dtype = torch.float64
    q, k, v = (x.to(dtype) for x in (q, k, v))
    B, T, H, K = q.shape
    scale = K ** -0.5 if scale is None else scale
    logd = _log_decay(g, g_gamma, (B, T, H), dtype, q.device)
    S0, z0 = _split_state(initial_state, normalize)
    outs, finals_S, finals_z = [], [], []
    for n, (b, start, end) in enumerate(_sequences(B, T, cu_seqlens)):
        fq = phi_expanded(q[b, start:end], feature_map, scale, query=True).transpose(0, 1)   # [H, L, K']
        fk = phi_expanded(k[b, start:end], feature_map, scale, query=False).transpose(0, 1)
        vs = v[b, start:end].transpose(0, 1)                                                # [H, L, V]
        if normalize:   # the normaliser is one more value column of ones
            vs = torch.cat([vs, torch.ones_like(vs[..., :1])], -1)
        S = fq.new_zeros(H, fq.shape[-1], vs.shape[-1])
        if S0 is not None:
            S = S + (torch.cat([S0[n].to(dtype), z0[n].to(dtype)[..., None]], -1) if normalize
                     else S0[n].to(dtype))
        lg = logd[b, start:end].transpose(0, 1)                                             # [H, L]
        pieces = []
        for c0 in range(0, end - start, chunk):
            c1 = min(c0 + chunk, end - start)
            Gc = lg[:, c0:c1].cumsum(-1)                                                    # [H, C]
            causal = torch.ones(c1 - c0, c1 - c0, dtype=torch.bool, device=q.device).tril()
            diff = (Gc[:, :, None] - Gc[:, None, :]).masked_fill(~causal, float("-inf"))
            A = (fq[:, c0:c1] @ fk[:, c0:c1].transpose(1, 2)) * torch.exp(diff)
            out = A @ vs[:, c0:c1] + torch.exp(Gc)[..., None] * (fq[:, c0:c1] @ S)
            pieces.append(out)
            to_end = torch.exp(Gc[:, -1:] - Gc)[..., None]                                  # [H, C, 1]
            S = torch.exp(Gc[:, -1])[:, None, None] * S + (fk[:, c0:c1] * to_end).transpose(1, 2) @ vs[:, c0:c1]
        out = torch.cat(pieces, 1) if pieces else vs.new_zeros(H, 0, vs.shape[-1])
        if normalize:
            out = out[..., :-1] / (out[..., -1:] + NORM_EPS)
            finals_S.append(S[..., :-1])
            finals_z.append(S[..., -1])
        else:
            finals_S.append(S)
        outs.append((b, start, end, out.transpose(0, 1)))
    if cu_seqlens is None:
        o = torch.stack([x[3] for x in outs], 0)
    else:
        o = torch.cat([x[3] for x in outs], 0)[None]
    final = None
    if output_final_state:
        S_f = torch.stack(finals_S, 0)
        final = (S_f, torch.stack(finals_z, 0)) if normalize else S_f
    return o, final


def linear_attention_step(q, k, v, state, g=None, g_gamma=None, scale=None, feature_map=None,
                          normalize=False):
    """One decode step in float64: q, k [B, H, K], v [B, H, V], state as final_state -> (o, state)."""
    q, k, v = (x.to(torch.float64) for x in (q, k, v))
    o, final = linear_attention_recurrent(
        q[:, None], k[:, None], v[:, None], None if g is None else g[:, None], g_gamma, scale,
        feature_map, normalize, state, True)
    return o[:, 0], final
