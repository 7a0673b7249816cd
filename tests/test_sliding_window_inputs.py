"""sliding_window_attention / _decode on the inputs callers really pass.

Strided views, tiny / ragged / empty lengths, every head size of the contract (and clear errors
for the others), windows of 1, T and more, grouped-query heads, packed sequences with length-0
and length-1 members, and wrong inputs (clear errors naming the argument). Forward, lse and
backward against the float64 reference of kernelgen/reference/sliding_window_attention.py with
the config dispatch picks. Non-contiguous inputs are views of leaf tensors: gradients are
checked on the leaves. Tolerances (relative Frobenius error): fp32 1e-5 (2e-5 for gradients);
fp16 2e-3 forward, 5e-3 backward.
"""
import numpy as np
import pytest
import torch

import kernelgen
from kernelgen.ops import sliding_window_attention as op_module
from kernelgen.reference.sliding_window_attention import (sliding_window_attention_decode_ref,
                                                           sliding_window_attention_ref)
from reference_utils import expect_bad_call, rel_error

FWD_TOL = {torch.float32: 1e-5, torch.float16: 2e-3}
BWD_TOL = {torch.float32: 2e-5, torch.float16: 5e-3}


def randn(*shape, seed=0, dtype=torch.float32, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)


def qkv(B, T, HQ, H, D, dtype=torch.float32, device="cpu", seed=0):
    return [randn(B, T, HQ, D, seed=seed, dtype=dtype, device=device),
            randn(B, T, H, D, seed=seed + 1, dtype=dtype, device=device),
            randn(B, T, H, D, seed=seed + 2, dtype=dtype, device=device)]


def _close(name, out, expected, tol):
    out, expected = out.detach(), expected.detach()
    assert out.shape == expected.shape, f"{name}: shape {tuple(out.shape)} != {tuple(expected.shape)}"
    if float(expected.norm()) == 0.0:   # W = 1: each query sees only itself, dq = dk = 0
        assert float(out.abs().max()) <= tol, f"{name}: expected zeros"
    else:
        err = rel_error(out, expected)
        assert err <= tol, f"{name}: relative error {err:.3e} > {tol:.1e}"


def compare(build, leaves, window, **op_kw):
    """The op vs the float64 reference on build(*leaves) -> (q, k, v): o, lse and the gradient of
    every leaf for a random upstream gradient."""
    mine = [t.detach().clone().requires_grad_() for t in leaves]
    theirs = [t.detach().to(torch.float64).requires_grad_() for t in leaves]
    q, k, v = build(*mine)
    o, lse = kernelgen.sliding_window_attention(q, k, v, window, return_lse=True, **op_kw)
    o_ref, lse_ref = sliding_window_attention_ref(*build(*theirs), window, **op_kw)
    assert o.dtype == q.dtype and lse.dtype == torch.float32
    _close("o", o, o_ref, FWD_TOL[q.dtype])
    _close("lse", lse, lse_ref, 1e-5)
    do = torch.randn(o.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64).to(o.device)
    grads = torch.autograd.grad(o, mine, do.to(o.dtype))
    grads_ref = torch.autograd.grad(o_ref, theirs, do)
    for i, (leaf, grad, grad_ref) in enumerate(zip(mine, grads, grads_ref)):
        assert grad.dtype == leaf.dtype
        _close(f"d(leaf {i})", grad, grad_ref, BWD_TOL[q.dtype])


def plain(q, k, v):
    return q, k, v


# --- layouts ------------------------------------------------------------------------------------

def test_heads_first_inputs_transposed(device):
    """[B, H, T, D] tensors passed as .transpose(1, 2)."""
    B, T, HQ, H, D = 2, 21, 4, 2, 32
    leaves = [randn(B, HQ, T, D, seed=1, device=device), randn(B, H, T, D, seed=2, device=device),
              randn(B, H, T, D, seed=3, device=device)]
    compare(lambda q, k, v: (q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)), leaves, 7)


