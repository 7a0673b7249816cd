"""loglinear_attention / loglinear_attention_step on the inputs callers really pass.

Strided views, T = 0 / 1 / 2 and T crossing several Fenwick levels, B = 0, head sizes that are not
powers of two, level_scales with more levels than needed, fp32 gates / level scales with fp16
q/k/v, gates from exactly 0 to very negative, losses on o or on the final state, packed sequences
with length-0 and length-1 members continued from states, decode steps after a prefill at odd
positions, and wrong inputs (clear errors naming the argument). Forward and backward against the
float64 masked-sum reference (kernelgen/reference/loglinear_attention.py), with the config
dispatch picks unless a test forces small chunks. Non-contiguous inputs are views of leaf
tensors: gradients are checked on the leaves.
Tolerances (relative Frobenius error): fp32 1e-4; fp16 5e-3 forward, 1e-2 gradients.
"""
import numpy as np
import pytest
import torch

import kernelgen
from kernelgen.ops import loglinear_attention as llops
from kernelgen.ops.loglinear_attention import LogLinearState
from kernelgen.reference import loglinear_attention as ref
from reference_utils import rel_error

TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}
GRAD_TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2, torch.float64: 1e-4}
NAMES = ("q", "k", "v", "g", "level_scales", "initial_state")


def make(B=2, T=11, H=2, K=16, V=16, L=5, dtype=torch.float32, gate_dtype=torch.float32,
         scale_dtype=torch.float32, seed=0, device="cpu"):
    """q, k, v ~ N(0, 1); g = logsigmoid(N(2, 1)) (decays 0.5 .. 1); λ ~ U(0.5, 1.5)."""
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, K, generator=gen) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=gen)
    g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, generator=gen) + 2.0)
    lam = torch.rand(B, T, H, L, generator=gen) + 0.5
    return ([x.to(device=device, dtype=dtype) for x in (q, k, v)]
            + [g.to(device=device, dtype=gate_dtype), lam.to(device=device, dtype=scale_dtype)])


def force_chunk(monkeypatch, chunk):
    """Chunks of ``chunk`` positions and 16-wide tiles: more chunk levels on tiny T (interpreter)."""
    if torch.cuda.is_available():
        chunk = max(chunk, 16)       # tl.dot needs 16 rows on a GPU
    tiles = {"chunk": chunk, "scan_bk": 16, "scan_bv": 16, "out_bv": 16, "dqk_bk": 16, "dqk_bv": 16,
             "dv_bk": 16, "dv_bv": 16}
    original = llops.config_for
    monkeypatch.setattr(llops, "config_for", lambda template, *args: {**original(template, *args), **tiles})


def _close(name, out, expected, tol):
    """Relative error against ``expected``."""
    out, expected = out.detach().double().cpu(), expected.detach().double().cpu()
    assert out.shape == expected.shape, f"{name}: shape {tuple(out.shape)} != {tuple(expected.shape)}"
    if out.numel() == 0:
        return
    if float(expected.norm()) == 0.0:
        assert float(out.abs().max()) <= tol, f"{name}: expected zeros"
        return
    err = rel_error(out, expected)
    assert err <= tol, f"{name}: relative error {err:.3e} > {tol:.1e}"


