"""Float64 reference of sliding-window softmax attention, written from the math.

    o_i = sum_j p_ij v_j,   p_ij = exp(s_ij - lse_i),   s_ij = scale * q_i . k_j,
    over keys j with  i - W < j <= i  (same sequence),   lse_i = log sum_j exp(s_ij).

Layouts follow the op: q [B, T, HQ, D], k and v [B, T, H, D], query head hq reads kv head
hq // (HQ // H). ``cu_seqlens`` ([N+1], batch 1) packs N sequences along T; a window never
crosses a sequence boundary.

Everything is computed a query chunk at a time against only the keys that chunk's windows touch,
so the reference stays exact and affordable at the long target shapes (T = 65536) where a dense
T x T score matrix would not fit. The backward is the analytic softmax gradient
(dS = P * (dP - rowsum(dO * O))); tests check it against torch.autograd on the forward.
"""
from __future__ import annotations

import torch

# Query rows per chunk: the score block is [HQ, CHUNK, CHUNK + W - 1] in float64.
CHUNK = 256


def _sequences(batch: int, length: int, cu_seqlens: torch.Tensor | None) -> list[tuple[int, int, int]]:
    """(batch index, first token, end token) of every sequence."""
    if cu_seqlens is None:
        return [(b, 0, length) for b in range(batch)]
    bounds = [int(x) for x in cu_seqlens.tolist()]
    return [(0, bounds[n], bounds[n + 1]) for n in range(len(bounds) - 1)]


def _chunks(start: int, end: int, window: int, chunk: int):
    """Query chunks [c0, c1) of one sequence with the key range [k0, c1) their windows touch."""
    for c0 in range(start, end, chunk):
        c1 = min(c0 + chunk, end)
        yield c0, c1, max(start, c0 - window + 1)


def _chunk_probs(q: torch.Tensor, k: torch.Tensor, c0: int, k0: int, window: int, scale: float):
    """Scores, probabilities and lse of one chunk; q [C, HQ, D], k [K, HQ, D] (GQA expanded)."""
    scores = torch.einsum("qhd,khd->hqk", q, k) * scale
    rows = torch.arange(c0, c0 + q.shape[0], device=q.device)[:, None]
    cols = torch.arange(k0, k0 + k.shape[0], device=q.device)[None, :]
    allowed = (cols <= rows) & (cols > rows - window)
    scores = scores.masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)                      # [HQ, C]
    return torch.exp(scores - lse[..., None]), lse


def _check_window(window_size: int) -> None:
    if window_size < 1:
        raise ValueError(f"window_size must be >= 1; got {window_size}")


def sliding_window_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window_size: int,
                                 scale: float | None = None, cu_seqlens: torch.Tensor | None = None,
                                 chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """(o [B, T, HQ, D] float64, lse [B, HQ, T] float64). Differentiable (autograd) in q, k, v."""
    _check_window(window_size)
    q, k, v = (x.to(torch.float64) for x in (q, k, v))
    batch, length, heads_q, dim = q.shape
    group = heads_q // k.shape[2]
    scale = dim ** -0.5 if scale is None else scale
    out_rows, lse_rows = [], []
    for b, start, end in _sequences(batch, length, cu_seqlens):
        for c0, c1, k0 in _chunks(start, end, window_size, chunk):
            keys = k[b, k0:c1].repeat_interleave(group, dim=1)
            values = v[b, k0:c1].repeat_interleave(group, dim=1)
            probs, lse = _chunk_probs(q[b, c0:c1], keys, c0, k0, window_size, scale)
            out_rows.append(torch.einsum("hqk,khd->qhd", probs, values))
            lse_rows.append(lse)
    if not out_rows:   # no query at all (T = 0, B = 0 or no heads): empty outputs of the right shapes
        return q.new_zeros(q.shape), q.new_zeros(batch, heads_q, length)
    if cu_seqlens is None:
        o = torch.cat(out_rows).reshape(batch, length, heads_q, dim)
        lse = torch.cat(lse_rows, dim=1).reshape(heads_q, batch, length).transpose(0, 1)
    else:
        o = torch.cat(out_rows)[None]
        lse = torch.cat(lse_rows, dim=1)[None]
    return o, lse.contiguous()


@torch.no_grad()
def sliding_window_attention_backward_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor,
                                          window_size: int, scale: float | None = None,
                                          cu_seqlens: torch.Tensor | None = None, chunk: int = CHUNK
                                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv) in float64 for the upstream gradient ``do`` [B, T, HQ, D] of o."""
    _check_window(window_size)
    q, k, v, do = (x.to(torch.float64) for x in (q, k, v, do))
    batch, length, heads_q, dim = q.shape
    heads = k.shape[2]
    group = heads_q // heads
    scale = dim ** -0.5 if scale is None else scale
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for b, start, end in _sequences(batch, length, cu_seqlens):
        for c0, c1, k0 in _chunks(start, end, window_size, chunk):
            keys = k[b, k0:c1].repeat_interleave(group, dim=1)
            values = v[b, k0:c1].repeat_interleave(group, dim=1)
            probs, _ = _chunk_probs(q[b, c0:c1], keys, c0, k0, window_size, scale)   # [HQ, C, K]
            grad_out = do[b, c0:c1]                                                    # [C, HQ, D]
            grad_probs = torch.einsum("qhd,khd->hqk", grad_out, values)
            delta = (probs * grad_probs).sum(-1, keepdim=True)    # = rowsum(dO * O)
            grad_scores = probs * (grad_probs - delta) * scale
            dq[b, c0:c1] += torch.einsum("hqk,khd->qhd", grad_scores, keys)
            dk_heads = torch.einsum("hqk,qhd->khd", grad_scores, q[b, c0:c1])
            dv_heads = torch.einsum("hqk,qhd->khd", probs, grad_out)
            dk[b, k0:c1] += dk_heads.reshape(c1 - k0, heads, group, dim).sum(2)
            dv[b, k0:c1] += dv_heads.reshape(c1 - k0, heads, group, dim).sum(2)
    return dq, dk, dv


@torch.no_grad()
def sliding_window_attention_decode_ref(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                                        cache_seqlens: torch.Tensor, window_size: int,
                                        scale: float | None = None) -> torch.Tensor:
    """o [B, HQ, D] float64 for one query per sequence, q [B, HQ, D], caches [B, S, H, D]: the
    query sits at position L - 1 (L = cache_seqlens[b]) and reads cache positions [L - W, L)."""
    _check_window(window_size)
    q, k_cache, v_cache = (x.to(torch.float64) for x in (q, k_cache, v_cache))
    batch, heads_q, dim = q.shape
    group = heads_q // k_cache.shape[2]
    scale = dim ** -0.5 if scale is None else scale
    out = torch.zeros_like(q)
    for b, length in enumerate(int(x) for x in cache_seqlens.tolist()):
        if length <= 0:
            continue
        first = max(0, length - window_size)
        keys = k_cache[b, first:length].repeat_interleave(group, dim=1)       # [K, HQ, D]
        values = v_cache[b, first:length].repeat_interleave(group, dim=1)
        probs = torch.softmax(torch.einsum("hd,khd->hk", q[b], keys) * scale, dim=-1)
        out[b] = torch.einsum("hk,khd->hd", probs, values)
    return out
