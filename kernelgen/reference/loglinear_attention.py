"""Log-linear attention (Guo et al., 2025) in float64, written from the formula.

Positions t, s count from 0 inside each sequence (continuing from the state's position when an
initial state is given). The level of a pair is ``level(t, s) = 0 if s == t else
bit_length(t XOR s)``: the Fenwick bucket of t at level l >= 1 is the aligned block
``[(t >> l) << l, ((t >> l) << l) + 2^(l-1))`` when bit l-1 of t is set (empty otherwise), so
the prefix before t is cut into buckets that double in size with distance. Then

    o_t = scale * sum_{s <= t} lambda[t, level(t, s)] * exp(G_t - G_s) * (q_t . k_s) * v_s,
    G_t = sum_{r <= t} g_r.

The state after position P holds, for each level l >= 1, the decayed bucket sum
``S_l(P) = sum_{s in bucket_l(P)} exp(G_{P-1} - G_s) k_s v_s^T`` (zero when bit l-1 of P is clear).
A token t >= P sees bucket S_l(P) at level ``max(l, d)`` with ``d = bit_length(t XOR P)``: buckets
above d are still t's buckets, those below d have merged into t's level-d bucket.

Two references: the O(T^2) masked sum (the definition) and the O(T log T) token recurrence that
merges level states as the position crosses bucket boundaries (what the decode step does).
"""
from __future__ import annotations

from typing import Any

import torch


def bit_length(x: torch.Tensor) -> torch.Tensor:
    """Elementwise bit length of a non-negative int64 tensor (0 -> 0, 1 -> 1, 4 -> 3)."""
    out = torch.zeros_like(x)
    for bit in range(63):
        out = torch.where((x >> bit) > 0, bit + 1, out)
    return out