def compare(build, leaves, initial_state=None, output_final_state=True, use_o=True, use_final=True,
            cu_seqlens=None, scale=None):
    """The op vs the float64 reference on build(*leaves) = (q, k, v, g, level_scales[, states]): o,
    the final state and every leaf's gradient under a random weighted loss on o and/or the final
    state. With a states leaf, ``initial_state`` gives the positions."""
    mine = [t.detach().clone().requires_grad_() for t in leaves]
    theirs = [t.detach().to(torch.float64).requires_grad_() for t in leaves]

    def call(fn, tensors):
        args = build(*tensors)
        state = (args[5], initial_state) if len(args) == 6 else initial_state
        return args, fn(*args[:5], scale=scale, initial_state=state, output_final_state=output_final_state,
                        cu_seqlens=cu_seqlens)

    args, (o, final) = call(kernelgen.loglinear_attention, mine)
    _, (o_ref, final_ref) = call(ref.loglinear_attention_reference, theirs)
    compute = args[0].dtype
    assert o.dtype == compute and o.shape == o_ref.shape
    _close("o", o, o_ref, TOL[compute])
    outs, refs = [o] if use_o else [], [o_ref] if use_o else []
    if output_final_state:
        states_ref, position_ref = final_ref
        assert final.states.dtype == torch.float32
        assert final.position.tolist() == position_ref.tolist()
        assert final.states.shape[2] <= states_ref.shape[2]
        assert not states_ref[:, :, final.states.shape[2]:].any()   # levels left out are empty
        states_ref = states_ref[:, :, :final.states.shape[2]]
        _close("final states", final.states, states_ref, TOL[compute])
        if use_final:
            outs.append(final.states)
            refs.append(states_ref)
    else:
        assert final is None

    gen = torch.Generator().manual_seed(11)
    weights = [torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in refs]
    loss = sum((t.double() * w.to(t.device)).sum() for t, w in zip(outs, weights))
    loss_ref = sum((t * w.to(t.device)).sum() for t, w in zip(refs, weights))
    if not torch.is_tensor(loss) or not loss.requires_grad:   # nothing reaches a leaf (T = 0, no state)
        return
    grads = torch.autograd.grad(loss, mine, allow_unused=True)
    # (the reference's call without tokens keeps no graph: its gradients are the zeros below)
    grads_ref = (torch.autograd.grad(loss_ref, theirs, allow_unused=True)
                 if torch.is_tensor(loss_ref) and loss_ref.requires_grad else [None] * len(theirs))
    grads_ref = [torch.zeros_like(t) if d is None else d for t, d in zip(theirs, grads_ref)]
    for i, (leaf, grad, grad_ref) in enumerate(zip(mine, grads, grads_ref)):
        grad = torch.zeros_like(leaf) if grad is None else grad
        assert grad.dtype == leaf.dtype, f"d{NAMES[i]}: gradient {grad.dtype}, input {leaf.dtype}"
        tol = max(GRAD_TOL[compute], GRAD_TOL[leaf.dtype])
        _close(f"d{NAMES[i]}", grad, grad_ref.to(leaf.dtype), tol)


def plain(*tensors):
    return tensors


# --------------------------------------------------------------------------------------------
# layouts
# --------------------------------------------------------------------------------------------
def test_strided_views(device):
    # q stored heads-first [B, H, T, K]; k every other feature of a wider tensor; v a slice of T
    B, T, H, K, V, L = 2, 11, 2, 16, 24, 5
    q, k, v, g, lam = make(B, T, H, K, V, L, device=device)
    leaves = [q.transpose(1, 2).contiguous(), torch.cat([k, k + 1], -1), torch.cat([v, v], 1), g, lam]
    compare(lambda q, k, v, g, lam: (q.transpose(1, 2), k[..., :K], v[:, T:], g, lam), leaves)


def test_expanded_gates_and_level_scales(device):
    # one λ per level shared by all tokens and heads, one gate per head: stride-0 views
    B, T, H, K, V, L = 2, 11, 2, 16, 16, 5
    q, k, v, _, _ = make(B, T, H, K, V, L, device=device)
    leaves = [q, k, v, -torch.rand(H, device=device) - 0.05, torch.rand(L, device=device) + 0.5]
    compare(lambda q, k, v, g, lam: (q, k, v, g.expand(B, T, H), lam.expand(B, T, H, L)), leaves)