def test_strided_slices_and_expanded_inputs(device):
    """Every other token / channel of larger tensors, a batch-broadcast q and a head-broadcast k
    (one kv head expanded over two: GQA written as MHA with stride-0 heads)."""
    B, T, HQ, H, D = 2, 17, 4, 2, 32
    leaves = [randn(1, T, HQ, D, seed=1, device=device), randn(B, T, 1, D, seed=2, device=device),
              randn(B, 2 * T, H, 2 * D + 1, seed=3, device=device)]

    def build(q, k, v):
        return q.expand(B, T, HQ, D), k.expand(B, T, H, D), v[:, ::2, :, 1::2]

    compare(build, leaves, 5)


def test_packed_qkv_projection_views(device):
    """q, k and v as column slices of one fused [B, T, (HQ + 2H)·D] projection."""
    B, T, HQ, H, D = 1, 19, 2, 1, 32
    fused = randn(B, T, (HQ + 2 * H) * D, seed=4, device=device)

    def build(x):
        q, k, v = x.split([HQ * D, H * D, H * D], dim=-1)
        return q.view(B, T, HQ, D), k.view(B, T, H, D), v.view(B, T, H, D)

    compare(build, [fused], 6)


# --- lengths and windows --------------------------------------------------------------------------

@pytest.mark.parametrize("T", [1, 2, 17, 45])
@pytest.mark.parametrize("window", [1, 3, 16, 1000])
def test_lengths_and_windows(T, window, device):
    compare(plain, qkv(2, T, 4, 2, 32, device=device), window)


def test_window_equal_to_and_beyond_length_is_causal(device):
    q, k, v = qkv(1, 23, 2, 2, 32, device=device)
    causal = kernelgen.sliding_window_attention(q, k, v, 23)
    for window in (24, 10**9, np.int64(23)):
        assert torch.equal(kernelgen.sliding_window_attention(q, k, v, window), causal)


@pytest.mark.parametrize("B,T", [(2, 0), (0, 5)])
def test_empty_inputs_give_empty_outputs(B, T, device):
    leaves = [x.requires_grad_() for x in qkv(B, T, 4, 2, 32, device=device)]
    o, lse = kernelgen.sliding_window_attention(*leaves, 3, return_lse=True)
    assert o.shape == (B, T, 4, 32) and lse.shape == (B, 4, T) and lse.dtype == torch.float32
    grads = torch.autograd.grad(o, leaves, torch.ones_like(o))
    assert all(grad.shape == leaf.shape for grad, leaf in zip(grads, leaves))


def test_empty_packed_sequences(device):
    q, k, v = qkv(1, 0, 4, 2, 32, device=device)
    o = kernelgen.sliding_window_attention(q, k, v, 3, cu_seqlens=torch.tensor([0, 0, 0], device=device))
    assert o.shape == (1, 0, 4, 32)


# --- head sizes, heads, dtypes, scale ---------------------------------------------------------------

@pytest.mark.parametrize("D", [64, 128, 256])
def test_every_head_size(D, device):
    compare(plain, qkv(1, 9, 2, 1, D, device=device), 4)


@pytest.mark.parametrize("D", [16, 24, 40, 48, 96, 512])
def test_other_head_sizes_are_refused(D, device):
    q, k, v = qkv(1, 8, 2, 2, D, device=device)
    with pytest.raises(ValueError, match=rf"head size D of q must be one of \(32, 64, 128, 256\); got {D}"):
        kernelgen.sliding_window_attention(q, k, v, 4)
    with pytest.raises(ValueError, match=rf"head size D of q must be one of .*; got {D}"):
        kernelgen.sliding_window_attention_decode(q[:, -1], k, v, 8, 4)


