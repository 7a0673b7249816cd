"""linear_attention / linear_attention_step on the inputs callers really pass.

Strided views, ragged / tiny / empty lengths, head sizes that are not powers of two, mixed dtypes,
packed sequences with length-0 and length-1 members, states in any float dtype, and wrong inputs
(clear errors naming the argument). Forward and backward against the float64 recurrence of
kernelgen/reference/linear_attention.py, with the config dispatch picks (what a caller gets).
Non-contiguous inputs are views of leaf tensors: gradients are checked on the leaves.
Tolerances (relative Frobenius error): fp32 2e-5; fp16 5e-3 forward, 1e-2 gradients.
"""
import numpy as np
import pytest
import torch

import kernelgen
from kernelgen.ops import linear_attention as op_module
from kernelgen.reference import linear_attention as ref
from reference_utils import expect_bad_call, rel_error

TOL = {torch.float32: 2e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}
GRAD_TOL = {torch.float64: 2e-5, torch.float32: 2e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def randn(*shape, seed=0, dtype=torch.float32, device="cpu", scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen) * scale).to(device=device, dtype=dtype)


def log_decay(*shape, seed=5, device="cpu"):
    """Per-token log decay in (-inf, 0): logsigmoid of a positive-biased normal."""
    return torch.nn.functional.logsigmoid(randn(*shape, seed=seed) + 2.0).to(device)


def flat(state):
    return [] if state is None else list(state) if isinstance(state, (tuple, list)) else [state]


def _close(name, out, expected, tol):
    out, expected = out.detach(), expected.detach()
    assert out.shape == expected.shape, f"{name}: shape {tuple(out.shape)} != {tuple(expected.shape)}"
    if float(expected.norm()) == 0.0:   # e.g. dg without a state at T = 1: exactly zero
        assert out.numel() == 0 or float(out.detach().abs().max()) <= tol, f"{name}: expected zeros"
    else:
        err = rel_error(out, expected)
        assert err <= tol, f"{name}: relative error {err:.3e} > {tol:.1e}"


def compare(build, leaves, want_final=True, **op_kw):
    """The op vs the float64 recurrence on build(*leaves): o, the final state and the gradient of
    every leaf. ``build`` maps the leaf tensors to the op's tensor arguments (q, k, v, g, g_gamma,
    initial_state), e.g. through transposes or slices; ``op_kw`` holds the other keywords."""
    mine = [t.detach().clone().requires_grad_() for t in leaves]
    theirs = [t.detach().to(torch.float64).requires_grad_() for t in leaves]
    args = build(*mine)
    o, final = kernelgen.linear_attention(**args, output_final_state=want_final, **op_kw)
    o_ref, final_ref = ref.linear_attention_recurrent(**build(*theirs), output_final_state=True, **op_kw)
    compute = args["q"].dtype
    assert o.dtype == args["v"].dtype and o.shape == o_ref.shape
    _close("o", o, o_ref, TOL[compute])
    if not want_final:
        assert final is None
        final_ref = None
    for name, mine_f, ref_f in zip(("S", "z"), flat(final), flat(final_ref)):
        assert mine_f.dtype == torch.float32
        _close(f"final {name}", mine_f, ref_f, TOL[compute])

    gen = torch.Generator().manual_seed(11)
    weights = [torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in [o_ref, *flat(final_ref)]]
    loss = sum((t.double() * w.to(t.device)).sum() for t, w in zip([o, *flat(final)], weights))
    loss_ref = sum((t * w.to(t.device)).sum() for t, w in zip([o_ref, *flat(final_ref)], weights))
    if not loss.requires_grad:   # nothing to differentiate (T = 0 without a state)
        return
    grads = torch.autograd.grad(loss, mine, allow_unused=True)
    grads_ref = torch.autograd.grad(loss_ref, theirs, allow_unused=True)
    for i, (leaf, grad, grad_ref) in enumerate(zip(mine, grads, grads_ref)):
        if grad_ref is None:
            grad_ref = torch.zeros_like(theirs[i])
        assert grad is not None, f"leaf {i} got no gradient"
        assert grad.dtype == leaf.dtype, f"leaf {i}: gradient {grad.dtype}, input {leaf.dtype}"
        _close(f"d(leaf {i})", grad, grad_ref, max(GRAD_TOL[compute], GRAD_TOL[leaf.dtype]))


