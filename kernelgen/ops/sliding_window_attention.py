"""Sliding-window softmax attention: argument checks, autograd, dispatch.

    o_i = softmax_j(scale * q_i . k_j) v_j   over keys  i - window_size < j <= i  (softmax in fp32)

The window counts the query itself (flash-attn ``window_size=(W - 1, 0)``, fla ``window_size=W``);
``window_size >= T`` is causal attention. Kernels: templates/sliding_window_attention.py.
"""
from __future__ import annotations

import numbers

import torch

from kernelgen.checks import (bf16_dot_on_interpreter, check_cu_seqlens, check_cu_values, check_float,
                              check_same_device, check_scale, check_shape)
from kernelgen.dispatch import config_for, current_gpu
from kernelgen.ops import eager_op, first_order
from kernelgen.templates.sliding_window_attention import (BACKWARD, DECODE, FORWARD, HEAD_DIMS, swa_backward,
                                                          swa_decode, swa_forward)

__all__ = ["sliding_window_attention", "sliding_window_attention_decode"]

# The forward and backward grids put the (batch, kv head) pairs on their second axis, which CUDA
# caps at 65535: larger batches run in groups of rows, one launch each.
MAX_GRID_Y = 65535


def _check_window(window_size) -> int:
    if isinstance(window_size, bool) or not isinstance(window_size, numbers.Integral) or window_size < 1:
        raise ValueError(f"window_size must be an int >= 1; got {window_size!r}")
    return int(window_size)


def _check_heads(q_name: str, heads_q: int, k_name: str, heads: int, dim: int) -> None:
    if dim not in HEAD_DIMS:
        raise ValueError(f"head size D of {q_name} must be one of {HEAD_DIMS}; got {dim}")
    if heads < 1:
        raise ValueError(f"{k_name} must have at least one kv head (H >= 1); got H={heads}")
    if heads_q % heads != 0:
        raise ValueError(f"query heads HQ={heads_q} of {q_name} must be a multiple of the kv heads "
                         f"H={heads} of {k_name}")


def _check_dtypes(**tensors: torch.Tensor) -> None:
    names = list(tensors)
    for name in names:
        check_float(name, tensors[name])
    first = tensors[names[0]]
    for name in names[1:]:
        if tensors[name].dtype != first.dtype:
            raise TypeError(f"{name} must have the dtype of {names[0]} ({str(first.dtype).replace('torch.', '')}); "
                            f"got {str(tensors[name].dtype).replace('torch.', '')}")


def _row_groups(batch: int, heads: int) -> list[slice]:
    """Slices of the batch whose (row, kv head) pairs fit the grids' second axis (varlen has
    batch 1, so only plain batches ever need more than one)."""
    rows = max(MAX_GRID_Y // heads, 1)
    return [slice(b0, b0 + rows) for b0 in range(0, batch, rows)] or [slice(None)]


def _bucket(template, batch: int, length: int, heads_q: int, heads: int, dim: int, window: int,
            cu_seqlens: torch.Tensor | None) -> dict[str, int]:
    if cu_seqlens is not None:   # packed: N sequences of (on average) total / N tokens
        batch = max(cu_seqlens.numel() - 1, 1)
        length = max(length // batch, 1)
    return template.shape_of(B=batch, T=length, HQ=heads_q, H=heads, D=dim, W=window)


def _config(template, shape: dict[str, int], dtype: torch.dtype, device: torch.device):
    config = config_for(template, shape, dtype, "", device)
    if dtype == torch.float32:   # tuned and default tiles assume 2-byte elements: shrink to fit
        gpu = current_gpu(device)
        config = template.fit(config, shape["D"], gpu.profile if gpu else None, 4)
    return config


class _SlidingWindowAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, window, scale, cu_seqlens):
        batch, length, heads_q, dim = q.shape
        heads = k.shape[2]
        shape = _bucket(FORWARD, batch, length, heads_q, heads, dim, window, cu_seqlens)
        config = _config(FORWARD, shape, q.dtype, q.device)
        o, lse = swa_forward(q, k, v, window, scale, cu_seqlens, config)
        ctx.save_for_backward(q, k, v, o, lse, cu_seqlens)
        ctx.window, ctx.scale, ctx.shape = window, scale, shape
        ctx.set_materialize_grads(False)   # an unused output's gradient arrives as None, not zeros
        return o, lse

    @staticmethod
    @first_order   # the kernels' backward is not differentiable: a double backward raises
    def backward(ctx, do, dlse):
        q, k, v, o, lse, cu_seqlens = ctx.saved_tensors
        if do is None and dlse is None:
            return None, None, None, None, None, None
        if q.numel() == 0:   # no query row (HQ = 0 among them): no key is read, every gradient is zero
            return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v), None, None, None
        config = _config(BACKWARD, ctx.shape, q.dtype, q.device)
        do = torch.zeros_like(o) if do is None else do.contiguous()
        if dlse is not None:
            dlse = dlse.to(torch.float32).contiguous()
        dq, dk, dv = swa_backward(q, k, v, o, lse, do, ctx.window, ctx.scale, cu_seqlens, config, dlse=dlse)
        return dq, dk, dv, None, None, None