@pytest.mark.parametrize("HQ,H", [(4, 2), (8, 2), (4, 1), (3, 3)])
def test_grouped_query_heads(HQ, H, device):
    compare(plain, qkv(1, 20, HQ, H, 32, device=device), 6)


def test_fp16(device):
    compare(plain, qkv(2, 19, 4, 2, 32, dtype=torch.float16, device=device), 7)


@pytest.mark.parametrize("scale", [0.05, 1, np.float32(0.3), 2.5])
def test_explicit_scale(scale, device):
    compare(plain, qkv(1, 15, 2, 1, 32, device=device), 6, scale=scale)


# --- packed sequences -----------------------------------------------------------------------------

@pytest.mark.parametrize("bounds", [[0, 1, 1, 12, 30], [0, 0, 1, 30], [0, 29, 30, 30]])
@pytest.mark.parametrize("cu_dtype", [torch.int32, torch.int64])
def test_varlen_with_length_0_and_1(bounds, cu_dtype, device):
    cu = torch.tensor(bounds, dtype=cu_dtype, device=device)
    compare(plain, qkv(1, bounds[-1], 4, 2, 32, device=device), 5, cu_seqlens=cu)


def test_varlen_fp16_window_beyond_sequences(device):
    cu = torch.tensor([0, 1, 1, 6, 25], device=device)
    compare(plain, qkv(1, 25, 4, 2, 32, dtype=torch.float16, device=device), 64, cu_seqlens=cu)


def test_grid_limit_groups_batch_rows(device, monkeypatch):
    """More (batch, kv head) pairs than the grid's second axis holds: rows run in groups, with the
    same result (limit lowered to exercise it)."""
    monkeypatch.setattr(op_module, "MAX_GRID_Y", 4)   # H = 2: two rows per launch
    compare(plain, qkv(5, 11, 4, 2, 32, device=device), 4)


# --- decode ---------------------------------------------------------------------------------------

def test_decode_strided_caches_and_query(device):
    """Caches as views of a larger buffer (every other slot, heads-first memory), q as a slice."""
    B, S, HQ, H, D = 2, 20, 4, 2, 32
    k_cache = randn(B, H, 2 * S, D, seed=1, device=device).transpose(1, 2)[:, ::2]
    v_cache = randn(B, S, H, D + 5, seed=2, device=device)[..., 2:D + 2]
    q = randn(B, HQ, 2, D, seed=3, device=device)[:, :, 0]
    lengths = torch.tensor([7, 20], device=device)
    for window in (1, 5, 20, 50):
        o = kernelgen.sliding_window_attention_decode(q, k_cache, v_cache, lengths, window)
        _close(f"decode W={window}", o, sliding_window_attention_decode_ref(q, k_cache, v_cache, lengths, window),
               FWD_TOL[torch.float32])


@pytest.mark.parametrize("HQ,H", [(2, 2), (8, 2), (4, 1)])
def test_decode_lengths_0_1_and_full(HQ, H, device):
    B, S, D = 3, 9, 32
    q, k_cache, v_cache = randn(B, HQ, D, device=device), randn(B, S, H, D, seed=1, device=device), \
        randn(B, S, H, D, seed=2, device=device)
    lengths = torch.tensor([0, 1, S], dtype=torch.int32, device=device)
    o = kernelgen.sliding_window_attention_decode(q, k_cache, v_cache, lengths, 4, scale=0.2)
    _close("decode", o, sliding_window_attention_decode_ref(q, k_cache, v_cache, lengths, 4, scale=0.2), 1e-5)
    assert float(o[0].abs().max()) == 0.0
    for length in (0, 1, np.int64(S)):   # one int for every sequence
        o = kernelgen.sliding_window_attention_decode(q, k_cache, v_cache, length, 4)
        expected = sliding_window_attention_decode_ref(q, k_cache, v_cache, torch.full((B,), int(length)), 4)
        _close(f"decode L={length}", o, expected, 1e-5)