def qkv(B, T, H, K, V, dtype=torch.float32, device="cpu", seed=0):
    return [randn(B, T, H, K, seed=seed, dtype=dtype, device=device),
            randn(B, T, H, K, seed=seed + 1, dtype=dtype, device=device),
            randn(B, T, H, V, seed=seed + 2, dtype=dtype, device=device)]


# --- layouts ------------------------------------------------------------------------------------

def test_heads_first_inputs_transposed(device):
    """[B, H, T, K] tensors passed as .transpose(1, 2), g as [B, H, T].transpose(1, 2)."""
    B, T, H, K, V = 2, 21, 2, 16, 24
    leaves = [randn(B, H, T, K, seed=1), randn(B, H, T, K, seed=2), randn(B, H, T, V, seed=3),
              log_decay(B, H, T), randn(B, H, V, K, seed=4, scale=0.2)]
    leaves = [t.to(device) for t in leaves]

    def build(q, k, v, g, s0):
        return dict(q=q.transpose(1, 2), k=k.transpose(1, 2), v=v.transpose(1, 2), g=g.transpose(1, 2),
                    initial_state=s0.transpose(-1, -2))

    compare(build, leaves)


def test_strided_slices_and_expanded_inputs(device):
    """Every other token / channel of a larger tensor, a batch-broadcast q and a head-broadcast k."""
    B, T, H, K, V = 2, 19, 2, 16, 16
    leaves = [randn(1, T, H, K, seed=1), randn(B, T, 1, K, seed=2), randn(B, 2 * T, H, 2 * V + 3, seed=3),
              log_decay(B, T, 2 * H)]
    leaves = [t.to(device) for t in leaves]

    def build(q, k, v, g):
        return dict(q=q.expand(B, T, H, K), k=k.expand(B, T, H, K), v=v[:, ::2, :, 1:2 * V + 1:2], g=g[..., ::2])

    compare(build, leaves, feature_map="elu1", normalize=True)


# --- lengths --------------------------------------------------------------------------------------

@pytest.mark.parametrize("T", [1, 2, 13, 37, 70])
@pytest.mark.parametrize("decay", ["g", "g_gamma"])
def test_ragged_lengths_with_state(T, decay, device):
    B, H, K, V = 2, 2, 16, 16
    q, k, v = qkv(B, T, H, K, V, device=device)
    leaves = [q, k, v, log_decay(B, T, H, device=device) if decay == "g" else
              -torch.tensor([0.05, 0.3], device=device), randn(B, H, K, V, seed=9, device=device, scale=0.2)]

    def build(q, k, v, decay_value, s0):
        return dict(q=q, k=k, v=v, initial_state=s0, **{decay: decay_value})

    compare(build, leaves)


@pytest.mark.parametrize("normalize", [False, True])
def test_empty_sequence_returns_state(normalize, device):
    """T = 0: empty o, the initial state back as a copy, gradients flow through to the state."""
    B, H, K, V = 2, 2, 16, 16
    q, k, v = qkv(B, 0, H, K, V, device=device)
    S0 = randn(B, H, K, V, seed=3, device=device).requires_grad_()
    z0 = (randn(B, H, K, seed=4, device=device).abs() + 0.5).requires_grad_()
    state = (S0, z0) if normalize else S0
    leaves = [x.requires_grad_() for x in (q, k, v)]
    o, final = kernelgen.linear_attention(*leaves, g=log_decay(B, 0, H, device=device), normalize=normalize,
                                          initial_state=state, output_final_state=True)
    assert o.shape == (B, 0, H, V) and o.dtype == v.dtype
    for got, given in zip(flat(final), flat(state)):
        assert torch.equal(got, given) and got.data_ptr() != given.data_ptr()
    weights = [torch.randn_like(f) for f in flat(final)]
    grads = torch.autograd.grad(sum((f * w).sum() for f, w in zip(flat(final), weights)) + o.sum(),
                                [*leaves, *flat(state)])
    assert all(grad.shape == leaf.shape for grad, leaf in zip(grads[:3], leaves))
    for grad, w in zip(grads[3:], weights):
        assert torch.equal(grad, w)
    # without a state: zeros, and no final state unless asked for
    o, final = kernelgen.linear_attention(q, k, v, normalize=normalize, output_final_state=True)
    assert all(float(f.detach().abs().max()) == 0.0 for f in flat(final))
    assert kernelgen.linear_attention(q, k, v)[1] is None