@eager_op
def sliding_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window_size: int,
                             scale: float | None = None, cu_seqlens: torch.Tensor | None = None,
                             return_lse: bool = False):
    """Causal softmax attention over the last ``window_size`` positions (the query included).

    q [B, T, HQ, D], k and v [B, T, H, D], HQ % H == 0 (grouped-query heads), D in {32, 64, 128, 256},
    fp16 / bf16 / fp32. ``scale`` (> 0) defaults to D**-0.5. ``cu_seqlens`` (int32/int64 [N+1], B == 1)
    packs N sequences along T; windows never cross a sequence boundary (its values must rise from
    0 to T: checked with one host sync, except under CUDA graph capture). q, k, v may have any
    strides; T = 0 gives empty outputs. Differentiable in q, k and v.

    Returns o [B, T, HQ, D] in q's dtype, or the tuple (o, lse) when ``return_lse``, with
    lse [B, HQ, T] fp32 the natural-log sum of exp of each row's scaled scores; a gradient may flow
    into lse too (e.g. when partial attentions are merged by their lse), and reaches q and k.
    Like flash attention, a non-finite value in v (or k) can reach rows whose window excludes it
    through the masked part of a key block (0·inf), packed neighbours included; finite inputs never do.
    """
    if bf16_dot_on_interpreter(q, k, v):
        out = sliding_window_attention(q.float(), k.float(), v.float(), window_size, scale, cu_seqlens, return_lse)
        return (out[0].to(q.dtype), out[1]) if return_lse else out.to(q.dtype)
    window_size = _check_window(window_size)
    check_shape("q", q, "B, T, HQ, D", (None, None, None, None))
    batch, length, heads_q, dim = q.shape
    check_shape("k", k, "B, T, H, D", (batch, length, None, dim))
    check_shape("v", v, "B, T, H, D", tuple(k.shape))
    _check_heads("q", heads_q, "k", k.shape[2], dim)
    _check_dtypes(q=q, k=k, v=v)
    if cu_seqlens is not None:
        cu_seqlens = check_cu_seqlens(cu_seqlens, batch)
    check_same_device(q=q, k=k, v=v, cu_seqlens=cu_seqlens)
    if cu_seqlens is not None:
        check_cu_values(cu_seqlens, length)
    scale = check_scale(scale, dim, positive=True)  # the kernels fold it into the row max
    groups = _row_groups(batch, k.shape[2])
    if len(groups) == 1:
        # No slicing: autograd would send each gradient through the slice's backward, a zero fill
        # plus a copy of dq, dk and dv (0.4 ms of a 2 ms fwd+bwd at B=8 T=4096 H=16 D=128).
        o, lse = _SlidingWindowAttention.apply(q.contiguous(), k.contiguous(), v.contiguous(), window_size, scale,
                                               cu_seqlens)
    else:
        pieces = [_SlidingWindowAttention.apply(q[rows].contiguous(), k[rows].contiguous(), v[rows].contiguous(),
                                                window_size, scale, cu_seqlens)
                  for rows in groups]
        o, lse = torch.cat([piece[0] for piece in pieces]), torch.cat([piece[1] for piece in pieces])
    return (o, lse) if return_lse else o