def test_decode_equals_last_row_of_packed_call(device):
    """Each packed sequence's last output equals a decode step on its own cache."""
    bounds = [0, 1, 9, 30]
    q, k, v = qkv(1, 30, 4, 2, 32, device=device)
    o = kernelgen.sliding_window_attention(q, k, v, 6, cu_seqlens=torch.tensor(bounds, device=device))
    for start, end in zip(bounds[:-1], bounds[1:]):
        step = kernelgen.sliding_window_attention_decode(q[:, end - 1:end], k[:, start:end], v[:, start:end],
                                                         end - start, 6)
        _close(f"sequence [{start}, {end})", step[:, 0], o[:, end - 1], 1e-5)


def test_decode_empty(device):
    q = randn(0, 4, 32, device=device)
    o = kernelgen.sliding_window_attention_decode(q, randn(0, 5, 2, 32, device=device),
                                                  randn(0, 5, 2, 32, device=device), 0, 3)
    assert o.shape == (0, 4, 32)
    o = kernelgen.sliding_window_attention_decode(randn(2, 4, 32, device=device), randn(2, 0, 2, 32, device=device),
                                                  randn(2, 0, 2, 32, device=device), 0, 3)
    assert o.shape == (2, 4, 32) and float(o.abs().max()) == 0.0


# --- wrong inputs ---------------------------------------------------------------------------------