def test_empty_batch_and_heads(device):
    for B, H in ((0, 2), (2, 0)):
        q, k, v = qkv(B, 5, H, 16, 32, device=device)
        o, S = kernelgen.linear_attention(q, k, v, output_final_state=True)
        assert o.shape == v.shape and S.shape == (B, H, 16, 32)
        with torch.no_grad():
            o, S = kernelgen.linear_attention_step(q[:, 0], k[:, 0], v[:, 0], S)
        assert o.shape == (B, H, 32) and S.shape == (B, H, 16, 32)


# --- head sizes, feature maps, dtypes, scale ----------------------------------------------------------

@pytest.mark.parametrize("feature,normalize", [(None, False), ("elu1", True), ("relu", False), ("taylor2", True)])
def test_head_dims_not_powers_of_two(feature, normalize, device):
    B, T, H, K, V = 1, 23, 2, 24, 40
    q, k, v = qkv(B, T, H, K, V, device=device)
    KF = ref.feature_size(feature, K)
    S0 = randn(B, H, KF, V, seed=7, device=device, scale=0.1)
    z0 = randn(B, H, KF, seed=8, device=device).abs() + 0.5

    def build(q, k, v, g, S0, z0):
        return dict(q=q, k=k, v=v, g=g, initial_state=(S0, z0) if normalize else S0 + 0 * z0.sum())

    compare(build, [q, k, v, log_decay(B, T, H, device=device), S0, z0], feature_map=feature, normalize=normalize)


@pytest.mark.parametrize("qkv_dtype,decay,decay_dtype", [
    (torch.float16, "g", torch.float32),          # fp32 gates with half inputs (the usual mix)
    (torch.float16, "g_gamma", torch.float32),
    (torch.float32, "g", torch.float16),
    (torch.float32, "g_gamma", torch.bfloat16),
    (torch.float32, "g", torch.float64),          # float64 decays are rounded to fp32
])
def test_mixed_dtypes(qkv_dtype, decay, decay_dtype, device):
    B, T, H, K, V = 1, 29, 2, 16, 32
    q, k, v = qkv(B, T, H, K, V, dtype=qkv_dtype, device=device)
    gate = (log_decay(B, T, H) if decay == "g" else -torch.tensor([0.02, 0.2])).to(device, decay_dtype)

    def build(q, k, v, gate):
        return dict(q=q, k=k, v=v, **{decay: gate})

    compare(build, [q, k, v, gate])


@pytest.mark.parametrize("scale,feature", [(0.37, "relu"), (1, "elu1"), (np.float32(0.25), None), (-0.5, None)])
def test_explicit_scale(scale, feature, device):
    q, k, v = qkv(2, 17, 2, 16, 16, device=device)
    g_gamma = -torch.tensor([0.1, 0.4], device=device)
    compare(lambda q, k, v, g_gamma: dict(q=q, k=k, v=v, g_gamma=g_gamma), [q, k, v, g_gamma],
            scale=scale, feature_map=feature)


def test_taylor2_explicit_scale(device):
    q, k, v = qkv(1, 15, 2, 16, 16, device=device)
    compare(lambda q, k, v: dict(q=q, k=k, v=v), [q, k, v], scale=0.1, feature_map="taylor2", normalize=True)