# --------------------------------------------------------------------------------------------
# sizes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("B, T, L", [(2, 0, 1), (0, 5, 3), (2, 1, 1), (2, 2, 2), (1, 9, 12)],
                         ids=["T0", "B0", "T1", "T2", "extra-levels"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_lengths(device, B, T, L, dtype):
    compare(plain, make(B=B, T=T, L=L, dtype=dtype, device=device))


@pytest.mark.parametrize("K, V", [(24, 40), (3, 5), (40, 24)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_head_sizes_not_powers_of_two(device, K, V, dtype):
    compare(plain, make(B=1, T=19, H=2, K=K, V=V, L=6, dtype=dtype, device=device))


@pytest.mark.parametrize("chunk", [8, None], ids=["chunk8", "default"])
def test_many_fenwick_levels(device, monkeypatch, chunk):
    # T = 70 in chunks of 8: 9 chunks, chunk levels 1..4 and a ragged last chunk
    if chunk:
        force_chunk(monkeypatch, chunk)
    compare(plain, make(B=1, T=70, H=1, K=16, V=16, L=8, seed=3, device=device))


# --------------------------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, gate_dtype, scale_dtype", [
    (torch.float16, torch.float32, torch.float32),     # what a model's projections produce
    (torch.float16, torch.bfloat16, torch.float16),
    (torch.float32, torch.float16, torch.bfloat16),
    (torch.float16, torch.float64, torch.float64),     # float64 gates: rounded to fp32 for the kernels
    (torch.float32, torch.float32, torch.float64),
], ids=str)
def test_mixed_dtypes(device, dtype, gate_dtype, scale_dtype):
    # o, dq, dk, dv in q's dtype; dg in g's; dλ in level_scales'
    compare(plain, make(B=2, T=23, H=2, K=24, V=40, L=6, dtype=dtype, gate_dtype=gate_dtype,
                        scale_dtype=scale_dtype, device=device))


def test_numpy_scale(device):
    compare(plain, make(device=device), scale=np.float32(0.3))


# --------------------------------------------------------------------------------------------
# gates and losses
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gate", ["zero", "near-zero", "negative", "very-negative"])
def test_gate_extremes(device, gate):
    # g = 0: plain λ-weighted linear attention; -1e-6: barely decays; -8 and -60: only the
    # diagonal survives. dg = suffix sum of q·dq − k·dk, whose (t, t) terms cancel exactly; the
    # kernel leaves them out of both, so even at g = -60 (dg ~e^-60) dg is measured plainly.
    q, k, v, g, lam = make(B=1, T=19, L=6, device=device)
    base = {"zero": 0.0, "near-zero": -1e-6, "negative": -8.0, "very-negative": -60.0}[gate]
    g = torch.full_like(g, base) * (1.0 + 0.1 * torch.rand_like(g))
    compare(plain, [q, k, v, g, lam])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("output_final_state, use_o, use_final", [(False, True, False), (True, False, True),
                                                                  (True, True, True)],
                         ids=["o-only-no-final", "final-only", "both"])
def test_loss_on_o_or_final_state(device, dtype, output_final_state, use_o, use_final):
    compare(plain, make(B=2, T=13, V=24, L=5, dtype=dtype, device=device), output_final_state=output_final_state,
            use_o=use_o, use_final=use_final)


# --------------------------------------------------------------------------------------------
# states and packed sequences
# --------------------------------------------------------------------------------------------
def prefix_state(positions, H=2, K=16, V=16, L=7, seed=20):
    """Valid fp32 states after random prefixes of the given lengths (float64 reference), padded to
    one level count, and their positions."""
    states = []
    for i, length in enumerate(positions):
        _, (found, _) = ref.loglinear_attention_reference(*make(B=1, T=length, H=H, K=K, V=V, L=L, seed=seed + i),
                                                          output_final_state=True)
        states.append(found)
    levels = max(s.shape[2] for s in states)
    states = [torch.nn.functional.pad(s, (0, 0, 0, 0, 0, levels - s.shape[2])) for s in states]
    return torch.cat(states).float(), torch.tensor(positions, dtype=torch.int64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_varlen_empty_and_one_token_sequences_from_states(device, monkeypatch, dtype):
    # six packed sequences (lengths 0, 1, 0, 5, 1, 13) continuing at positions 3, 0, 7, 13, 1, 5
    force_chunk(monkeypatch, 8)
    cu = torch.tensor([0, 0, 1, 1, 6, 7, 20], device=device)
    states, position = prefix_state([3, 0, 7, 13, 1, 5])
    leaves = make(B=1, T=20, L=7, dtype=dtype, device=device) + [states.to(device)]
    compare(plain, leaves, initial_state=position.to(device), cu_seqlens=cu)


def test_varlen_int32_offsets_and_no_state(device):
    cu = torch.tensor([0, 1, 2, 2, 9], dtype=torch.int32, device=device)
    compare(plain, make(B=1, T=9, L=5, device=device), cu_seqlens=cu)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_continue_at_odd_positions_with_more_levels(device, dtype):
    # rows at positions 5 and 13, T = 1 and 6 more tokens, λ with 9 levels (3 unused)
    states, position = prefix_state([5, 13], V=24)
    for steps in (1, 6):
        leaves = make(B=2, T=steps, V=24, L=9, dtype=dtype, seed=steps, device=device) + [states.to(device)]
        compare(plain, leaves, initial_state=position.to(device))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_decode_after_prefill_at_odd_positions(device, dtype):
    # prefill 1, 3 or 7 tokens (K/V 24/40), then decode token by token across powers of two
    for prefill in (1, 3, 7):
        T = prefill + 6
        q, k, v, g, lam = make(B=2, T=T, K=24, V=40, L=5, dtype=dtype, seed=prefill, device=device)
        o_ref, (states_ref, _) = ref.loglinear_attention_reference(q, k, v, g, lam, output_final_state=True)
        _, state = kernelgen.loglinear_attention(*(x[:, :prefill] for x in (q, k, v, g, lam)), output_final_state=True)
        outs = []
        for t in range(prefill, T):
            o, state = kernelgen.loglinear_attention_step(q[:, t], k[:, t], v[:, t], g[:, t], lam[:, t], state)
            assert o.dtype == dtype
            outs.append(o)
        _close(f"decoded o after {prefill}", torch.stack(outs, 1), o_ref[:, prefill:], TOL[dtype])
        assert state.position.tolist() == [T, T]
        _close(f"states after {prefill}", state.states[:, :, :states_ref.shape[2]], states_ref, TOL[dtype])


def test_decode_step_mixed_dtypes_and_views(device):
    # a heads-last q view, fp16 gate and bf16 λ with fp32 q/k/v, [N, 1, H, *] token layout
    q, k, v, g, lam = make(B=2, T=6, L=4, device=device)
    g, lam = g.half(), lam.bfloat16()
    _, state = kernelgen.loglinear_attention(*(x[:, :5] for x in (q, k, v, g, lam)), output_final_state=True)
    q_view = q[:, 5:].transpose(2, 3).contiguous().transpose(2, 3)
    assert not q_view.is_contiguous()
    o, state = kernelgen.loglinear_attention_step(q_view, k[:, 5:], v[:, 5:], g[:, 5:], lam[:, 5:], state)
    o_ref, _ = ref.loglinear_attention_reference(q, k, v, g, lam)
    assert o.shape == (2, 1, 2, 16)
    _close("o", o, o_ref[:, 5:], TOL[torch.float32])
    # float64 gate and level scales are taken too (rounded to fp32)
    _, state = kernelgen.loglinear_attention(*(x[:, :5] for x in (q, k, v, g, lam)), output_final_state=True)
    o64, _ = kernelgen.loglinear_attention_step(q[:, 5:], k[:, 5:], v[:, 5:], g[:, 5:].double(), lam[:, 5:].double(),
                                                state)
    _close("o (float64 gates)", o64, o_ref[:, 5:], TOL[torch.float32])


def test_decode_step_refuses_grad_and_tells_autograd_of_its_writes(device):
    """The step has no backward: with a leaf that requires grad it raises (no silently detached o).
    Its in-place write of the states bumps their version, so a prefill graph that saved them as
    its initial state refuses a backward afterwards instead of using the changed values."""
    q, k, v, g, lam = make(B=1, T=6, L=4, device=device)
    with torch.no_grad():
        _, state = kernelgen.loglinear_attention(*(x[:, :3] for x in (q, k, v, g, lam)), output_final_state=True)
    leaf = q[:, 3].clone().requires_grad_()
    with pytest.raises(NotImplementedError, match="no backward"):
        kernelgen.loglinear_attention_step(leaf, k[:, 3], v[:, 3], g[:, 3], lam[:, 3], state)
    q4 = q[:, 3:5].clone().requires_grad_()
    o, _ = kernelgen.loglinear_attention(q4, k[:, 3:5], v[:, 3:5], g[:, 3:5], lam[:, 3:5], initial_state=state)
    before = state.states._version
    with torch.no_grad():
        kernelgen.loglinear_attention_step(q[:, 3], k[:, 3], v[:, 3], g[:, 3], lam[:, 3], state)
    assert state.states._version > before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        o.sum().backward()


def test_decode_step_refuses_a_negative_position(device):
    q, k, v, g, lam = make(B=2, T=1, L=4, device=device)
    states = torch.zeros(2, 2, 3, 16, 16, device=device)
    with pytest.raises(ValueError, match="position must be >= 0"):
        kernelgen.loglinear_attention_step(q[:, 0], k[:, 0], v[:, 0], g[:, 0], lam[:, 0],
                                           (states, torch.tensor([2, -3], device=device)))


# --------------------------------------------------------------------------------------------
# wrong inputs
# --------------------------------------------------------------------------------------------
def _bad_calls(device):
    q, k, v, g, lam = make(B=1, T=9, L=5, device=device)
    att, step = kernelgen.loglinear_attention, kernelgen.loglinear_attention_step
    cu = torch.tensor([0, 4, 9], device=device)
    zeros = torch.zeros(1, 2, 5, 16, 16, device=device)
    pos = torch.zeros(1, dtype=torch.int64, device=device)
    state = LogLinearState.zeros(1, 2, 5, 16, 16, device=device)
    token = [x[:, 0] for x in (q, k, v, g, lam)]
    return [
        ("q 3-D", lambda: att(q[0], k, v, g, lam), ValueError, r"q must be \[B, T, H, K\]; got \[9, 2, 16\]"),
        ("k other T", lambda: att(q, k[:, :3], v, g, lam), ValueError, r"k must be \[B=1, T=9, H=2, K=16\]"),
        ("k other K", lambda: att(q, k[..., :8], v, g, lam), ValueError, "k must be"),
        ("v other H", lambda: att(q, k, v[:, :, :1], g, lam), ValueError, r"v must be \[B=1, T=9, H=2, V\]"),
        ("g 4-D", lambda: att(q, k, v, g[..., None], lam), ValueError, r"g must be \[B=1, T=9, H=2\]"),
        ("level_scales other H", lambda: att(q, k, v, g, lam[:, :, :1]), ValueError, "level_scales must be"),
        ("level_scales too few", lambda: att(q, k, v, g, lam[..., :4]), ValueError,
         "level_scales must have L >= .* = 5 levels .* got L=4"),
        ("level_scales none", lambda: att(q, k, v, g, lam[..., :0]), ValueError, "level_scales must have L >= 1"),
        ("q int", lambda: att(q.int(), k, v, g, lam), TypeError, "q must have dtype in .*; got int32"),
        ("k int", lambda: att(q, k.long(), v, g, lam), TypeError, "k must have dtype in .*; got int64"),
        ("g int", lambda: att(q, k, v, g.int(), lam), TypeError, "g must have dtype in .*; got int32"),
        ("level_scales int", lambda: att(q, k, v, g, lam.int()), TypeError, "level_scales must have dtype"),
        ("q float64", lambda: att(q.double(), k, v, g, lam), TypeError, "q must have dtype in .*; got float64"),
        ("v other float", lambda: att(q, k, v.half(), g, lam), TypeError, "v must have the dtype of q"),
        ("K too large", lambda: att(*make(B=1, T=3, K=300, device=device)[:2], *make(B=1, T=3, device=device)[2:]),
         ValueError, r"head size K must be in \[1, 256\]; got 300"),
        ("k on meta", lambda: att(q, k.to("meta"), v, g, lam), ValueError, "k is on meta but q is on"),
        ("level_scales on meta", lambda: att(q, k, v, g, lam.to("meta")), ValueError, "level_scales is on meta"),
        ("all on meta", lambda: att(*(x.to("meta") for x in (q, k, v, g, lam))), ValueError,
         "q is on meta; kernelgen kernels run on CUDA"),
        ("scale str", lambda: att(q, k, v, g, lam, scale="0.3"), TypeError, "scale must be a float"),
        ("scale nan", lambda: att(q, k, v, g, lam, scale=float("nan")), ValueError, "scale must be finite"),
        ("output_final_state int", lambda: att(q, k, v, g, lam, output_final_state=1), TypeError,
         "output_final_state must be a bool"),
        ("save_blocks str", lambda: att(q, k, v, g, lam, save_blocks="yes"), TypeError, "save_blocks must be a bool"),
        ("cu_seqlens with B=2", lambda: att(*(x.expand(2, *x.shape[1:]) for x in (q, k, v, g, lam)), cu_seqlens=cu),
         ValueError, "cu_seqlens .* B = 1 .* got B=2"),
        ("cu_seqlens from 1", lambda: att(q, k, v, g, lam, cu_seqlens=torch.tensor([1, 9], device=device)),
         ValueError, "cu_seqlens must rise from 0 to T=9"),
        ("cu_seqlens ends early", lambda: att(q, k, v, g, lam, cu_seqlens=torch.tensor([0, 8], device=device)),
         ValueError, "cu_seqlens must rise from 0 to T=9"),
        ("cu_seqlens decreasing", lambda: att(q, k, v, g, lam, cu_seqlens=torch.tensor([0, 5, 3, 9], device=device)),
         ValueError, "cu_seqlens must rise"),
        ("cu_seqlens float", lambda: att(q, k, v, g, lam, cu_seqlens=torch.tensor([0.0, 9.0], device=device)),
         TypeError, "cu_seqlens must be int32 or int64; got float32"),
        ("cu_seqlens list", lambda: att(q, k, v, g, lam, cu_seqlens=[0, 9]), TypeError,
         "cu_seqlens must be a torch.Tensor .* got list"),
        ("cu_seqlens 2-D", lambda: att(q, k, v, g, lam, cu_seqlens=cu[None]), ValueError,
         r"cu_seqlens must be \[N\+1\]"),
        ("cu_seqlens one offset", lambda: att(q, k, v, g, lam, cu_seqlens=cu[:1]), ValueError, "N >= 1"),
        ("cu_seqlens on meta", lambda: att(q, k, v, g, lam, cu_seqlens=cu.to("meta")), ValueError,
         "cu_seqlens is on meta but q is on"),
        ("initial_state tensor", lambda: att(q, k, v, g, lam, initial_state=zeros), TypeError,
         "initial_state must be a LogLinearState or a .states, position. pair"),
        ("initial_state other V", lambda: att(q, k, v, g, lam, initial_state=(zeros[..., :8], pos)), ValueError,
         r"initial_state.states must be \[N=1, H=2, Ls, K=16, V=16\]"),
        ("initial_state fp16", lambda: att(q, k, v, g, lam, initial_state=(zeros.half(), pos)), TypeError,
         "initial_state.states must be float32"),
        ("initial_state float position", lambda: att(q, k, v, g, lam, initial_state=(zeros, pos.float())), TypeError,
         "initial_state.position must be int64"),
        ("initial_state on meta", lambda: att(q, k, v, g, lam, initial_state=(zeros.to("meta"), pos)), ValueError,
         "initial_state is on meta"),
        ("initial_state negative position", lambda: att(q, k, v, g, lam, initial_state=(zeros, pos - 1)), ValueError,
         "initial_state.position must be >= 0"),
        ("initial_state beyond the levels", lambda: att(q, k, v, g, lam, initial_state=(zeros, pos + 100)),
         ValueError, "level_scales must have L >= .* positions up to 108"),
        ("step T=2", lambda: step(*(x[:, :2] for x in (q, k, v, g, lam)), state), ValueError,
         r"q must be \[N, H, K\]"),
        ("step k other K", lambda: step(token[0], token[1][..., :8], *token[2:], state), ValueError, "k must be"),
        ("step q int", lambda: step(token[0].int(), *token[1:], state), TypeError, "q must have dtype"),
        ("step no state", lambda: step(*token, None), TypeError, "state must be a LogLinearState"),
        ("step state other N", lambda: step(*token, LogLinearState.zeros(2, 2, 5, 16, 16, device=device)), ValueError,
         r"state.states must be \[N=1"),
        ("step state on meta", lambda: step(*token, LogLinearState.zeros(1, 2, 5, 16, 16, device="meta")), ValueError,
         "state is on meta"),
        ("step int32 position", lambda: step(*token, (zeros, pos.int())), TypeError, "state.position must be int64"),
        ("step level_scales too few", lambda: step(*token[:4], token[4][..., :1],
                                                   LogLinearState(zeros, pos + 8, 8)), ValueError,
         "level_scales must have L >= .* = 5 levels"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_calls("cpu"))), ids=[c[0] for c in _bad_calls("cpu")])
def test_bad_inputs(device, case):
    _, call, error, message = _bad_calls(device)[case]
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("sizes", [(2, 0, 2), (0, 5, 2), (2, 5, 0)])   # (B, T, H)
def test_calls_without_tokens_keep_the_graph(device, sizes):
    """No token: o is empty but still part of the graph, so a loss over it differentiates to empty
    gradients (before: o had no grad_fn and backward raised), as the other ops give."""
    B, T, H = sizes
    leaves = [torch.randn(B, T, H, 16, device=device).requires_grad_() for _ in range(3)]
    g = (-torch.rand(B, T, H, device=device)).requires_grad_()
    lam = torch.rand(B, T, H, 4, device=device).requires_grad_()
    o, _ = kernelgen.loglinear_attention(*leaves, g, lam)
    grads = torch.autograd.grad(o.sum(), [*leaves, g, lam])
    assert all(grad.shape == leaf.shape and not grad.abs().sum() for grad, leaf in zip(grads, [*leaves, g, lam]))


def test_no_tokens_pass_the_state_on_without_level_zero(device):
    """T = 0 with a state: the final state is the initial one, level 0 (always zero) left out as a
    call with tokens leaves it (before: copied, and its gradient 1 instead of 0)."""
    states = torch.randn(2, 2, 4, 16, 16, device=device).requires_grad_()
    empty = lambda *s: torch.zeros(*s, device=device)
    _, final = kernelgen.loglinear_attention(empty(2, 0, 2, 16), empty(2, 0, 2, 16), empty(2, 0, 2, 16),
                                             empty(2, 0, 2), torch.ones(2, 0, 2, 4, device=device),
                                             initial_state=(states, torch.tensor([5, 2], device=device)),
                                             output_final_state=True)
    assert not final.states[:, :, 0].abs().sum()
    assert torch.equal(final.states[:, :, 1:], states[:, :, 1:].detach())
    (grad,) = torch.autograd.grad(final.states.sum(), states)
    assert not grad[:, :, 0].abs().sum() and torch.equal(grad[:, :, 1:], torch.ones_like(grad[:, :, 1:]))


def test_positions_past_int32_are_refused(device):
    """The chunked kernels index positions in 32 bits: a call that reaches position 2^31 is refused
    with a pointer to the decode step (before: wrong outputs); one ending at 2^31 - 1 runs."""
    T, K = 6, 16
    q, k, v = (torch.randn(1, T, 1, K, device=device) for _ in range(3))
    g = torch.full((1, T, 1), -0.1, device=device)
    for start, refused in ((2 ** 31 - T, False), (2 ** 31 - T + 1, True)):
        lam = torch.ones(1, T, 1, (start + T - 1).bit_length() + 1, device=device)
        state = (torch.zeros(1, 1, start.bit_length() + 1, K, K, device=device), torch.tensor([start], device=device))
        if refused:
            with pytest.raises(ValueError, match="positions up to 2\\^31 - 1"):
                kernelgen.loglinear_attention(q, k, v, g, lam, initial_state=state)
        else:
            o, _ = kernelgen.loglinear_attention(q, k, v, g, lam, initial_state=state)
            o_ref, _ = ref.loglinear_attention_reference(q.double(), k.double(), v.double(), g.double(), lam.double(),
                                                         initial_state=(state[0].double(), state[1]))
            assert rel_error(o, o_ref) < 1e-5