def _bad_calls(device):
    """(name, error type, message pattern, call) for every wrong input."""
    q, k, v = qkv(1, 8, 4, 2, 32, device=device)
    two = qkv(2, 8, 4, 2, 32, device=device)
    swa = kernelgen.sliding_window_attention
    yield "k length", ValueError, r"k must be \[B=1, T=8, H, D=32\]; got \[1, 4, 2, 32\]", \
        lambda: swa(q, k[:, :4], v, 4)
    yield "v shape", ValueError, "v must be", lambda: swa(q, k, v[:, :, :1], 4)
    yield "q rank", ValueError, r"q must be \[B, T, HQ, D\]", lambda: swa(q[0], k, v, 4)
    yield "q not a tensor", TypeError, "q must be a torch.Tensor", lambda: swa(q.tolist(), k, v, 4)
    yield "heads not a multiple", ValueError, "HQ=3 of q must be a multiple of the kv heads H=2", \
        lambda: swa(q[:, :, :3], k, v, 4)
    yield "no kv heads", ValueError, r"at least one kv head \(H >= 1\); got H=0", \
        lambda: swa(q, k[:, :, :0], v[:, :, :0], 4)
    yield "int q/k/v", TypeError, "q must have dtype", lambda: swa(q.int(), k.int(), v.int(), 4)
    yield "int v", TypeError, "v must have dtype", lambda: swa(q, k, v.long(), 4)
    yield "float64", TypeError, "q must have dtype", lambda: swa(q.double(), k.double(), v.double(), 4)
    yield "mixed dtypes", TypeError, r"k must have the dtype of q \(float16\); got float32", \
        lambda: swa(q.half(), k, v, 4)
    for window in (0, -2, 2.5, True, None, "4", torch.tensor(4)):
        yield f"window_size {window!r}", ValueError, "window_size must be an int >= 1", \
            lambda window=window: swa(q, k, v, window)
    for scale in (0.0, -1.0, float("nan"), float("inf")):
        yield f"scale {scale}", ValueError, "scale must be > 0 and finite", \
            lambda scale=scale: swa(q, k, v, 4, scale=scale)
    yield "scale not a number", TypeError, "scale must be a float", lambda: swa(q, k, v, 4, scale="0.5")
    yield "cu_seqlens B > 1", ValueError, "batch size 1.*; got B=2", \
        lambda: swa(*two, 4, cu_seqlens=torch.tensor([0, 8], device=device))
    yield "cu_seqlens float", TypeError, "cu_seqlens must be int32 or int64", \
        lambda: swa(q, k, v, 4, cu_seqlens=torch.tensor([0.0, 8.0], device=device))
    yield "cu_seqlens list", TypeError, "cu_seqlens must be a torch.Tensor", lambda: swa(q, k, v, 4, cu_seqlens=[0, 8])
    yield "cu_seqlens one offset", ValueError, "N\\+1 >= 2 offsets", \
        lambda: swa(q, k, v, 4, cu_seqlens=torch.tensor([0], device=device))
    for bounds in ([0, 5], [0, 12], [2, 8], [0, 6, 3, 8]):
        yield f"cu_seqlens {bounds}", ValueError, "cu_seqlens must rise from 0 to T=8", \
            lambda bounds=bounds: swa(q, k, v, 4, cu_seqlens=torch.tensor(bounds, device=device))
    if device == "cpu":   # meta tensors stand in for a second device
        yield "k on another device", ValueError, "k is on meta but q is on cpu", lambda: swa(q, k.to("meta"), v, 4)
        yield "cu_seqlens on another device", ValueError, "cu_seqlens is on meta", \
            lambda: swa(q, k, v, 4, cu_seqlens=torch.tensor([0, 8], device="meta"))
    decode = kernelgen.sliding_window_attention_decode
    q1 = q[:, -1]
    yield "decode q with T > 1", ValueError, r"q must be \[B, T=1, HQ, D\]", lambda: decode(q[:, :2], k, v, 8, 4)
    yield "decode q rank", ValueError, r"q must be \[B, HQ, D\]", lambda: decode(q1[0], k, v, 8, 4)
    yield "decode cache shape", ValueError, "v_cache must be", lambda: decode(q1, k, v[:, :5], 8, 4)
    yield "decode int", TypeError, "q must have dtype", lambda: decode(q1.int(), k.int(), v.int(), 8, 4)
    yield "decode mixed dtypes", TypeError, "k_cache must have the dtype of q", lambda: decode(q1.half(), k, v, 8, 4)
    yield "decode seqlens shape", ValueError, r"cache_seqlens must be \[B=1\]", \
        lambda: decode(q1, k, v, torch.tensor([8, 8], device=device), 4)
    yield "decode seqlens float", TypeError, "cache_seqlens must be int32 or int64", \
        lambda: decode(q1, k, v, torch.tensor([8.0], device=device), 4)
    yield "decode seqlens list", TypeError, "cache_seqlens must be a torch.Tensor", lambda: decode(q1, k, v, [8], 4)
    yield "decode seqlens > S", ValueError, r"cache_seqlens must be in \[0, S=8\]", lambda: decode(q1, k, v, 9, 4)
    yield "decode seqlens < 0", ValueError, r"cache_seqlens must be in \[0, S=8\]", lambda: decode(q1, k, v, -1, 4)
    yield "decode window 0", ValueError, "window_size must be an int >= 1", lambda: decode(q1, k, v, 8, 0)
    yield "decode scale", ValueError, "scale must be > 0", lambda: decode(q1, k, v, 8, 4, scale=-1.0)


@pytest.mark.parametrize("case", [name for name, *_ in _bad_calls("cpu")])
def test_wrong_inputs_raise_clear_errors(case, device):
    expect_bad_call(_bad_calls(device), case, device)


def test_no_query_heads_give_zero_key_gradients(device):
    """HQ = 0 passes HQ % H == 0: no query reads a key, so k and v get zero gradients (before: the
    backward returned its uninitialised buffers)."""
    q = torch.zeros(2, 7, 0, 32, device=device).requires_grad_()
    k, v = (torch.randn(2, 7, 1, 32, device=device).requires_grad_() for _ in range(2))
    o = kernelgen.sliding_window_attention(q, k, v, 3)
    dq, dk, dv = torch.autograd.grad(o.sum(), [q, k, v])
    assert dq.shape == q.shape and not dk.abs().sum() and not dv.abs().sum()