@eager_op
def sliding_window_attention_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                                    cache_seqlens: torch.Tensor | int, window_size: int, *,
                                    scale: float | None = None) -> torch.Tensor:
    """One decoding step: each sequence's newest query against its KV cache, last ``window_size`` rows.

    q [B, 1, HQ, D] (flash-attn ``flash_attn_with_kvcache`` layout; [B, HQ, D] also accepted),
    k_cache and v_cache [B, S, H, D] already holding the new token's key and value,
    cache_seqlens int32/int64 [B] (or an int for all, checked to lie in [0, S]) = valid length L of
    each cache (0 <= L <= S; tensor values are not checked on the host: the kernel clamps L to S).
    The query sits at position L - 1 and reads cache rows [max(0, L - W), L); L = 0 gives zeros.
    Returns o with q's shape and dtype. Inference only (no autograd).
    """
    if bf16_dot_on_interpreter(q, k_cache, v_cache):
        return sliding_window_attention_decode(q.float(), k_cache.float(), v_cache.float(), cache_seqlens,
                                               window_size, scale=scale).to(q.dtype)
    window_size = _check_window(window_size)
    squeeze = q.dim() == 4
    if squeeze:
        check_shape("q", q, "B, T, HQ, D", (None, 1, None, None))
    else:
        check_shape("q", q, "B, HQ, D", (None, None, None))
    batch, heads_q, dim = q.shape[0], q.shape[-2], q.shape[-1]
    check_shape("k_cache", k_cache, "B, S, H, D", (batch, None, None, dim))
    check_shape("v_cache", v_cache, "B, S, H, D", tuple(k_cache.shape))
    _check_heads("q", heads_q, "k_cache", k_cache.shape[2], dim)
    _check_dtypes(q=q, k_cache=k_cache, v_cache=v_cache)
    if isinstance(cache_seqlens, numbers.Integral) and not isinstance(cache_seqlens, bool):
        if not 0 <= cache_seqlens <= k_cache.shape[1]:
            raise ValueError(f"cache_seqlens must be in [0, S={k_cache.shape[1]}] (the cache length); "
                             f"got {cache_seqlens}")
        cache_seqlens = torch.full((batch,), int(cache_seqlens), dtype=torch.int32, device=q.device)
    check_shape("cache_seqlens", cache_seqlens, "B", (batch,))
    if cache_seqlens.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"cache_seqlens must be int32 or int64; got {str(cache_seqlens.dtype).replace('torch.', '')}")
    check_same_device(q=q, k_cache=k_cache, v_cache=v_cache, cache_seqlens=cache_seqlens)
    scale = check_scale(scale, dim, positive=True)  # the kernels fold it into the row max
    q3 = q.reshape(batch, heads_q, dim)
    # The caches stay in place (often views of a larger buffer): only their last dim must be dense.
    k_cache = k_cache if k_cache.stride(-1) == 1 else k_cache.contiguous()
    v_cache = v_cache if v_cache.stride(-1) == 1 else v_cache.contiguous()
    q3 = q3 if q3.stride(-1) == 1 else q3.contiguous()
    shape = DECODE.shape_of(B=batch, HQ=heads_q, H=k_cache.shape[2], D=dim,
                            W=min(window_size, max(k_cache.shape[1], 1)))
    config = _config(DECODE, shape, q.dtype, q.device)
    with torch.no_grad():
        o = swa_decode(q3, k_cache, v_cache, cache_seqlens.contiguous(), window_size, scale, config)
    return o.reshape(q.shape)
