"""linear_attention: kernels (CPU interpreter or GPU) against the float64 recurrence of issue 4."""

import pytest
import torch

import kernelgen
from kernelgen.ops import linear_attention as op_module
from kernelgen.reference import linear_attention as ref
from kernelgen.templates import linear_attention as tmpl
from tests.reference_utils import assert_close, rel_error

FEATURES = [None, "elu1", "relu", "taylor2"]
DECAYS = ["none", "g", "g_gamma"]
TOL = {torch.float32: 2e-5, torch.float16: 6e-3, torch.bfloat16: 3e-2}

# Small tiles so the tiny test shapes cross several chunks (T=45 vs chunk 32) and two V tiles
# (V=24 vs block_v 16: the q-side gradients are then reduced over tiles).
SMALL = {"chunk": 32, "block_v": 16, "num_warps": 4, "num_stages": 1, "split_len": 0}


@pytest.fixture
def small_config(monkeypatch):
    """Make dispatch hand the op ``SMALL`` (or what the test sets in the returned dict)."""
    config = dict(SMALL)
    monkeypatch.setattr(op_module, "config_for", lambda *args, **kwargs: dict(config))
    return config


def make_inputs(B, T, H, K, V, decay, feature, normalize, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def randn(*size, scale=1.0):
        return (torch.randn(*size, generator=gen) * scale).to(device)

    q, k, v = randn(B, T, H, K), randn(B, T, H, K), randn(B, T, H, V)
    if normalize and feature is None:   # identity weights must stay positive to normalise
        q, k = q.abs() + 0.1, k.abs() + 0.1
    g = g_gamma = None
    if decay == "g":
        g = torch.nn.functional.logsigmoid(randn(B, T, H) + 2.0)
    elif decay == "g_gamma":
        g_gamma = -(torch.rand(H, generator=gen) * 0.3 + 0.02).to(device)
    return q.to(dtype), k.to(dtype), v.to(dtype), g, g_gamma


def make_state(N, H, K, V, feature, normalize, device, seed=1):
    gen = torch.Generator().manual_seed(seed)
    KF = ref.feature_size(feature, K)
    S = (torch.randn(N, H, KF, V, generator=gen) * 0.2).to(device)
    if normalize:
        return S, (torch.rand(N, H, KF, generator=gen) + 0.5).to(device)
    return S


def leaves64(*tensors):
    return [None if t is None else t.detach().to(torch.float64).requires_grad_() for t in tensors]


def flat_state(state):
    return list(state) if isinstance(state, (tuple, list)) else [state]


def check_forward_backward(q, k, v, g, g_gamma, feature, normalize, state, tol, cu_seqlens=None, grad_tol=None,
                           final_loss=True):
    """Op vs the float64 recurrence: o, final state and the gradients of every input (of a loss on
    o and, with ``final_loss``, on the final state)."""
    grad_tol = grad_tol or tol
    inputs = [q, k, v, g, g_gamma, *flat_state(state)]
    mine = [None if t is None else t.detach().clone().requires_grad_() for t in inputs]
    s_mine = None if state is None else (tuple(mine[5:7]) if normalize else mine[5])
    o, final = kernelgen.linear_attention(mine[0], mine[1], mine[2], g=mine[3], g_gamma=mine[4],
                                          feature_map=feature, normalize=normalize, initial_state=s_mine,
                                          output_final_state=True, cu_seqlens=cu_seqlens)
    theirs = leaves64(*inputs)
    s_ref = None if state is None else (tuple(theirs[5:7]) if normalize else theirs[5])
    o_ref, final_ref = ref.linear_attention_recurrent(theirs[0], theirs[1], theirs[2], theirs[3], theirs[4],
                                                      None, feature, normalize, s_ref, True, cu_seqlens)
    assert o.dtype == v.dtype
    assert_close("o", o, o_ref, tol)
    finals, finals_ref = flat_state(final), flat_state(final_ref)
    for name, a, b in zip(("S", "z"), finals, finals_ref):
        assert a.dtype == torch.float32
        assert_close(f"final {name}", a, b, tol)

    gen = torch.Generator().manual_seed(7)
    do = torch.randn(o.shape, generator=gen).to(o.device)
    d_finals = [torch.randn(f.shape, generator=gen).to(o.device) * (0.1 if final_loss else 0.0) for f in finals]
    loss = (o.float() * do).sum() + sum((f * d).sum() for f, d in zip(finals, d_finals))
    loss_ref = (o_ref * do.double()).sum() + sum((f * d.double()).sum() for f, d in zip(finals_ref, d_finals))
    names = ["q", "k", "v", "g", "g_gamma", "S0", "z0"]
    want = [(n, m, t) for n, m, t in zip(names, mine, theirs) if m is not None]
    grads = torch.autograd.grad(loss, [m for _, m, _ in want])
    grads_ref = torch.autograd.grad(loss_ref, [t for _, _, t in want])
    for (name, m, _), gr, gr_ref in zip(want, grads, grads_ref):
        assert gr.dtype == m.dtype, f"d{name} has dtype {gr.dtype}, input {m.dtype}"
        assert_close(f"d{name}", gr, gr_ref, grad_tol)


# --- the reference itself -------------------------------------------------------------------

@pytest.mark.parametrize("feature", FEATURES)
def test_reference_forms_agree(feature):
    """The recurrence, the pair-weight form and the chunked form are the same math."""
    q, k, v, g, _ = make_inputs(2, 19, 2, 4, 5, "g", feature, True, torch.float64, "cpu")
    q, k = q.abs(), k.abs()
    for normalize in (False, True):
        o1, s1 = ref.linear_attention_recurrent(q, k, v, g, None, None, feature, normalize, None, True)
        o2 = ref.linear_attention_pairwise(q, k, v, g, None, None, feature, normalize)
        o3, s3 = ref.linear_attention_chunked(q, k, v, g, None, None, feature, normalize, None, True, chunk=4)
        assert rel_error(o2, o1) < 1e-12 and rel_error(o3, o1) < 1e-12
        for a, b in zip(flat_state(s1), flat_state(s3)):
            assert rel_error(b, a) < 1e-12


# --- forward and backward, every feature map x decay x normalize -----------------------------

@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("decay", DECAYS)
@pytest.mark.parametrize("feature", FEATURES)
def test_forward_backward(feature, decay, normalize, device, small_config):
    B, T, H, K, V = 2, 45, 2, 16, 24
    q, k, v, g, g_gamma = make_inputs(B, T, H, K, V, decay, feature, normalize, torch.float32, device)
    state = make_state(B, H, K, V, feature, normalize, device)
    check_forward_backward(q, k, v, g, g_gamma, feature, normalize, state, TOL[torch.float32])


@pytest.mark.parametrize("feature,decay,normalize", [(None, "g", False), ("taylor2", "g_gamma", True),
                                                     ("elu1", "g", True)])
def test_forward_backward_fp16(feature, decay, normalize, device, small_config):
    B, T, H, K, V = 1, 40, 2, 16, 32
    q, k, v, g, g_gamma = make_inputs(B, T, H, K, V, decay, feature, normalize, torch.float16, device)
    check_forward_backward(q, k, v, g, g_gamma, feature, normalize, None, TOL[torch.float16], grad_tol=1e-2)


def test_dg_gamma_cancellation_fp16(device, small_config):
    """dg_gamma = Σ_t (t+1)·(r_t − c_t) cancels almost entirely over a long sequence (slow decay,
    many chunks): the row and column terms must come from consistent fp32 products, not from
    half-precision-rounded operands (bf16 on the H100 gave 35 % error; fp16 here showed 3.9 %)."""
    small_config.update(chunk=16, block_v=16)
    B, T, H, K, V = 1, 320, 2, 16, 32
    q, k, v, _, _ = make_inputs(B, T, H, K, V, "none", None, False, torch.float16, device)
    g_gamma = torch.tensor([-0.03, -0.1], device=device)
    mine = [t.detach().clone().requires_grad_() for t in (q, k, v, g_gamma)]
    o, _ = kernelgen.linear_attention(mine[0], mine[1], mine[2], g_gamma=mine[3])
    theirs = leaves64(q, k, v, g_gamma)
    o_ref, _ = ref.linear_attention_recurrent(theirs[0], theirs[1], theirs[2], None, theirs[3])
    do = torch.randn(o.shape, generator=torch.Generator().manual_seed(3)).to(device)
    dgg = torch.autograd.grad(o, [mine[3]], do.to(o.dtype))[0]
    dgg_ref = torch.autograd.grad(o_ref, [theirs[3]], do.double())[0]
    assert_close("dg_gamma", dgg, dgg_ref, 1e-2)


@pytest.mark.parametrize("dq_tile,dkv_tile", [(16, 32), (32, 16)])
def test_backward_kernels_with_their_own_v_tiles(dq_tile, dkv_tile, device, small_config):
    """The dq and dk/dv kernels tile V independently (dkv_block_v / dkv_warps): either one summing
    partial gradients over its V tiles while the other writes them directly."""
    small_config.update(block_v=dq_tile, dkv_block_v=dkv_tile, dkv_warps=2)
    B, T, H, K, V = 1, 45, 2, 16, 24
    q, k, v, g, g_gamma = make_inputs(B, T, H, K, V, "g", None, False, torch.float32, device)
    check_forward_backward(q, k, v, g, g_gamma, None, False, None, TOL[torch.float32])


@pytest.mark.parametrize("feature,decay,dq_block_k,split,x_early,dg_rows", [
    (None, "g", 16, 0, 0, 0), ("relu", None, 16, 16, 1, 0), ("elu1", "g", 32, 16, 1, 0), (None, "g", 0, 0, 0, 0),
    (None, "g", 16, 0, 0, 1), ("relu", None, 16, 16, 1, 1), ("elu1", "g", 32, 16, 0, 1)])
def test_backward_passes_key_tiles(feature, decay, dq_block_k, split, x_early, dg_rows, device, small_config):
    """The backward's passes (dq forward over (dO, v, k), dk reverse over (v, dO, q), dv reverse
    over (k, q, dO)) with several key-column tiles (K = 40: a ragged last tile), from an initial
    state, across segments; dq_block_k = 0 takes the state-carrying kernels; dg_rows builds the
    dq and dk tiles with tokens along the rows when they take the decay gradient's terms."""
    small_config.update(dq_block_k=dq_block_k, dq_warps=2, chunk=16, split_len=split, x_early=x_early,
                        dg_rows=dg_rows)
    B, T, H, K, V = 2, 37, 2, 40, 24
    q, k, v, g, g_gamma = make_inputs(B, T, H, K, V, decay, feature, False, torch.float32, device)
    state = make_state(B, H, K, V, feature, False, device)
    check_forward_backward(q, k, v, g, g_gamma, feature, False, state, TOL[torch.float32])


@pytest.mark.parametrize("g_value,dg_rows,dq_block_k", [(-5.0, 0, 16), (-20.0, 0, 16), (-20.0, 1, 16), (-5.0, 0, 0),
                                                        (-20.0, 0, 0)])
def test_strong_decay_final_state_and_dg(g_value, dg_rows, dq_block_k, device, small_config):
    """Strong decay (g = -5, -20): the final state keeps the last token exactly (its chunk total
    is the cumsum's last row) and dg keeps fp32 accuracy although the (t, t) pairs dominate the
    row and column terms it is the difference of (they are left out of both). A loss on the final
    state is left out: its last-token term cancels the same way but is rounded inside S_T itself
    (docs/linear_attention.md, precision). dq_block_k = 0: the state-carrying kernels, whose dk/dv
    kernel takes the in-chunk pairs' row and column sums itself and leaves the (t, t) pairs out."""
    small_config.update(dq_block_k=dq_block_k, dq_warps=2, chunk=16, dg_rows=dg_rows)
    B, T, H, K, V = 1, 33, 2, 16, 16
    q, k, v, _, _ = make_inputs(B, T, H, K, V, "g", None, False, torch.float32, device)
    g = torch.full((B, T, H), g_value, device=device)
    check_forward_backward(q, k, v, g, None, None, False, None, TOL[torch.float32], final_loss=False)


@pytest.mark.parametrize("feature,normalize", [(None, False), ("taylor2", True)])
def test_segmented_sequences(feature, normalize, device, small_config):
    """split_len cuts each sequence into segments: pass + scan + output, and the reverse in bwd."""
    small_config.update(chunk=16, split_len=16)
    B, T, H, K, V = 1, 45, 2, 16, 24
    q, k, v, g, g_gamma = make_inputs(B, T, H, K, V, "g", feature, normalize, torch.float32, device)
    state = make_state(B, H, K, V, feature, normalize, device)
    check_forward_backward(q, k, v, g, g_gamma, feature, normalize, state, TOL[torch.float32])


def test_head_dims_not_powers_of_two(device, small_config):
    q, k, v, g, _ = make_inputs(1, 33, 1, 20, 40, "g", "elu1", False, torch.float32, device)
    check_forward_backward(q, k, v, g, None, "elu1", False, make_state(1, 1, 20, 40, "elu1", False, device),
                           TOL[torch.float32])


# --- varlen, prefill in pieces, decode ----------------------------------------------------------

@pytest.mark.parametrize("feature,decay,normalize,split,dg_rows", [
    (None, "g", False, 0, 0), ("elu1", "g_gamma", True, 16, 0), (None, "g", False, 16, 1)])
def test_varlen(feature, decay, normalize, split, dg_rows, device, small_config):
    small_config.update(chunk=16, split_len=split, dg_rows=dg_rows, dg_prefetch=0)
    cu = torch.tensor([0, 7, 7, 40, 53], dtype=torch.int32, device=device)   # one empty sequence
    H, K, V = 2, 16, 24
    q, k, v, g, g_gamma = make_inputs(1, 53, H, K, V, decay, feature, normalize, torch.float32, device)
    state = make_state(4, H, K, V, feature, normalize, device)
    check_forward_backward(q, k, v, g, g_gamma, feature, normalize, state, TOL[torch.float32], cu_seqlens=cu)


@pytest.mark.parametrize("feature,decay,normalize", [(None, "g", False), ("taylor2", "g_gamma", True)])
def test_chunked_prefill_equals_one_call(feature, decay, normalize, device, small_config):
    B, T, H, K, V = 2, 45, 2, 16, 24
    q, k, v, g, g_gamma = make_inputs(B, T, H, K, V, decay, feature, normalize, torch.float32, device)
    kw = dict(g_gamma=g_gamma, feature_map=feature, normalize=normalize, output_final_state=True)
    o_all, s_all = kernelgen.linear_attention(q, k, v, g=g, **kw)
    cut = 19
    o1, s1 = kernelgen.linear_attention(q[:, :cut], k[:, :cut], v[:, :cut], g=None if g is None else g[:, :cut], **kw)
    o2, s2 = kernelgen.linear_attention(q[:, cut:], k[:, cut:], v[:, cut:], g=None if g is None else g[:, cut:],
                                        initial_state=s1, **kw)
    assert_close("o", torch.cat([o1, o2], 1), o_all, 1e-5)
    for a, b in zip(flat_state(s2), flat_state(s_all)):
        assert_close("final state", a, b, 1e-5)


@pytest.mark.parametrize("feature,decay,normalize", [(None, "g", False), ("elu1", "g_gamma", True),
                                                     ("taylor2", "none", True)])
def test_decode_step_equals_full_op(feature, decay, normalize, device, small_config):
    B, T, H, K, V = 2, 40, 2, 16, 24
    q, k, v, g, g_gamma = make_inputs(B, T, H, K, V, decay, feature, normalize, torch.float32, device)
    kw = dict(g_gamma=g_gamma, feature_map=feature, normalize=normalize)
    o_all, s_all = kernelgen.linear_attention(q, k, v, g=g, output_final_state=True, **kw)
    _, state = kernelgen.linear_attention(q[:, :-1], k[:, :-1], v[:, :-1], g=None if g is None else g[:, :-1],
                                          output_final_state=True, **kw)
    before = [x.clone() for x in flat_state(state)]
    with torch.no_grad():
        o, new = kernelgen.linear_attention_step(q[:, -1], k[:, -1], v[:, -1], state,
                                                 g=None if g is None else g[:, -1], **kw)
    assert_close("o", o, o_all[:, -1], 1e-5)
    for a, b in zip(flat_state(new), flat_state(s_all)):
        assert_close("state", a, b, 1e-5)
    for a, b in zip(flat_state(state), before):
        assert torch.equal(a, b), "the step must not change its input state"


def test_step_against_reference(device, small_config):
    B, H, K, V = 3, 2, 16, 40
    q, k, v, g, _ = make_inputs(B, 1, H, K, V, "g", "relu", True, torch.float16, device)
    state = make_state(B, H, K, V, "relu", True, device)
    with torch.no_grad():
        o, new = kernelgen.linear_attention_step(q[:, 0], k[:, 0], v[:, 0], state, g=g[:, 0],
                                                 feature_map="relu", normalize=True)
    o_ref, new_ref = ref.linear_attention_step(q[:, 0], k[:, 0], v[:, 0], state, g[:, 0], None, None, "relu", True)
    assert o.dtype == torch.float16
    assert_close("o", o, o_ref, 2e-3)
    assert_close("S", new[0], new_ref[0], 1e-5)
    assert_close("z", new[1], new_ref[1], 1e-5)
    # the one-token slice of the [B, T, H, *] layout: the same step, o [B, 1, H, V]
    with torch.no_grad():
        o4, new4 = kernelgen.linear_attention_step(q, k, v, state, g=g, feature_map="relu", normalize=True)
    assert o4.shape == (B, 1, H, V) and torch.equal(o4[:, 0], o)
    assert torch.equal(new4[0], new[0]) and torch.equal(new4[1], new[1])


def test_zero_length(device):
    q = torch.randn(2, 0, 2, 16, device=device)
    v = torch.randn(2, 0, 2, 32, device=device)
    S0 = torch.randn(2, 2, 16, 32, device=device)
    o, S = kernelgen.linear_attention(q, q, v, initial_state=S0, output_final_state=True)
    assert o.shape == v.shape and torch.equal(S, S0)


# --- bad inputs ----------------------------------------------------------------------------------

def test_bad_inputs(device):
    q = torch.randn(1, 8, 2, 16, device=device)
    v = torch.randn(1, 8, 2, 32, device=device)
    g = -torch.rand(1, 8, 2, device=device)
    la = kernelgen.linear_attention
    with pytest.raises(ValueError, match="not both"):
        la(q, q, v, g=g, g_gamma=-torch.rand(2, device=device))
    with pytest.raises(ValueError, match="taylor2"):
        big = torch.randn(1, 8, 2, 48, device=device)
        la(big, big, v, feature_map="taylor2")
    with pytest.raises(ValueError, match="feature_map"):
        la(q, q, v, feature_map="softmax")
    with pytest.raises(ValueError, match=r"k must be \[B=1, T=8, H=2, K=16\]"):
        la(q, q[..., :8].contiguous(), v)
    with pytest.raises(ValueError, match="v must be"):
        la(q, q, v[:, :4])
    with pytest.raises(ValueError, match="g must be"):
        la(q, q, v, g=g[:, :4])
    with pytest.raises(ValueError, match="g_gamma must be"):
        la(q, q, v, g_gamma=-torch.rand(3, device=device))
    with pytest.raises(TypeError, match="share one dtype"):
        la(q, q.half(), v)
    with pytest.raises(TypeError, match="q must have dtype"):
        la(q.to(torch.int32), q.to(torch.int32), v.to(torch.int32))
    with pytest.raises(ValueError, match="K .* must be in"):
        small = torch.randn(1, 8, 2, 8, device=device)
        la(small, small, v)
    with pytest.raises(ValueError, match="V .* must be in"):
        la(q, q, torch.randn(1, 8, 2, 512, device=device))
    with pytest.raises(ValueError, match="needs B = 1"):
        q2 = torch.randn(2, 8, 2, 16, device=device)
        la(q2, q2, torch.randn(2, 8, 2, 32, device=device), cu_seqlens=torch.tensor([0, 8], device=device))
    with pytest.raises(TypeError, match="cu_seqlens must be int32"):
        la(q, q, v, cu_seqlens=torch.tensor([0.0, 8.0], device=device))
    with pytest.raises(ValueError, match="initial_state must be"):
        la(q, q, v, initial_state=torch.zeros(1, 2, 16, 16, device=device))
    with pytest.raises(TypeError, match=r"tuple \(S"):
        la(q, q, v, normalize=True, initial_state=torch.zeros(1, 2, 16, 32, device=device))
    with pytest.raises(TypeError, match="normalize=False"):
        la(q, q, v, initial_state=(torch.zeros(1, 2, 16, 32), torch.zeros(1, 2, 16)))
    with pytest.raises(ValueError, match=r"initial_state\[0\] \(S\) must be"):
        la(q, q, v, feature_map="taylor2", normalize=True,
           initial_state=(torch.zeros(1, 2, 16, 32, device=device), torch.zeros(1, 2, 273, device=device)))
    if device == "cpu":
        with pytest.raises(ValueError, match="is on"):
            la(q, q, v, g=g.to("meta"))


def test_bad_step_inputs(device):
    q = torch.randn(2, 2, 16, device=device)
    v = torch.randn(2, 2, 32, device=device)
    S = torch.zeros(2, 2, 16, 32, device=device)
    with pytest.raises(ValueError, match="state must be"):
        kernelgen.linear_attention_step(q, q, v, torch.zeros(2, 2, 16, 16, device=device))
    with pytest.raises(ValueError, match="g must be"):
        kernelgen.linear_attention_step(q, q, v, S, g=torch.zeros(2, 3, device=device))
    with pytest.raises(NotImplementedError, match="no backward"):
        kernelgen.linear_attention_step(q.requires_grad_(), q, v, S)


# --- templates ------------------------------------------------------------------------------------

def _template_cases():
    for t in (tmpl.FWD, tmpl.BWD, tmpl.FWD_TAYLOR2, tmpl.BWD_TAYLOR2, tmpl.STEP):
        for flags in t.flags:
            for shape in t.cpu_workload:
                yield pytest.param(t, flags, shape, id=f"{t.name}-{flags}-F{shape['F']}")


@pytest.mark.parametrize("template,flags,shape", list(_template_cases()))
def test_template_matches_reference(template, flags, shape, device):
    gen = torch.Generator().manual_seed(0)
    dtype = "fp32"
    inputs = template.make_inputs(shape, dtype, flags, device, gen)
    outputs = template.allocate_outputs(inputs, shape, dtype, flags)
    for out in outputs.values():
        out.fill_(float("nan"))
    config = template.default_config(shape)
    assert template.check_config(config, shape) is None
    template.launch(config, inputs, outputs, shape, flags)
    expected = template.reference(inputs, shape, flags)
    assert set(expected) == set(outputs)
    for name, out in outputs.items():
        assert_close(f"{template.name} {name}", out, expected[name], template.tolerance(dtype, name) * 0.1)


def test_template_grid_configs_run(device):
    """A handful of distinct configs of the grid (chunk, tiles, segmentation) all verify."""
    t = tmpl.FWD
    shape = dict(B=1, T=70, H=1, K=16, V=32, F=16)
    grid = [c for c in t.grid(shape) if c["num_stages"] == 1 and c["num_warps"] == 4]
    picked = {(c["chunk"], c["block_v"], c["split_len"]): c for c in grid}
    assert len(picked) >= 4
    gen = torch.Generator().manual_seed(0)
    inputs = t.make_inputs(shape, "fp32", "g", device, gen)
    expected = t.reference(inputs, shape, "g")["o"]
    for config in list(picked.values())[:6]:
        outputs = t.allocate_outputs(inputs, shape, "fp32", "g")
        outputs["o"].fill_(float("nan"))
        t.launch(config, inputs, outputs, shape, "g")
        assert_close(f"config {config}", outputs["o"], expected, 1e-5)


def test_backward_default_follows_the_variant():
    """The passes' tiles for the variants that run them, the carrying kernels' for the others."""
    from kernelgen.templates import get_template
    bwd = get_template("linear_attention.bwd")
    shape = {"B": 8, "T": 4096, "H": 16, "K": 128, "V": 128, "F": 128}
    passes, carry = bwd.default_for(shape, None, "g"), bwd.default_for(shape, None, "g_gamma")
    assert passes["dq_block_k"] == 64 and passes["chunk"] == 64 and passes["block_v"] == 64
    assert carry == bwd.default_config(shape) and carry["block_v"] == 128
    assert bwd.default_for(shape, None, "none+elu1+norm") == carry
    for config in (passes, carry):
        assert bwd.check_config(config, shape) is None
    assert "dq pass" in bwd.check_config({**passes, "dq_block_k": 128, "dq_warps": 4}, shape)


def test_check_config_rejects_impossible():
    shape = dict(tmpl.TARGET)
    base = tmpl.FWD.default_config(shape)
    assert tmpl.FWD.check_config(base, shape) is None
    assert "registers" in tmpl.FWD.check_config({**base, "block_v": 128, "num_warps": 2}, shape)
    assert "multiple of chunk" in tmpl.FWD.check_config({**base, "chunk": 128, "split_len": 1088}, shape)
    assert "exceeds V" in tmpl.FWD.check_config({**base, "block_v": 256}, dict(shape, V=64))
    based = dict(tmpl.BASED)
    assert tmpl.FWD.check_config({**tmpl.FWD.default_config(based), "block_v": 128, "num_warps": 4}, based)
    for t in (tmpl.FWD, tmpl.BWD, tmpl.FWD_TAYLOR2, tmpl.BWD_TAYLOR2, tmpl.STEP):
        for s in t.workload:
            assert t.check_config(t.default_config(s), s) is None, (t.name, s)
            for flags in t.flags:   # every (shape, flags) pair the tuner forms is a valid problem
                feature = tmpl.parse_flags(flags)[1]
                assert s["F"] == tmpl.feature_rows(feature, s["K"]), (t.name, s, flags)


def test_flags_roundtrip():
    for decay in tmpl.DECAYS:
        for feature in (None, "elu1", "relu", "taylor2"):
            for normalize in (False, True):
                assert tmpl.parse_flags(tmpl.make_flags(decay, feature, normalize)) == (decay, feature, normalize)
    with pytest.raises(ValueError):
        tmpl.parse_flags("g+softmax")


# --- GPU: the real dtypes and sizes ---------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("decay", DECAYS)
def test_gpu_bf16_forward_backward(decay):
    B, T, H, K, V = 2, 1000, 4, 128, 128
    q, k, v, g, g_gamma = make_inputs(B, T, H, K, V, decay, None, False, torch.bfloat16, "cuda")
    _gpu_check(q, k, v, g, g_gamma, None, False, tol=3e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("feature", [None, "elu1"])
def test_gpu_bf16_dg_rows(feature, monkeypatch):
    """The dq and dk passes with tokens along their tile's rows (dg_rows), at the real widths."""
    dispatch = op_module.config_for

    def config_for(template, *args, **kwargs):
        config = dispatch(template, *args, **kwargs)
        return {**config, "dg_rows": 1, "dg_prefetch": 0} if template.kernel == "bwd" else config
    monkeypatch.setattr(op_module, "config_for", config_for)
    B, T, H, K, V = 2, 1000, 4, 128, 128
    q, k, v, g, g_gamma = make_inputs(B, T, H, K, V, "g", feature, False, torch.bfloat16, "cuda")
    _gpu_check(q, k, v, g, g_gamma, feature, False, tol=3e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("feature,normalize", [("taylor2", False), ("taylor2", True), ("elu1", True)])
def test_gpu_feature_maps(feature, normalize):
    B, T, H, K, V = 2, 700, 4, 16, 128
    q, k, v, g, g_gamma = make_inputs(B, T, H, K, V, "g", feature, normalize, torch.bfloat16, "cuda")
    _gpu_check(q, k, v, g, g_gamma, feature, normalize, tol=3e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("feature,decay,K,V", [(None, "g", 128, 128), (None, "g_gamma", 64, 64), (None, "g", 32, 48),
                                              ("elu1", "g_gamma", 128, 128), ("relu", "g", 64, 64),
                                              ("taylor2", "g", 16, 64)])
def test_gpu_normalised_forward(feature, decay, K, V):
    """Normalised forwards at the real widths (the identity map's and taylor2's normaliser is its
    own launch, for v = 1; a ragged T)."""
    q, k, v, g, g_gamma = make_inputs(2, 333, 2, K, V, decay, feature, True, torch.bfloat16, "cuda")
    _gpu_check(q, k, v, g, g_gamma, feature, True, tol=3e-2)


@pytest.mark.gpu
def test_gpu_long_sequence_segments():
    """B=1 and a long T: the default config splits the sequence into segments."""
    q, k, v, g, _ = make_inputs(1, 16384, 4, 64, 64, "g", None, False, torch.bfloat16, "cuda")
    shape = dict(B=1, T=16384, H=4, K=64, V=64, F=64)
    assert tmpl.FWD.default_config(shape)["split_len"] > 0
    _gpu_check(q, k, v, g, None, None, False, tol=3e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_gpu_other_dtypes(dtype):
    q, k, v, g, _ = make_inputs(2, 300, 2, 64, 32, "g", None, False, dtype, "cuda")
    _gpu_check(q, k, v, g, None, None, False, tol=1e-4 if dtype == torch.float32 else 5e-3)


def _gpu_check(q, k, v, g, g_gamma, feature, normalize, tol):
    leaves = [None if t is None else t.detach().clone().requires_grad_() for t in (q, k, v, g, g_gamma)]
    o, S = kernelgen.linear_attention(*leaves[:3], g=leaves[3], g_gamma=leaves[4], feature_map=feature,
                                      normalize=normalize, output_final_state=True)
    ref_leaves = leaves64(q, k, v, g, g_gamma)
    o_ref, S_ref = ref.linear_attention_chunked(*ref_leaves[:3], g=ref_leaves[3], g_gamma=ref_leaves[4],
                                                feature_map=feature, normalize=normalize, output_final_state=True)
    assert_close("o", o, o_ref, tol)
    for a, b in zip(flat_state(S), flat_state(S_ref)):
        assert_close("final state", a, b, tol)
    do = torch.randn_like(o)
    present = [(i, x) for i, x in enumerate(leaves) if x is not None]
    grads = torch.autograd.grad(o, [x for _, x in present], do)
    grads_ref = torch.autograd.grad(o_ref, [ref_leaves[i] for i, _ in present], do.double())
    for (i, _), a, b in zip(present, grads, grads_ref):
        assert_close(["dq", "dk", "dv", "dg", "dg_gamma"][i], a, b, 2 * tol)


@pytest.mark.parametrize("B, T", [(1, 65536), (1, 32768), (2, 8192), (4, 4096), (8, 4096)])
def test_backward_passes_cut_sequences_as_the_forward(B, T):
    """The three passes count their own (tile, head) programs, as the forward does: both cut a
    sequence into the same segments, so the backward reuses the forward's segment states (the
    state-carrying kernels' wider tiles would count half as many and cut twice as finely)."""
    shape = dict(B=B, T=T, H=16, K=128, V=128, F=128)
    fwd, bwd = tmpl.templates_for(None)
    assert bwd.default_for(shape, None, "g")["split_len"] == fwd.default_config(shape)["split_len"]
