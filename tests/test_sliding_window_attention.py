"""Sliding-window attention: the op, its kernels and templates against the float64 reference.

CPU runs go through the Triton interpreter, so shapes are tiny (T = 45: ragged against every
tile) and the tile grid is small (16/32) to exercise the masked-edge / unmasked-interior split
and the window split. Tolerances (relative Frobenius error): fp32 1e-5, fp16 2e-3 forward and
5e-3 backward; bf16 (GPU only) 2e-2 forward and 5e-2 backward.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kernelgen
from kernelgen.reference.sliding_window_attention import (sliding_window_attention_backward_ref,
                                                           sliding_window_attention_decode_ref,
                                                           sliding_window_attention_ref)
import kernelgen.templates.sliding_window_attention as swa_module
from kernelgen.templates.sliding_window_attention import (BACKWARD, DECODE, FORWARD, swa_backward, swa_decode,
                                                          swa_forward)
from reference_utils import assert_close

ROOT = Path(__file__).resolve().parents[1]
FWD_TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}
BWD_TOL = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 5e-2}

SMALL_FWD = [  # square, tall, wide tiles; window split 1, 2, 4; three loops or one fused loop; TMA loads
    {"BLOCK_M": 16, "BLOCK_N": 16, "SPLITS": 1, "FUSED": 0, "num_warps": 4, "num_stages": 1},
    {"BLOCK_M": 32, "BLOCK_N": 16, "SPLITS": 2, "FUSED": 0, "num_warps": 4, "num_stages": 2},
    {"BLOCK_M": 16, "BLOCK_N": 32, "SPLITS": 4, "FUSED": 0, "num_warps": 4, "num_stages": 1},
    {"BLOCK_M": 16, "BLOCK_N": 16, "SPLITS": 2, "FUSED": 1, "num_warps": 4, "num_stages": 1},
    {"BLOCK_M": 32, "BLOCK_N": 16, "SPLITS": 1, "FUSED": 1, "num_warps": 4, "num_stages": 1},
    {"BLOCK_M": 16, "BLOCK_N": 16, "SPLITS": 2, "FUSED": 1, "TMA": 1, "num_warps": 4, "num_stages": 1},
    {"BLOCK_M": 32, "BLOCK_N": 16, "SPLITS": 1, "FUSED": 1, "TMA": 1, "num_warps": 4, "num_stages": 2},
    # the row max anchored on the diagonal blocks: three loops, one loop, TMA with wide key tiles
    {"BLOCK_M": 16, "BLOCK_N": 16, "SPLITS": 1, "FUSED": 0, "ANCHOR": 1, "num_warps": 4, "num_stages": 1},
    {"BLOCK_M": 32, "BLOCK_N": 16, "SPLITS": 1, "FUSED": 1, "ANCHOR": 1, "num_warps": 4, "num_stages": 2},
    {"BLOCK_M": 16, "BLOCK_N": 32, "SPLITS": 1, "FUSED": 1, "TMA": 1, "ANCHOR": 1, "num_warps": 4, "num_stages": 1},
]
SMALL_BWD = [  # tall dK/dV tiles, wide dQ tiles; three loops or one fused loop; pointer or TMA loads
    {"BLOCK_M_KV": 16, "BLOCK_N_KV": 32, "warps_kv": 4, "stages_kv": 1,
     "BLOCK_M_Q": 32, "BLOCK_N_Q": 16, "warps_q": 4, "stages_q": 1},
    {"BLOCK_M_KV": 32, "BLOCK_N_KV": 16, "warps_kv": 4, "stages_kv": 2,
     "BLOCK_M_Q": 16, "BLOCK_N_Q": 32, "warps_q": 4, "stages_q": 2},
]
SMALL_BWD = [{**config, "FUSED": fused, "TMA": tma} for tma in (0, 1) for fused in (0, 1) for config in SMALL_BWD]


def _fwd_id(config):
    return (f"{config['BLOCK_M']}x{config['BLOCK_N']}s{config['SPLITS']}{'fused' if config['FUSED'] else ''}"
            f"{'tma' if config.get('TMA') else ''}{'anchor' if config.get('ANCHOR') else ''}")


def _bwd_id(config):
    return (f"{config['BLOCK_M_KV']}x{config['BLOCK_N_KV']}-{config['BLOCK_M_Q']}x{config['BLOCK_N_Q']}"
            f"{'fused' if config['FUSED'] else ''}{'tma' if config['TMA'] else ''}")


def _inputs(device, dtype, batch=2, length=45, heads_q=4, heads=2, dim=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    make = lambda *shape: torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)  # noqa: E731
    return (make(batch, length, heads_q, dim), make(batch, length, heads, dim), make(batch, length, heads, dim),
            make(batch, length, heads_q, dim))


def _close(name, out, ref, tol):
    """Relative error, or an absolute bound where the reference is exactly zero (W = 1: dq = dk = 0)."""
    if float(ref.norm()) == 0.0:
        assert float(out.detach().abs().max()) <= tol, f"{name}: expected zeros"
    else:
        assert_close(name, out, ref, tol)


# --- forward ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, window, heads_q, heads", [
    (torch.float32, 1, 4, 2),       # attends only itself
    (torch.float32, 13, 4, 2),      # in between, GQA
    (torch.float16, 45, 4, 2),      # W = T: causal
    (torch.float32, 100, 2, 2),     # W > T, plain MHA
    (torch.float16, 20, 4, 1),      # multi-query
])
def test_forward_matches_reference(device, dtype, window, heads_q, heads):
    q, k, v, _ = _inputs(device, dtype, heads_q=heads_q, heads=heads)
    o, lse = kernelgen.sliding_window_attention(q, k, v, window, return_lse=True)
    o_ref, lse_ref = sliding_window_attention_ref(q, k, v, window)
    assert o.dtype == dtype and lse.dtype == torch.float32 and lse.shape == (2, heads_q, 45)
    assert_close("o", o, o_ref, FWD_TOL[dtype])
    assert_close("lse", lse, lse_ref, 1e-5)
    assert torch.equal(kernelgen.sliding_window_attention(q, k, v, window), o)


@pytest.mark.parametrize("config", SMALL_FWD,
                         ids=_fwd_id)
def test_forward_tiles_edges_and_splits(device, config):
    q, k, v, _ = _inputs(device, torch.float32)
    for window in (7, 20):   # interior range empty / non-empty for 16-wide tiles
        o, lse = swa_forward(q, k, v, window, 0.3, None, config)
        o_ref, lse_ref = sliding_window_attention_ref(q, k, v, window, scale=0.3)
        assert_close(f"o W={window}", o, o_ref, 1e-5)
        assert_close(f"lse W={window}", lse, lse_ref, 1e-5)


@pytest.mark.parametrize("config", [
    {"BLOCK_M": 32, "BLOCK_N": 16, "SPLITS": 1, "FUSED": 0, "ANCHOR": 1, "num_warps": 4, "num_stages": 1},
    {"BLOCK_M": 32, "BLOCK_N": 16, "SPLITS": 1, "FUSED": 1, "ANCHOR": 1, "num_warps": 4, "num_stages": 2},
    {"BLOCK_M": 16, "BLOCK_N": 16, "SPLITS": 1, "FUSED": 1, "TMA": 1, "ANCHOR": 1, "num_warps": 4, "num_stages": 2},
], ids=_fwd_id)
def test_forward_anchored_long_window(device, config):
    """Many anchored blocks after the diagonal ones (the fused path visits them in one rotated
    loop): a 100-key window over 150 ragged tokens, and a packed batch whose sequences end mid-block."""
    q, k, v, _ = _inputs(device, torch.float32, batch=1, length=150, heads_q=2, heads=1)
    o, lse = swa_forward(q, k, v, 100, 0.3, None, config)
    o_ref, lse_ref = sliding_window_attention_ref(q, k, v, 100, scale=0.3)
    assert_close("o", o, o_ref, 1e-5)
    assert_close("lse", lse, lse_ref, 1e-5)
    cu_seqlens = torch.tensor([0, 37, 150], dtype=torch.int32, device=device)
    o, lse = swa_forward(q, k, v, 100, 0.3, cu_seqlens, config)
    for start, end in ((0, 37), (37, 150)):
        o_ref, lse_ref = sliding_window_attention_ref(q[:, start:end], k[:, start:end], v[:, start:end], 100,
                                                      scale=0.3)
        assert_close(f"o [{start}, {end})", o[:, start:end], o_ref, 1e-5)
        assert_close(f"lse [{start}, {end})", lse[:, :, start:end], lse_ref, 1e-5)


@pytest.mark.parametrize("dtype, key_norm", [
    (torch.float16, 20.0),    # weights up to ~2^40 past the diagonal's: overflow fp16, redone online
    (torch.float32, 20.0),    # the same weights kept by the anchored sums (limit 2^64)
    (torch.float32, 100.0),   # ~2^190: would overflow fp32, redone online
])
@pytest.mark.parametrize("fused", [0, 1])
def test_forward_anchor_outlying_scores(device, dtype, key_norm, fused):
    """A key far outscoring every later row's diagonal block: the anchored forward keeps weights
    under its limit and redoes a window online past it; both match the reference."""
    q, k, v, _ = _inputs(device, torch.float32, heads_q=2, heads=2)
    direction = torch.zeros(32, device=device)
    direction[0] = 1.0
    q = q + 3.0 * direction                       # every query leans towards one direction
    k[:, 3] = key_norm * direction                # key 3 points along it
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    scale, window = 0.3, 40
    gaps = scale * (q.double()[:, 16:43] @ k.double()[:, 3, None].transpose(-1, -2)) / math.log(2)
    assert gaps.max() > 15.0   # past fp16's limit (2^15), in base 2
    config = {"BLOCK_M": 16, "BLOCK_N": 16, "SPLITS": 1, "FUSED": fused, "ANCHOR": 1, "num_warps": 4,
              "num_stages": 1}
    o, lse = swa_forward(q, k, v, window, scale, None, config)
    o_ref, lse_ref = sliding_window_attention_ref(q, k, v, window, scale=scale)
    assert_close("o", o, o_ref, FWD_TOL[dtype])
    assert_close("lse", lse, lse_ref, 1e-5)


def test_custom_scale_and_noncontiguous_inputs(device):
    q, k, v, _ = _inputs(device, torch.float32)
    q_strided = q.transpose(1, 2).contiguous().transpose(1, 2)      # same values, [B, HQ, T, D] memory
    o = kernelgen.sliding_window_attention(q_strided, k, v, 9, scale=0.5)
    assert_close("o", o, sliding_window_attention_ref(q, k, v, 9, scale=0.5)[0], 1e-5)


# --- backward -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, window", [(torch.float32, 13), (torch.float16, 45), (torch.float32, 1)])
def test_backward_matches_autograd(device, dtype, window):
    q, k, v, do = _inputs(device, dtype)
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    o = kernelgen.sliding_window_attention(*leaves, window)
    grads = torch.autograd.grad(o, leaves, do)
    leaves64 = [x.detach().to(torch.float64).requires_grad_() for x in (q, k, v)]
    o64, _ = sliding_window_attention_ref(*leaves64, window)
    refs = torch.autograd.grad(o64, leaves64, do.to(torch.float64))
    for name, grad, ref in zip(("dq", "dk", "dv"), grads, refs):
        assert grad.dtype == dtype
        _close(name, grad, ref, BWD_TOL[dtype])


@pytest.mark.parametrize("config", SMALL_BWD, ids=_bwd_id)
def test_backward_tiles(device, config):
    # T = 45: the last tile of sequence 0 reaches into sequence 1 (TMA) or is clamped (pointers).
    q, k, v, do = _inputs(device, torch.float32)
    for window in (7, 20):
        o, lse = swa_forward(q, k, v, window, 32 ** -0.5, None, SMALL_FWD[0])
        grads = swa_backward(q, k, v, o, lse, do, window, 32 ** -0.5, None, config)
        refs = sliding_window_attention_backward_ref(q, k, v, do, window)
        for name, grad, ref in zip(("dq", "dk", "dv"), grads, refs):
            assert_close(f"{name} W={window}", grad, ref, 1e-5)


def test_backward_tma_falls_back_on_misaligned_inputs(device):
    # A view 4 bytes into its storage cannot back a tensor descriptor: pointer loads instead.
    q, k, v, do = _inputs(device, torch.float32)
    shifted = []
    for x in (q, k, v, do):
        storage = torch.empty(x.numel() + 1, device=device, dtype=x.dtype)
        shifted.append(storage[1:].view(x.shape).copy_(x))
    assert shifted[0].data_ptr() % 16 != 0
    o, lse = swa_forward(q, k, v, 20, 32 ** -0.5, None, SMALL_FWD[0])
    grads = swa_backward(*shifted[:3], o, lse, shifted[3], 20, 32 ** -0.5, None, SMALL_BWD[-1])
    for name, grad, ref in zip(("dq", "dk", "dv"), grads, sliding_window_attention_backward_ref(q, k, v, do, 20)):
        assert_close(name, grad, ref, 1e-5)


def test_backward_reference_matches_autograd(device):
    q, k, v, do = (x.to(torch.float64) for x in _inputs(device, torch.float32, length=21))
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    cu = torch.tensor([0, 5, 21], device=device)
    o, _ = sliding_window_attention_ref(*(x[:1] for x in leaves), 6, cu_seqlens=cu, chunk=4)
    expected = torch.autograd.grad(o, leaves, do[:1])
    found = sliding_window_attention_backward_ref(q[:1], k[:1], v[:1], do[:1], 6, cu_seqlens=cu, chunk=4)
    for name, got, want in zip(("dq", "dk", "dv"), found, expected):
        assert_close(name, got, want[:1], 1e-12)


@pytest.mark.parametrize("packed", [False, True], ids=["batched", "packed"])
def test_lse_gradient_reaches_q_and_k(device, packed):
    """A loss on lse too (partial attentions merged by their lse): ∂lse_i/∂s_ij = p_ij enters dq and
    dk; a loss on lse alone leaves dv zero. Against autograd through the float64 reference."""
    q, k, v, do = _inputs(device, torch.float32)
    cu = torch.tensor([0, 7, 7, 30, 45], dtype=torch.int32, device=device) if packed else None
    if packed:
        q, k, v, do = (x[:1] for x in (q, k, v, do))
    window = 9
    dlse = torch.randn(q.shape[0], q.shape[2], q.shape[1], generator=torch.Generator().manual_seed(5)).to(device)
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    leaves64 = [x.detach().to(torch.float64).requires_grad_() for x in (q, k, v)]
    o, lse = kernelgen.sliding_window_attention(*leaves, window, cu_seqlens=cu, return_lse=True)
    o64, lse64 = sliding_window_attention_ref(*leaves64, window, cu_seqlens=cu)
    grads = torch.autograd.grad([o, lse], leaves, [do, dlse])
    refs = torch.autograd.grad([o64, lse64], leaves64, [do.to(torch.float64), dlse.to(torch.float64)])
    for name, grad, ref in zip(("dq", "dk", "dv"), grads, refs):
        assert_close(name, grad, ref, 1e-5)
    o, lse = kernelgen.sliding_window_attention(*leaves, window, cu_seqlens=cu, return_lse=True)
    _, lse64 = sliding_window_attention_ref(*leaves64, window, cu_seqlens=cu)
    dq, dk, dv = torch.autograd.grad(lse, leaves, dlse)
    ref_dq, ref_dk = torch.autograd.grad(lse64, leaves64[:2], dlse.to(torch.float64))
    assert_close("dq (lse only)", dq, ref_dq, 1e-5)
    assert_close("dk (lse only)", dk, ref_dk, 1e-5)
    assert float(dv.abs().max()) == 0.0


# --- packed sequences -----------------------------------------------------------------------------
def test_varlen_matches_separate_sequences(device):
    q, k, v, do = (x[:1] for x in _inputs(device, torch.float32))
    bounds = [0, 7, 7, 30, 45]   # includes an empty sequence
    cu = torch.tensor(bounds, dtype=torch.int32, device=device)
    window = 9
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    o, lse = kernelgen.sliding_window_attention(*leaves, window, cu_seqlens=cu, return_lse=True)
    grads = torch.autograd.grad(o, leaves, do)
    for start, end in zip(bounds[:-1], bounds[1:]):
        if start == end:
            continue
        part = [x[:, start:end] for x in (q, k, v)]
        o_ref, lse_ref = sliding_window_attention_ref(*part, window)
        refs = sliding_window_attention_backward_ref(*part, do[:, start:end], window)
        assert_close(f"o[{start}:{end}]", o[:, start:end], o_ref, 1e-5)
        assert_close(f"lse[{start}:{end}]", lse[:, :, start:end], lse_ref, 1e-5)
        for name, grad, ref in zip(("dq", "dk", "dv"), grads, refs):
            assert_close(f"{name}[{start}:{end}]", grad[:, start:end], ref, 1e-5)


def test_varlen_small_tiles(device):
    q, k, v, do = (x[:1] for x in _inputs(device, torch.float32))
    cu = torch.tensor([0, 3, 40, 45], dtype=torch.int64, device=device)
    window = 18
    o, lse = swa_forward(q, k, v, window, 32 ** -0.5, cu, SMALL_FWD[1])
    o_ref, lse_ref = sliding_window_attention_ref(q, k, v, window, cu_seqlens=cu)
    assert_close("o", o, o_ref, 1e-5)
    assert_close("lse", lse, lse_ref, 1e-5)
    grads = swa_backward(q, k, v, o, lse, do, window, 32 ** -0.5, cu, SMALL_BWD[0])
    for name, grad, ref in zip(("dq", "dk", "dv"), grads,
                               sliding_window_attention_backward_ref(q, k, v, do, window, cu_seqlens=cu)):
        assert_close(name, grad, ref, 1e-5)


@pytest.mark.parametrize("config", [c for c in SMALL_FWD if c.get("TMA") or c.get("ANCHOR")],
                         ids=_fwd_id)
def test_varlen_tma_and_anchored_loops_stay_in_their_sequence(device, config):
    # One [tokens, H * D] descriptor serves every sequence: keys past a sequence's end (the next
    # sequence's rows, or zero fill at the tensor's end) must be masked out; the anchored loop's
    # diagonal blocks are the sequence's own.
    q, k, v, _ = (x[:1] for x in _inputs(device, torch.float32))
    cu = torch.tensor([0, 3, 40, 45], dtype=torch.int64, device=device)
    o, lse = swa_forward(q, k, v, 18, 32 ** -0.5, cu, config)
    o_ref, lse_ref = sliding_window_attention_ref(q, k, v, 18, cu_seqlens=cu)
    assert_close("o", o, o_ref, 1e-5)
    assert_close("lse", lse, lse_ref, 1e-5)


@pytest.mark.parametrize("config", SMALL_BWD[2:], ids=_bwd_id)   # the plain loops: test_varlen_small_tiles
def test_varlen_backward_stays_in_its_sequence(device, config):
    # The fused loops mask by branch; the backward's Q, dO (dK/dV kernel) and K, V (dQ kernel)
    # descriptors span every sequence, so rows past a sequence's end are the next one's.
    q, k, v, do = (x[:1] for x in _inputs(device, torch.float32))
    cu = torch.tensor([0, 3, 40, 45], dtype=torch.int64, device=device)
    o, lse = swa_forward(q, k, v, 18, 32 ** -0.5, cu, SMALL_FWD[1])
    grads = swa_backward(q, k, v, o, lse, do, 18, 32 ** -0.5, cu, config)
    for name, grad, ref in zip(("dq", "dk", "dv"), grads,
                               sliding_window_attention_backward_ref(q, k, v, do, 18, cu_seqlens=cu)):
        assert_close(name, grad, ref, 1e-5)


# --- decode -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, window", [(torch.float32, 10), (torch.float16, 64)])
def test_decode_equals_last_row(device, dtype, window):
    q, k, v, _ = _inputs(device, dtype)
    full = kernelgen.sliding_window_attention(q, k, v, window)
    step = kernelgen.sliding_window_attention_decode(q[:, -1:], k, v, torch.full((2,), 45, device=device), window)
    assert step.shape == (2, 1, 4, 32)
    assert_close("decode", step[:, 0], full[:, -1].to(torch.float64), FWD_TOL[dtype])
    flat = kernelgen.sliding_window_attention_decode(q[:, -1], k, v, 45, window)   # [B, HQ, D] form
    assert flat.shape == (2, 4, 32)
    assert torch.equal(flat, step[:, 0])


@pytest.mark.parametrize("splits", [1, 4])
def test_decode_ragged_cache(device, splits):
    gen = torch.Generator().manual_seed(3)
    k_cache = torch.randn(3, 50, 2, 32, generator=gen).to(device)
    v_cache = torch.randn(3, 50, 2, 32, generator=gen).to(device)
    q = torch.randn(3, 4, 32, generator=gen).to(device)
    lengths = torch.tensor([0, 17, 50], dtype=torch.int32, device=device)
    config = {"BLOCK_N": 16, "SPLITS": splits, "num_warps": 4, "num_stages": 1}
    for window in (1, 23):
        o = swa_decode(q, k_cache, v_cache, lengths, window, 32 ** -0.5, config)
        assert_close(f"decode W={window}", o, sliding_window_attention_decode_ref(q, k_cache, v_cache, lengths,
                                                                                   window), 1e-5)
        assert float(o[0].abs().max()) == 0.0   # an empty cache gives zeros
    for counters, _ in swa_module._decode_workspaces.values():   # the split counters reset themselves
        assert int(counters.abs().sum()) == 0


def test_decode_clamps_huge_int64_lengths_to_the_cache(device):
    """A length past S reads the whole cache, also past 2**31 (clamped before it narrows to int32)."""
    q, k, v, _ = _inputs(device, torch.float32)
    whole = kernelgen.sliding_window_attention_decode(q[:, -1], k, v, 45, 8)
    for huge in (46, 2 ** 31 + 5, 2 ** 32 + 3):
        lengths = torch.full((2,), huge, dtype=torch.int64, device=device)
        assert torch.equal(kernelgen.sliding_window_attention_decode(q[:, -1], k, v, lengths, 8), whole)


# --- argument checks -----------------------------------------------------------------------------
def test_bad_inputs(device):
    q, k, v, _ = _inputs(device, torch.float32)
    swa = kernelgen.sliding_window_attention
    with pytest.raises(ValueError, match="head size D of q must be one of"):
        swa(torch.randn(1, 8, 2, 48, device=device), torch.randn(1, 8, 2, 48, device=device),
            torch.randn(1, 8, 2, 48, device=device), 4)
    with pytest.raises(ValueError, match="multiple of the kv heads"):
        swa(q[:, :, :3], k, v, 4)
    with pytest.raises(ValueError, match=r"k must be \[B=2, T=45, H, D=32\]; got \[2, 44, 2, 32\]"):
        swa(q, k[:, :44], v, 4)
    with pytest.raises(ValueError, match="v must be"):
        swa(q, k, v[..., :1, :], 4)
    with pytest.raises(ValueError, match="q must be"):
        swa(q[0], k, v, 4)
    with pytest.raises(TypeError, match="q must have dtype"):
        swa(q.to(torch.int32), k, v, 4)
    with pytest.raises(TypeError, match="k must have the dtype of q"):
        swa(q, k.half(), v, 4)
    for window in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="window_size must be an int >= 1"):
            swa(q, k, v, window)
    with pytest.raises(ValueError, match="scale must be > 0"):
        swa(q, k, v, 4, scale=-1.0)
    with pytest.raises(ValueError, match="batch size 1"):
        swa(q, k, v, 4, cu_seqlens=torch.tensor([0, 45], device=device))
    with pytest.raises(TypeError, match="cu_seqlens must be int32 or int64"):
        swa(q[:1], k[:1], v[:1], 4, cu_seqlens=torch.tensor([0.0, 45.0], device=device))
    decode = kernelgen.sliding_window_attention_decode
    with pytest.raises(ValueError, match=r"q must be \[B, T=1, HQ, D\]"):
        decode(q[:, :2], k, v, 45, 4)
    with pytest.raises(ValueError, match="cache_seqlens must be"):
        decode(q[:, -1], k, v, torch.tensor([45], device=device), 4)
    with pytest.raises(ValueError, match="window_size"):
        decode(q[:, -1], k, v, 45, 0)


# --- templates ------------------------------------------------------------------------------------------
def _verify(template, config, shape, device, dtype="fp32"):
    inputs = template.make_inputs(shape, dtype, "", device, torch.Generator().manual_seed(1))
    outputs = template.allocate_outputs(inputs, shape, dtype, "")
    for buffer in outputs.values():
        buffer.fill_(float("nan"))
    template.launch(config, inputs, outputs, shape, "")
    for name, ref in template.reference(inputs, shape, "").items():
        assert_close(f"{template.name} {name} {config}", outputs[name], ref, template.tolerance(dtype, name))


@pytest.mark.parametrize("template", [FORWARD, BACKWARD, DECODE], ids=lambda t: t.name)
def test_template_default_on_cpu_workload(device, template):
    for shape in template.cpu_workload:
        _verify(template, template.default_config(shape), shape, device)
        _verify(template, template.default_config(shape), shape, device, dtype="fp16")


@pytest.mark.parametrize("template", [FORWARD, BACKWARD, DECODE], ids=lambda t: t.name)
def test_template_grid_subset_runs(device, template):
    shape = template.cpu_workload[0]
    grid = template.grid(shape)
    assert grid and template.default_config(shape) in grid
    # A spread of the grid: first, last and two in between (distinct tiles and splits). The space's
    # shared-memory model is for 2-byte elements (the op shrinks tiles for fp32: `fit`), so a GPU
    # runs it in fp16; the interpreter has no such limit and checks fp32.
    dtype = "fp16" if device == "cuda" else "fp32"
    for config in {0: grid[0], 1: grid[len(grid) // 3], 2: grid[2 * len(grid) // 3], 3: grid[-1]}.values():
        _verify(template, config, shape, device, dtype=dtype)


def test_check_config_rejects_impossible():
    big = {"B": 1, "T": 4096, "HQ": 8, "H": 8, "D": 256, "W": 4096}
    huge = {"BLOCK_M": 128, "BLOCK_N": 128, "num_warps": 4, "num_stages": 4, "SPLITS": 1}
    assert "shared memory" in FORWARD.check_config(huge, big)
    assert "registers" in FORWARD.check_config({**huge, "num_stages": 1, "BLOCK_N": 32}, big)
    assert "head size" in FORWARD.check_config(FORWARD.default_config(big), {**big, "D": 48})
    short = {**big, "D": 64, "W": 16}
    assert "too short" in FORWARD.check_config({**huge, "BLOCK_M": 32, "BLOCK_N": 64, "SPLITS": 4}, short)
    assert "FUSED=1" in FORWARD.check_config({**FORWARD.default_config(big), "FUSED": 0, "TMA": 1}, big)
    bwd = BACKWARD.default_config(big)
    assert BACKWARD.check_config(bwd, big) is None
    d128 = BACKWARD.default_config({**big, "D": 128})   # timed on the H100: fused loop + TMA there
    assert d128["TMA"] == 1 and d128["FUSED"] == 1 and BACKWARD.default_config({**big, "D": 64})["TMA"] == 0
    assert BACKWARD.check_config({**bwd, "TMA": 0}, big) is None
    assert "registers" in BACKWARD.check_config({**bwd, "BLOCK_N_KV": 64, "warps_kv": 4}, big)
    # 64 x 64 dK/dV tiles on 4 warps at D = 128: spill-free in the fused loop only
    assert d128["BLOCK_M_KV"] == 64 and BACKWARD.check_config(d128, {**big, "D": 128}) is None
    assert "registers" in BACKWARD.check_config({**d128, "FUSED": 0}, {**big, "D": 128})
    assert "shared memory" in BACKWARD.check_config({**bwd, "BLOCK_N_KV": 128, "BLOCK_M_KV": 64}, big)
    dec = {"B": 1, "HQ": 8, "H": 8, "D": 128, "W": 64}
    assert "too short" in DECODE.check_config({"BLOCK_N": 64, "SPLITS": 4, "num_warps": 4, "num_stages": 1}, dec)
    for template in (FORWARD, BACKWARD):
        for shape in template.workload:
            assert template.check_config(template.default_config(shape), shape) is None, (template.name, shape)
    for shape in DECODE.workload:
        assert DECODE.check_config(DECODE.default_config(shape), shape) is None, shape


def test_flops_count_only_attended_pairs():
    shape = {"B": 2, "T": 10, "HQ": 3, "H": 1, "D": 32, "W": 4}
    pairs = sum(min(i + 1, 4) for i in range(10))
    assert FORWARD.flops(shape, "bf16") == 4 * 32 * 2 * 3 * pairs
    assert BACKWARD.flops(shape, "bf16") == 2.5 * FORWARD.flops(shape, "bf16")
    assert FORWARD.shape_of(B=2, T=10, HQ=3, H=1, D=32, W=100)["W"] == 10


def test_backward_tma_and_fused_paths_compile_for_the_h100(tmp_path):
    # The interpreter runs descriptor loads but never lowers them: compile both paths for sm_90.
    # MHA: under GQA the three-loop dK/dV kernel reaches 255 registers at these tiles and may spill.
    # The three loops on 32-query steps: at the default's 64 they spill, and check_config says so.
    out = tmp_path / "aot.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    three_loops = '[{"TMA": 0, "FUSED": 0, "BLOCK_M_KV": 32}, {"FUSED": 0, "BLOCK_M_KV": 32}]'
    done = subprocess.run([sys.executable, "-m", "kernelgen.aot", "--template", BACKWARD.name,
                           "--shape", "B=1,T=256,HQ=2,H=2,D=128,W=64", "--configs", three_loops,
                           "--json", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())
    # The D = 128 default (TMA, the fused loop), pointer loads (three loops), TMA in three loops.
    assert [(row["config"]["TMA"], row["config"]["FUSED"]) for row in rows] == [(1, 1), (0, 0), (1, 0)]
    for row in rows:
        assert row["reason"] is None, row["reason"]
        assert sorted(k["kernel"] for k in row["kernels"]) == ["_bwd_dkdv_kernel", "_bwd_dq_kernel"]
        for kernel in row["kernels"]:
            # The default's fused dK/dV on 64-query steps: Triton 3.6 spills 16 bytes, outside the
            # loop (one STL/LDL pair each side of it); Triton 3.9 none. Nothing else may spill.
            fused_dkdv = kernel["kernel"] == "_bwd_dkdv_kernel" and row["config"]["FUSED"]
            assert kernel["local_bytes"] <= (16 if fused_dkdv else 0), row


# --- GPU ----------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("dim, window, heads_q, heads", [(128, 512, 16, 16), (64, 128, 16, 4), (256, 300, 8, 8),
                                                         (32, 4096, 8, 2)])
def test_gpu_bf16_forward_backward(dim, window, heads_q, heads):
    q, k, v, do = _inputs("cuda", torch.bfloat16, batch=2, length=1999, heads_q=heads_q, heads=heads, dim=dim)
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    o, lse = kernelgen.sliding_window_attention(*leaves, window, return_lse=True)
    grads = torch.autograd.grad(o, leaves, do)
    o_ref, lse_ref = sliding_window_attention_ref(q, k, v, window)
    assert_close("o", o, o_ref, FWD_TOL[torch.bfloat16])
    assert_close("lse", lse, lse_ref, 1e-3)
    refs = sliding_window_attention_backward_ref(q, k, v, do, window)
    for name, grad, ref in zip(("dq", "dk", "dv"), grads, refs):
        assert_close(name, grad, ref, BWD_TOL[torch.bfloat16])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_gpu_varlen_and_dtypes(dtype):
    q, k, v, do = (x[:1] for x in _inputs("cuda", dtype, length=3001, heads_q=8, heads=2, dim=128))
    cu = torch.tensor([0, 1, 700, 2100, 3001], dtype=torch.int32, device="cuda")
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    o = kernelgen.sliding_window_attention(*leaves, 257, cu_seqlens=cu)
    grads = torch.autograd.grad(o, leaves, do)
    assert_close("o", o, sliding_window_attention_ref(q, k, v, 257, cu_seqlens=cu)[0], FWD_TOL[dtype] * 5)
    refs = sliding_window_attention_backward_ref(q, k, v, do, 257, cu_seqlens=cu)
    for name, grad, ref in zip(("dq", "dk", "dv"), grads, refs):
        assert_close(name, grad, ref, BWD_TOL[dtype] * 2)


@pytest.mark.gpu
@pytest.mark.parametrize("fused, tma", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_gpu_backward_loops_and_loads(fused, tma):
    # Packed sequences (rows past each end belong to the next one) and a ragged batch end, GQA.
    q, k, v, do = (x[:1] for x in _inputs("cuda", torch.bfloat16, length=1999, heads_q=8, heads=2, dim=128))
    cu = torch.tensor([0, 5, 1000, 1999], dtype=torch.int32, device="cuda")
    shape = {"B": 3, "T": 666, "HQ": 8, "H": 2, "D": 128, "W": 300}
    config = {**BACKWARD.default_config(shape), "FUSED": fused, "TMA": tma}
    o, lse = swa_forward(q, k, v, 300, 128 ** -0.5, cu, FORWARD.default_config(shape))
    grads = swa_backward(q, k, v, o, lse, do, 300, 128 ** -0.5, cu, config)
    refs = sliding_window_attention_backward_ref(q, k, v, do, 300, cu_seqlens=cu)
    for name, grad, ref in zip(("dq", "dk", "dv"), grads, refs):
        assert_close(name, grad, ref, BWD_TOL[torch.bfloat16])


@pytest.mark.gpu
def test_gpu_every_forward_split_and_decode():
    q, k, v, _ = _inputs("cuda", torch.bfloat16, batch=1, length=4096, heads_q=8, heads=2, dim=128)
    o_ref, lse_ref = sliding_window_attention_ref(q, k, v, 4096)
    for splits in (1, 2, 4):
        config = {**FORWARD.default_config({"B": 1, "T": 4096, "HQ": 8, "H": 2, "D": 128, "W": 4096}),
                  "SPLITS": splits}
        o, lse = swa_forward(q, k, v, 4096, 128 ** -0.5, None, config)
        assert_close(f"o splits={splits}", o, o_ref, FWD_TOL[torch.bfloat16])
        assert_close(f"lse splits={splits}", lse, lse_ref, 1e-3)
    lengths = torch.tensor([4096], device="cuda")
    step = kernelgen.sliding_window_attention_decode(q[:, -1:], k, v, lengths, 1000)
    ref = sliding_window_attention_decode_ref(q[:, -1], k, v, lengths, 1000)
    assert_close("decode", step[:, 0], ref, FWD_TOL[torch.bfloat16])


@pytest.mark.gpu
@pytest.mark.parametrize("template", [FORWARD, BACKWARD, DECODE], ids=lambda t: t.name)
def test_gpu_templates_default_on_workload(template):
    for shape in template.workload[:2]:
        inputs = template.make_inputs(shape, "bf16", "", "cuda", torch.Generator().manual_seed(0))
        outputs = template.allocate_outputs(inputs, shape, "bf16", "")
        template.launch(template.default_config(shape, None), inputs, outputs, shape, "")
        for name, ref in template.reference(inputs, shape, "").items():
            assert_close(f"{template.name} {name}", outputs[name], ref, template.tolerance("bf16", name))


def test_one_row_group_takes_no_slice_in_the_graph(device):
    """q, k, v reach the autograd function unsliced: a slice's backward would zero-fill and copy
    each gradient (measured 0.4 ms of a 2 ms fwd+bwd on the H100)."""
    q, k, v, _ = _inputs(device, torch.float32, batch=2, length=9, heads_q=2, heads=2, dim=32)
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    o = kernelgen.sliding_window_attention(*leaves, 4)
    parents = [type(fn).__name__ for fn, _ in o.grad_fn.next_functions if fn is not None]
    assert parents == ["AccumulateGrad"] * 3, parents