def pair_level(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """level(t, s) = bit_length(t XOR s) (0 on the diagonal), broadcasting t against s."""
    return bit_length(torch.bitwise_xor(t, s))


def unpack_state(state: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(states [N, H, Ls, K, V], position [N]) from a state object or a (states, position) pair."""
    if hasattr(state, "states"):
        return state.states, state.position
    states, position = state
    return states, position


def _sequences(batch: int, seq_len: int, cu_seqlens: torch.Tensor | None) -> list[tuple[int, int, int]]:
    """(batch row, first token, length) of every sequence."""
    if cu_seqlens is None:
        return [(b, 0, seq_len) for b in range(batch)]
    bounds = [int(x) for x in cu_seqlens.tolist()]
    return [(0, bounds[i], bounds[i + 1] - bounds[i]) for i in range(len(bounds) - 1)]


def final_state_levels(level_count: int, end_positions: list[int]) -> int:
    """Level count of a final state: the call's L, or more when a position reaches a new power of two."""
    longest = max(end_positions, default=0)
    return max(level_count, int(longest).bit_length() + 1)


def loglinear_attention_reference(q, k, v, g, level_scales, scale=None, initial_state=None,
                                  output_final_state=False, cu_seqlens=None):
    """O(T^2) masked sum in float64. q, k [B, T, H, K]; v [B, T, H, V]; g [B, T, H];
    level_scales [B, T, H, L]. Returns (o [B, T, H, V] float64, (states, position) or None)."""
    q, k, v, g, lam = (x.to(torch.float64) for x in (q, k, v, g, level_scales))   # differentiable
    batch, seq_len, heads, key_dim = q.shape
    value_dim, level_count = v.shape[-1], lam.shape[-1]
    scale = key_dim ** -0.5 if scale is None else scale
    seqs = _sequences(batch, seq_len, cu_seqlens)
    init_states = init_pos = None
    if initial_state is not None:
        init_states, init_pos = unpack_state(initial_state)
        init_states = init_states.to(torch.float64)
        init_pos = [int(p) for p in init_pos.tolist()]
    starts = init_pos if init_pos is not None else [0] * len(seqs)
    o = torch.zeros(batch, seq_len, heads, value_dim, dtype=torch.float64, device=q.device)
    final_levels = final_state_levels(level_count, [p + n for p, (_, _, n) in zip(starts, seqs)])
    final = torch.zeros(len(seqs), heads, final_levels, key_dim, value_dim, dtype=torch.float64, device=q.device)
    for i, (row, first, length) in enumerate(seqs):
        start = starts[i]
        sl = slice(first, first + length)
        qs, ks, vs, lams = q[row, sl], k[row, sl], v[row, sl], lam[row, sl]           # [n, H, *]
        cum = torch.cumsum(g[row, sl], dim=0)                                          # [n, H]
        pos = start + torch.arange(length, device=q.device)
        # query blocks keep the [t, s, H] temporaries near 2^26 elements for long sequences
        rows = max(1, min(length, (1 << 26) // max(1, length * heads)))
        parts = []
        for t0 in range(0, length, rows):
            t1 = min(length, t0 + rows)
            level = pair_level(pos[t0:t1, None], pos[None, :t1])                       # [t, s]
            causal = pos[t0:t1, None] >= pos[None, :t1]
            weight = torch.gather(lams[t0:t1], 2, level[:, None, :].expand(t1 - t0, heads, t1).contiguous())
            weight = weight.permute(0, 2, 1)                                           # [t, s, H]
            decay = torch.exp((cum[t0:t1, None, :] - cum[None, :t1, :]).masked_fill(~causal[:, :, None], -torch.inf))
            scores = torch.einsum("thk,shk->tsh", qs[t0:t1], ks[:t1]) * weight * decay
            parts.append(torch.einsum("tsh,shv->thv", scores, vs[:t1]))
        out = torch.cat(parts, 0) if parts else torch.zeros(0, heads, value_dim, dtype=torch.float64, device=q.device)
        if init_states is not None:
            states = init_states[i]                                                    # [H, Ls, K, V]
            dist = bit_length(torch.bitwise_xor(pos, torch.tensor(start, device=q.device)))
            for lvl in range(1, min(states.shape[1], level_count)):
                col = torch.clamp(dist, min=lvl)                                       # max(l, d)
                w = torch.gather(lams, 2, col[:, None, None].expand(length, heads, 1))[..., 0]
                out = out + (w * torch.exp(cum))[..., None] * torch.einsum("thk,hkv->thv", qs, states[:, lvl])
        o[row, sl] = scale * out
        if output_final_state:
            end = start + length
            last = cum[-1] if length else torch.zeros(heads, dtype=torch.float64, device=q.device)
            lvl_end = pair_level(torch.tensor(end, device=q.device), pos)              # [n]
            tail = torch.exp(last[None, :] - cum)                                      # [n, H]
            for lvl in range(1, final_levels):
                sel = (lvl_end == lvl).to(torch.float64)[:, None] * tail
                final[i, :, lvl] = torch.einsum("sh,shk,shv->hkv", sel, ks, vs)
            if init_states is not None:
                d_end = (end ^ start).bit_length()
                for lvl in range(1, init_states.shape[2]):
                    final[i, :, max(lvl, d_end)] += torch.exp(last)[:, None, None] * init_states[i, :, lvl]
    if not output_final_state:
        return o, None
    end_pos = torch.tensor([p + n for p, (_, _, n) in zip(starts, seqs)], dtype=torch.int64, device=q.device)
    return o, (final, end_pos)


def loglinear_attention_recurrent_reference(q, k, v, g, level_scales, scale=None, initial_state=None,
                                            output_final_state=False, cu_seqlens=None):
    """The same op token by token in float64: one K x V state per level, merged at bucket
    boundaries (the Fenwick carry). O(T log T); checks the merge rule the kernels rely on."""
    q, k, v, g, lam = (x.detach().to(torch.float64) for x in (q, k, v, g, level_scales))
    batch, seq_len, heads, key_dim = q.shape
    value_dim, level_count = v.shape[-1], lam.shape[-1]
    scale = key_dim ** -0.5 if scale is None else scale
    seqs = _sequences(batch, seq_len, cu_seqlens)
    starts = [0] * len(seqs)
    if initial_state is not None:
        init_states, init_pos = unpack_state(initial_state)
        starts = [int(p) for p in init_pos.tolist()]
    final_levels = final_state_levels(level_count, [p + n for p, (_, _, n) in zip(starts, seqs)])
    o = torch.zeros(batch, seq_len, heads, value_dim, dtype=torch.float64, device=q.device)
    final = torch.zeros(len(seqs), heads, final_levels, key_dim, value_dim, dtype=torch.float64, device=q.device)
    for i, (row, first, length) in enumerate(seqs):
        state = torch.zeros(heads, final_levels, key_dim, value_dim, dtype=torch.float64, device=q.device)
        if initial_state is not None:
            given = init_states[i].detach().to(torch.float64)
            state[:, :given.shape[1]] = given[:, :final_levels]
        for j in range(length):
            t = starts[i] + j
            state, out = recurrent_step(state, q[row, first + j], k[row, first + j], v[row, first + j],
                                        g[row, first + j], lam[row, first + j], t, scale)
            o[row, first + j] = out
        final[i] = state
    if not output_final_state:
        return o, None
    end_pos = torch.tensor([p + n for p, (_, _, n) in zip(starts, seqs)], dtype=torch.int64, device=q.device)
    return o, (final, end_pos)


def recurrent_step(state, q, k, v, g, lam, position, scale):
    """One token at ``position``: state [H, Ls, K, V] holds S_l(position) (decayed to position-1).
    Returns (state for position+1, o [H, V]). Levels 1..p (p = trailing ones of position) and the
    token itself merge into level p+1; every other level just decays."""
    decay = torch.exp(g)                                                               # [H]
    levels = state.shape[1]
    o = lam[:, 0, None] * (q * k).sum(-1, keepdim=True) * v
    used = min(levels, lam.shape[-1])
    o = o + decay[:, None] * torch.einsum("hl,hk,hlkv->hv", lam[:, 1:used], q, state[:, 1:used])
    target = (position ^ (position + 1)).bit_length()                                  # p + 1
    if target >= levels:
        raise ValueError(f"state has {levels} levels; position {position + 1} needs level {target}")
    merged = state[:, 1:target].sum(1)
    new = decay[:, None, None, None] * state
    new[:, 1:target] = 0.0
    new[:, target] = decay[:, None, None] * merged + k[:, :, None] * v[:, None, :]
    return new, scale * o