@pytest.mark.parametrize("T,bounds", [(1, None), (2, None), (37, None), (30, [0, 1, 1, 30])])
def test_fp16_ragged_and_packed(T, bounds, device):
    B = 1 if bounds else 2
    q, k, v = qkv(B, T, 2, 16, 24, dtype=torch.float16, device=device)
    cu = None if bounds is None else torch.tensor(bounds, device=device)
    N = B if bounds is None else len(bounds) - 1
    leaves = [q, k, v, log_decay(B, T, 2, device=device), randn(N, 2, 16, 24, seed=6, device=device, scale=0.2)]
    compare(lambda q, k, v, g, s0: dict(q=q, k=k, v=v, g=g, initial_state=s0), leaves, cu_seqlens=cu)


# --- states ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("state_dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("want_final", [True, False])
def test_initial_state_dtypes(state_dtype, want_final, device):
    B, T, H, K, V = 2, 18, 2, 16, 16
    q, k, v = qkv(B, T, H, K, V, device=device)
    S0 = randn(B, H, K, V, seed=4, device=device, dtype=state_dtype, scale=0.3)
    z0 = (randn(B, H, K, seed=5, device=device).abs() + 0.5).to(state_dtype)

    def build(q, k, v, g, S0, z0):
        return dict(q=q, k=k, v=v, g=g, initial_state=(S0, z0))

    compare(build, [q, k, v, log_decay(B, T, H, device=device), S0, z0], want_final=want_final,
            feature_map="elu1", normalize=True)


# --- packed sequences -----------------------------------------------------------------------------

@pytest.mark.parametrize("bounds", [[0, 1, 1, 12, 30], [0, 0, 1, 30], [0, 29, 30, 30]])
@pytest.mark.parametrize("cu_dtype", [torch.int32, torch.int64])
def test_varlen_with_length_0_and_1(bounds, cu_dtype, device):
    H, K, V = 2, 16, 24
    T, N = bounds[-1], len(bounds) - 1
    cu = torch.tensor(bounds, dtype=cu_dtype, device=device)
    q, k, v = qkv(1, T, H, K, V, device=device)
    leaves = [q, k, v, log_decay(1, T, H, device=device), randn(N, H, K, V, seed=6, device=device, scale=0.2)]

    def build(q, k, v, g, s0):
        return dict(q=q, k=k, v=v, g=g, initial_state=s0)

    compare(build, leaves, cu_seqlens=cu)


def test_segmented_config_with_tiny_sequences(device, monkeypatch):
    """A config that cuts sequences into segments (pass + scan + output) on packed sequences of
    length 0, 1 and 2 among longer ones, odd head sizes and a state."""
    config = {"chunk": 16, "block_v": 16, "num_warps": 4, "num_stages": 1, "split_len": 16}
    monkeypatch.setattr(op_module, "config_for", lambda *args, **kwargs: dict(config))
    bounds = [0, 1, 1, 3, 40, 41]
    H, K, V = 2, 24, 40
    cu = torch.tensor(bounds, device=device)
    q, k, v = qkv(1, bounds[-1], H, K, V, device=device)
    leaves = [q, k, v, -torch.tensor([0.05, 0.2], device=device),
              randn(len(bounds) - 1, H, K, V, seed=6, device=device, scale=0.2)]

    def build(q, k, v, g_gamma, s0):
        return dict(q=q, k=k, v=v, g_gamma=g_gamma, initial_state=s0)

    compare(build, leaves, cu_seqlens=cu)


@pytest.mark.parametrize("packed", [False, True])
def test_grid_limit_groups_sequences(packed, device, monkeypatch):
    """More (sequence, head) pairs than the grid's second axis holds: the op runs groups of whole
    sequences and concatenates them, with the same result (limit lowered to exercise it)."""
    monkeypatch.setattr(op_module, "MAX_GRID_Y", 5)   # H = 2: groups of 2 sequences
    H, K, V = 2, 16, 16
    if packed:
        bounds = [0, 3, 3, 10, 11, 20, 26]
        B, T, cu = 1, bounds[-1], torch.tensor(bounds, device=device)
    else:
        B, T, cu = 5, 9, None
    N = B if cu is None else len(bounds) - 1
    q, k, v = qkv(B, T, H, K, V, device=device)
    leaves = [q, k, v, log_decay(B, T, H, device=device), randn(N, H, K, V, seed=6, device=device, scale=0.2),
              randn(N, H, K, seed=7, device=device).abs() + 0.5]

    def build(q, k, v, g, S0, z0):
        return dict(q=q, k=k, v=v, g=g, initial_state=(S0, z0))

    compare(build, leaves, cu_seqlens=cu, feature_map="elu1", normalize=True)


# --- decode step ----------------------------------------------------------------------------------

def _step_vs_reference(q, k, v, state, tol, **kw):
    with torch.no_grad():
        o, new = kernelgen.linear_attention_step(q, k, v, state, **kw)
    o_ref, new_ref = ref.linear_attention_step(q, k, v, state, kw.get("g"), kw.get("g_gamma"), kw.get("scale"),
                                               kw.get("feature_map"), kw.get("normalize", False))
    assert o.dtype == v.dtype
    _close("o", o, o_ref, tol)
    for got, want in zip(flat(new), flat(new_ref)):
        assert got.dtype == torch.float32 and got.is_contiguous()
        _close("state", got, want, 2e-5)


def test_step_strided_inputs_and_states(device):
    B, H, K, V = 3, 2, 24, 40
    q = randn(B, K, H, seed=1, device=device).transpose(1, 2)
    k = randn(1, H, K, seed=2, device=device).expand(B, H, K)
    v = randn(B, H, 2 * V, seed=3, device=device)[..., ::2]
    g = log_decay(H, B, device=device).t()
    S = randn(B, H, V, K, seed=4, device=device, scale=0.2).transpose(-1, -2)
    before = S.clone()
    _step_vs_reference(q, k, v, S, 2e-5, g=g, scale=0.3)
    assert torch.equal(S, before)


@pytest.mark.parametrize("qkv_dtype,state_dtype,decay_dtype", [
    (torch.float16, torch.float32, torch.float32), (torch.float32, torch.float16, torch.float16),
    (torch.float32, torch.bfloat16, torch.float64)])
def test_step_mixed_dtypes(qkv_dtype, state_dtype, decay_dtype, device):
    B, H, K, V = 2, 2, 16, 32
    q, k, v = (x[:, 0] for x in qkv(B, 1, H, K, V, dtype=qkv_dtype, device=device))
    S = randn(B, H, K, V, seed=4, device=device, scale=0.2).to(state_dtype)
    z = (randn(B, H, K, seed=5, device=device).abs() + 0.5).to(state_dtype)
    g_gamma = -torch.tensor([0.1, 0.5], device=device, dtype=decay_dtype)
    _step_vs_reference(q, k, v, (S, z), TOL[qkv_dtype], g_gamma=g_gamma, feature_map="elu1", normalize=True)


def test_step_equals_full_op_on_packed_sequences(device):
    """The state a packed call returns feeds the step for every sequence, the empty one included."""
    bounds = [0, 5, 5, 6, 17]
    H, K, V = 2, 16, 24
    q, k, v = qkv(1, 18, H, K, V, device=device)
    g = log_decay(1, 18, H, device=device)
    lengths = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    _, state = kernelgen.linear_attention(q[:, :17], k[:, :17], v[:, :17], g=g[:, :17], output_final_state=True,
                                          cu_seqlens=torch.tensor(bounds, device=device))
    for n, length in enumerate(lengths):
        seq = slice(bounds[n], bounds[n + 1])
        tok = torch.cat([q[0, seq], q[0, 17:]])[None], torch.cat([k[0, seq], k[0, 17:]])[None]
        val, gate = torch.cat([v[0, seq], v[0, 17:]])[None], torch.cat([g[0, seq], g[0, 17:]])[None]
        o_all, s_all = kernelgen.linear_attention(*tok, val, g=gate, output_final_state=True)
        with torch.no_grad():
            o, new = kernelgen.linear_attention_step(q[:, 17], k[:, 17], v[:, 17], state[n:n + 1], g=g[:, 17])
        _close(f"o (sequence {n}, length {length})", o, o_all[:, -1], 2e-5)
        _close(f"state (sequence {n})", new, s_all, 2e-5)


def test_step_grid_limit_groups_rows(device, monkeypatch):
    monkeypatch.setattr(op_module, "MAX_GRID_Y", 5)
    B, H, K, V = 7, 2, 16, 16
    q, k, v = (x[:, 0] for x in qkv(B, 1, H, K, V, device=device))
    S = randn(B, H, K, V, seed=4, device=device, scale=0.2)
    z = randn(B, H, K, seed=5, device=device).abs() + 0.5
    _step_vs_reference(q, k, v, (S, z), 2e-5, g=log_decay(B, H, device=device), feature_map="relu", normalize=True)


# --- wrong inputs ---------------------------------------------------------------------------------

def _bad_calls(device):
    """(name, error type, message pattern, call) for every wrong input."""
    B, T, H, K, V = 1, 8, 2, 16, 32
    q, k, v = qkv(B, T, H, K, V, device=device)
    g = log_decay(B, T, H, device=device)
    S = torch.zeros(B, H, K, V, device=device)
    big = randn(B, T, H, 48, device=device)
    two = qkv(2, T, H, K, V, device=device)
    la = kernelgen.linear_attention
    yield "k shape", ValueError, r"k must be \[B=1, T=8, H=2, K=16\]; got \[1, 4, 2, 16\]", lambda: la(q, k[:, :4], v)
    yield "v heads", ValueError, "v must be", lambda: la(q, k, v[:, :, :1])
    yield "q rank", ValueError, r"q must be \[B, T, H, K\]", lambda: la(q[0], k, v)
    yield "q not a tensor", TypeError, "q must be a torch.Tensor", lambda: la(q.tolist(), k, v)
    yield "int q/k/v", TypeError, "q must have dtype", lambda: la(q.int(), k.int(), v.int())
    yield "int v", TypeError, "v must have dtype", lambda: la(q, k, v.long())
    yield "float64 q/k/v", TypeError, "q must have dtype", lambda: la(q.double(), k.double(), v.double())
    yield "mixed q/k/v", TypeError, "share one dtype", lambda: la(q, k.half(), v)
    yield "int g", TypeError, "g must have dtype", lambda: la(q, k, v, g=g.int())
    yield "bool g_gamma", TypeError, "g_gamma must have dtype", \
        lambda: la(q, k, v, g_gamma=torch.ones(H, dtype=torch.bool, device=device))
    yield "g shape", ValueError, r"g must be \[B=1, T=8, H=2\]", lambda: la(q, k, v, g=g[..., None])
    yield "g_gamma shape", ValueError, r"g_gamma must be \[H=2\]", lambda: la(q, k, v, g_gamma=g[0])
    yield "both decays", ValueError, "not both", lambda: la(q, k, v, g=g, g_gamma=-torch.ones(H, device=device))
    yield "unknown feature map", ValueError, "feature_map must be one of", lambda: la(q, k, v, feature_map="softmax")
    yield "feature map not a str", ValueError, "feature_map must be one of", lambda: la(q, k, v, feature_map=1)
    yield "taylor2 K > 32", ValueError, "taylor2.*K <= 32; got K=48", lambda: la(big, big, v, feature_map="taylor2")
    yield "K too small", ValueError, r"K \(q.shape\[-1\]\) must be in \[16, 256\]; got 8", \
        lambda: la(q[..., :8], k[..., :8], v)
    yield "V too large", ValueError, r"V \(v.shape\[-1\]\) must be in", \
        lambda: la(q, k, randn(B, T, H, 264, device=device))
    yield "scale not a number", TypeError, "scale must be a real number", lambda: la(q, k, v, scale="0.5")
    yield "scale a tensor", TypeError, "scale must be a real number", lambda: la(q, k, v, scale=torch.tensor(0.5))
    yield "scale nan", ValueError, "scale must be finite", lambda: la(q, k, v, scale=float("nan"))
    yield "taylor2 negative scale", ValueError, "taylor2.*scale >= 0", \
        lambda: la(q, k, v, scale=-0.1, feature_map="taylor2")
    yield "cu_seqlens B > 1", ValueError, "needs B = 1 .*; got B=2", \
        lambda: la(*two, cu_seqlens=torch.tensor([0, 8], device=device))
    yield "cu_seqlens float", TypeError, "cu_seqlens must be int32 or int64", \
        lambda: la(q, k, v, cu_seqlens=torch.tensor([0.0, 8.0], device=device))
    yield "cu_seqlens list", TypeError, "cu_seqlens must be a torch.Tensor", lambda: la(q, k, v, cu_seqlens=[0, 8])
    yield "cu_seqlens 2-d", ValueError, r"cu_seqlens must be \[N\+1\]", \
        lambda: la(q, k, v, cu_seqlens=torch.tensor([[0, 8]], device=device))
    yield "cu_seqlens one offset", ValueError, "N >= 1", \
        lambda: la(q, k, v, cu_seqlens=torch.tensor([0], device=device))
    for bounds in ([0, 5], [0, 12], [1, 8], [0, 6, 3, 8]):
        yield f"cu_seqlens {bounds}", ValueError, "cu_seqlens must rise from 0 to T=8", \
            lambda bounds=bounds: la(q, k, v, cu_seqlens=torch.tensor(bounds, device=device))
    yield "state shape", ValueError, r"initial_state must be \[N=1, H=2, K'=16, V=32\]", \
        lambda: la(q, k, v, initial_state=S[..., :16])
    yield "state int", TypeError, "initial_state must have dtype", lambda: la(q, k, v, initial_state=S.int())
    yield "state pair without normalize", TypeError, "normalize=False", \
        lambda: la(q, k, v, initial_state=(S, S[..., 0]))
    yield "state tensor with normalize", TypeError, r"tuple \(S", lambda: la(q, k, v, normalize=True, initial_state=S)
    yield "z shape", ValueError, r"initial_state\[1\] \(z\) must be", \
        lambda: la(q, k, v, normalize=True, initial_state=(S, S))
    if device == "cpu":   # meta tensors stand in for a second device
        yield "g on another device", ValueError, "g is on meta but q is on cpu", lambda: la(q, k, v, g=g.to("meta"))
        yield "state on another device", ValueError, "initial_state is on meta", \
            lambda: la(q, k, v, initial_state=S.to("meta"))
        yield "cu_seqlens on another device", ValueError, "cu_seqlens is on meta", \
            lambda: la(q, k, v, cu_seqlens=torch.tensor([0, 8], device="meta"))
        yield "z on another device", ValueError, r"initial_state\[1\] \(z\) is on meta but q is on cpu", \
            lambda: la(q, k, v, normalize=True, initial_state=(S, S[..., 0].to("meta")))
    step = kernelgen.linear_attention_step
    q1, k1, v1 = q[:, 0], k[:, 0], v[:, 0]
    yield "step q rank", ValueError, r"q must be \[B, H, K\]", lambda: step(q, k, v, S)
    yield "step int", TypeError, "q must have dtype", lambda: step(q1.int(), k1.int(), v1.int(), S)
    yield "step no state", TypeError, "state must be a torch.Tensor", lambda: step(q1, k1, v1, None)
    yield "step state shape", ValueError, "state must be", lambda: step(q1, k1, v1, S[..., :16])
    yield "step both decays", ValueError, "not both", lambda: step(q1, k1, v1, S, g=g[:, 0], g_gamma=g[0, 0])
    yield "step g shape", ValueError, r"g must be \[B=1, H=2\]", lambda: step(q1, k1, v1, S, g=g)
    yield "step feature map", ValueError, "feature_map must be one of", lambda: step(q1, k1, v1, S, feature_map="exp")
    yield "step taylor2 K > 32", ValueError, "K <= 32", lambda: step(big[:, 0], big[:, 0], v1, S, feature_map="taylor2")


@pytest.mark.parametrize("case", [name for name, *_ in _bad_calls("cpu")])
def test_wrong_inputs_raise_clear_errors(case, device):
    expect_bad_call(_bad_calls(device), case, device)
