"""kernelgen.selective_scan / selective_state_update on the inputs a drop-in for mamba-ssm meets.

Every argument combination of mamba-ssm's own suites (D, z, delta_bias, softplus, last state,
variable / constant / grouped B and C), lengths and channel counts no tile divides, every state size
N up to 256, strided views, fp32 parameters with fp16 activations, empty batches and sequences, the
decode step with each option (channel and mamba-2 head form, cache rows) updating strided states in
place, and wrong inputs refused with an error naming the argument. Forward and backward against the
float64 reference (kernelgen/reference/selective_scan.py); relative errors ‖out − ref‖/‖ref‖.
"""
import pytest
import torch

import kernelgen
from kernelgen.reference.selective_scan import (selective_scan_complex_ref, selective_scan_ref,
                                                selective_state_update_ref)
from reference_utils import assert_close

TOL = {torch.float32: 1e-5, torch.float16: 3e-3}
PARAMS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")


def scan_inputs(device, dtype=torch.float32, batch=2, dim=4, length=37, n_states=8, b_layout=1, c_layout=1,
                with_d=True, with_z=True, with_bias=True, with_h0=False, const_dtype=torch.float32, seed=0):
    """Random non-zero inputs as mamba-ssm's tests draw them (delta in (0, 0.5), A in (-0.5, 0)).
    A B/C layout is "const" ([dim, N], in const_dtype), or a group count G ([batch, N, L] for G = 1)."""
    gen = torch.Generator().manual_seed(seed)

    def draw(*size, dt=dtype, scale=1.0, shift=0.0, uniform=False):
        values = torch.rand(*size, generator=gen) if uniform else torch.randn(*size, generator=gen)
        return (shift + scale * values).to(dt).to(device)

    def bc(layout):
        if layout == "const":
            return draw(dim, n_states, dt=const_dtype)
        return draw(batch, n_states, length) if layout == 1 else draw(batch, layout, n_states, length)

    return {"u": draw(batch, dim, length), "delta": draw(batch, dim, length, scale=0.5, uniform=True),
            "A": draw(dim, n_states, dt=torch.float32, scale=-0.5, shift=-0.05, uniform=True),
            "B": bc(b_layout), "C": bc(c_layout),
            "D": draw(dim, dt=torch.float32) if with_d else None,
            "z": draw(batch, dim, length) if with_z else None,
            "delta_bias": draw(dim, dt=torch.float32, scale=0.5, uniform=True) if with_bias else None,
            "initial_state": draw(batch, dim, n_states, dt=torch.float32) if with_h0 else None}


def _scan(fn, i, **kwargs):
    return fn(*(i[k] for k in PARAMS[:8]), initial_state=i["initial_state"], **kwargs)


def _for_reference(i):
    """float64 leaves (gradients land on them); a constant [dim, N] B or C is broadcast per batch
    row and step as a view, so autograd sums its gradient over both."""
    leaves = {k: (None if v is None else v.detach().double().requires_grad_()) for k, v in i.items()}
    batch, dim, length = i["u"].shape
    args = dict(leaves)
    for name in ("B", "C"):
        if leaves[name].dim() == 2:
            args[name] = leaves[name][None, :, :, None].expand(batch, dim, leaves[name].shape[1], length)
    return leaves, args


def check_scan(i, softplus=True, return_last_state=True, with_dlast=False, seed=1):
    """Forward and the gradient of every tensor input vs the float64 reference."""
    dtype = i["u"].dtype
    leaves = {k: (None if v is None else v.detach().clone().requires_grad_()) for k, v in i.items()}
    names = [k for k, v in leaves.items() if v is not None]
    out = _scan(kernelgen.selective_scan, leaves, delta_softplus=softplus, return_last_state=return_last_state)
    ref_leaves, ref_args = _for_reference(i)
    ref = _scan(selective_scan_ref, ref_args, delta_softplus=softplus, return_last_state=True)
    y = out[0] if return_last_state else out
    assert isinstance(out, tuple) == return_last_state
    assert y.dtype == dtype and y.shape == i["u"].shape
    assert_close("y", y, ref[0], TOL[dtype])
    if return_last_state:
        assert out[1].dtype == torch.float32
        assert_close("last_state", out[1], ref[1], TOL[torch.float32] if dtype == torch.float32 else 1e-4)
    gen = torch.Generator().manual_seed(seed)
    outputs, ref_outputs = [y], [ref[0]]
    cotangents = [torch.randn(y.shape, generator=gen).to(dtype).to(y.device)]
    if with_dlast:
        outputs.append(out[1])
        ref_outputs.append(ref[1])
        cotangents.append(torch.randn(out[1].shape, generator=gen).to(y.device))
    grads = torch.autograd.grad(outputs, [leaves[k] for k in names], cotangents)
    ref_grads = torch.autograd.grad(ref_outputs, [ref_leaves[k] for k in names], [c.double() for c in cotangents])
    for name, grad, grad_ref in zip(names, grads, ref_grads):
        assert grad.dtype == i[name].dtype and grad.shape == i[name].shape, name
        assert_close(f"d{name}", grad, grad_ref, TOL[dtype] if grad.dtype == dtype else 1e-4)


# --- the scan: mamba-ssm's argument combinations ----------------------------------------------------

@pytest.mark.parametrize("dtype, b_layout, c_layout, with_d, with_z, with_bias, softplus, last", [
    (torch.float32, 1, 1, True, True, True, True, True),           # mamba-ssm's suite: everything on
    (torch.float16, 2, 2, True, True, True, True, True),           # groups
    (torch.float32, 1, 1, False, False, False, False, False),      # bare
    (torch.float16, 1, 1, True, False, False, True, False),        # D only, softplus without bias
    (torch.float32, 2, 2, False, True, True, False, True),         # bias without softplus, groups
    (torch.float16, "const", 1, True, True, True, True, True),     # constant B (fp32 wtype)
    (torch.float32, 1, "const", False, True, False, True, False),  # constant C
    (torch.float16, "const", "const", True, False, True, True, True),  # both constant
])
def test_mamba_argument_combinations(device, dtype, b_layout, c_layout, with_d, with_z, with_bias, softplus, last):
    i = scan_inputs(device, dtype, b_layout=b_layout, c_layout=c_layout, with_d=with_d, with_z=with_z,
                    with_bias=with_bias)
    check_scan(i, softplus=softplus, return_last_state=last)


# --- the scan: sizes no tile divides ----------------------------------------------------------------

@pytest.mark.parametrize("length, dtype", [(1, torch.float32), (2, torch.float16), (7, torch.float32),
                                           (37, torch.float16), (130, torch.float32)])
def test_lengths_that_are_no_multiple_of_a_tile(device, length, dtype):
    # 130 spans three 64-step checkpoint segments, the last one of 2 steps.
    i = scan_inputs(device, dtype, dim=3, length=length, n_states=3, with_h0=True)
    check_scan(i, with_dlast=True)


@pytest.mark.parametrize("dim, groups", [(1, 1), (3, 3), (5, 1), (5, 5)])
def test_channel_counts_that_are_no_multiple_of_a_block(device, dim, groups):
    i = scan_inputs(device, dim=dim, length=7, n_states=3, b_layout=groups, c_layout=groups)
    check_scan(i)


@pytest.mark.parametrize("n_states", [1, 3, 16, 64, 256])
def test_every_state_size_up_to_256(device, n_states):
    i = scan_inputs(device, batch=1, dim=2, length=5, n_states=n_states, with_h0=True)
    check_scan(i, with_dlast=True)


# --- the scan: layouts and dtypes ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_strided_views(device, dtype):
    i = scan_inputs(device, dtype, dim=3, length=9, n_states=4, with_h0=True)

    def time_major(t):           # [batch, L, dim] storage seen as [batch, dim, L] (x.transpose)
        return t.transpose(1, 2).contiguous().transpose(1, 2)

    def every_other(t, dim):     # a strided slice of a twice larger tensor, same values
        big = torch.zeros(*[s * 2 if k == dim else s for k, s in enumerate(t.shape)], dtype=t.dtype, device=t.device)
        every_other_index = (slice(None),) * dim + (slice(None, None, 2),)
        big[every_other_index] = t
        return big[every_other_index]

    views = {"u": time_major(i["u"]), "delta": every_other(i["delta"], 1), "z": every_other(i["z"], 0),
             "B": time_major(i["B"]), "C": every_other(i["C"], 2), "A": i["A"].t().contiguous().t(),
             "D": every_other(i["D"], 0), "delta_bias": every_other(i["delta_bias"], 0),
             "initial_state": i["initial_state"].transpose(1, 2).contiguous().transpose(1, 2)}
    for name, view in views.items():
        assert torch.equal(view, i[name]) and not view.is_contiguous(), name
    check_scan(views, with_dlast=True)


def test_fp32_parameters_with_half_activations(device):
    # mamba-ssm's layout: u, delta, z, variable B/C in fp16; A, D, delta_bias, initial state in fp32.
    # The gradients come back in each input's own dtype (check_scan asserts it).
    i = scan_inputs(device, torch.float16, length=21, b_layout=2, c_layout=2, with_h0=True)
    assert {i[k].dtype for k in ("A", "D", "delta_bias", "initial_state")} == {torch.float32}
    check_scan(i, with_dlast=True)


def test_batch_expanded_activations(device):
    # A stride-0 batch axis (one row broadcast to 3): read through, gradients summed by autograd.
    i = scan_inputs(device, batch=1, dim=3, length=9, n_states=4)
    expanded = {k: (v.expand(3, *v.shape[1:]) if v is not None and v.dim() == 3 else v) for k, v in i.items()}
    check_scan(expanded)


@pytest.mark.parametrize("batch, length", [(0, 7), (2, 0), (0, 0)])
def test_empty_batch_or_length(device, batch, length):
    i = scan_inputs(device, batch=batch, dim=3, length=length, n_states=4, b_layout=1, c_layout="const",
                    with_h0=True)
    leaves = {k: v.clone().requires_grad_() for k, v in i.items() if v is not None}
    y, last = _scan(kernelgen.selective_scan, {**dict.fromkeys(PARAMS), **leaves}, delta_softplus=True,
                    return_last_state=True)
    assert y.shape == (batch, 3, length) and last.shape == (batch, 3, 4)
    assert torch.equal(last, i["initial_state"])        # no step taken: the state passes through
    dlast = torch.randn(last.shape, generator=torch.Generator().manual_seed(2)).to(device)
    grads = torch.autograd.grad((y, last), list(leaves.values()), (torch.ones_like(y), dlast))
    for (name, leaf), grad in zip(leaves.items(), grads):
        assert grad.shape == leaf.shape, name
        expected = dlast if name == "initial_state" else torch.zeros_like(leaf)
        assert torch.equal(grad, expected), name


def test_prev_state_is_initial_state(device):
    # mamba-ssm versions with a chunked prefill call the starting state prev_state.
    i = scan_inputs(device, dim=3, length=11, n_states=4, with_h0=True)
    first, second = _scan(kernelgen.selective_scan, i, delta_softplus=True, return_last_state=True)
    h0 = i["initial_state"]
    renamed = kernelgen.selective_scan(*(i[k] for k in PARAMS[:8]), delta_softplus=True, return_last_state=True,
                                       prev_state=h0)
    assert torch.equal(renamed[0], first) and torch.equal(renamed[1], second)
    with pytest.raises(ValueError, match="as initial_state or as prev_state, not both"):
        kernelgen.selective_scan(*(i[k] for k in PARAMS[:8]), initial_state=h0, prev_state=h0)


# --- the scan: packed sequences (cu_seqlens, mamba-ssm's variable-length selective_scan_fn) --------

@pytest.mark.parametrize("offsets, dtype, b_layout, with_h0", [
    ([0, 9, 10, 26, 29], torch.float32, 1, True),    # full offsets: restarts at 9, 10, 26
    ([0, 7, 14, 21], torch.float16, 2, False),        # mamba-ssm's test: the starts alone (21 restarts nothing)
    ([0, 0, 12, 29], torch.float32, "const", True),   # a restart at step 0 drops initial_state
    ([0, 29], torch.float32, 1, True),                # one sequence: an ordinary call
])
def test_packed_sequences_restart_the_state(device, offsets, dtype, b_layout, with_h0):
    i = scan_inputs(device, dtype, batch=2, dim=4, length=29, n_states=3, b_layout=b_layout, c_layout=b_layout,
                    with_h0=with_h0)
    cu_seqlens = torch.tensor(offsets, dtype=torch.int64, device=device)
    leaves = {k: (None if v is None else v.detach().clone().requires_grad_()) for k, v in i.items()}
    names = [k for k, v in leaves.items() if v is not None]
    y, last = _scan(kernelgen.selective_scan, leaves, delta_softplus=True, return_last_state=True,
                    cu_seqlens=cu_seqlens)
    ref_leaves, ref_args = _for_reference(i)
    y_ref, last_ref = _scan(selective_scan_ref, ref_args, delta_softplus=True, return_last_state=True,
                            restarts=frozenset(offsets[1:-1]))
    assert_close("y", y, y_ref, TOL[dtype])
    assert_close("last_state", last, last_ref, 1e-4)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(2)).to(dtype).to(y.device)
    grads = torch.autograd.grad([y], [leaves[k] for k in names], [dy], allow_unused=True)
    ref_grads = torch.autograd.grad([y_ref], [ref_leaves[k] for k in names], [dy.double()], allow_unused=True)
    for name, grad, grad_ref in zip(names, grads, ref_grads):
        if grad_ref is None:   # initial_state dropped by a restart at step 0
            assert grad is None or not grad.any(), name
            continue
        assert_close(f"d{name}", grad, grad_ref, TOL[dtype] if grad.dtype == dtype else 1e-4)


def test_packed_sequences_in_complex_mode():
    gen = torch.Generator().manual_seed(5)
    u, delta = torch.randn(1, 4, 12, generator=gen), 0.5 * torch.rand(1, 4, 12, generator=gen)
    A = torch.complex(-0.5 * torch.rand(4, 3, generator=gen), torch.randn(4, 3, generator=gen))
    B, C = torch.randn(1, 3, 24, generator=gen), torch.randn(1, 3, 24, generator=gen)   # (re, im) pairs
    y, last = kernelgen.selective_scan(u, delta, A, B, C, return_last_state=True, cu_seqlens=torch.tensor([0, 5, 12]))
    y_ref, last_ref = selective_scan_complex_ref(u, delta, A, B, C, return_last_state=True, restarts=frozenset({5}))
    assert_close("y", y, y_ref, 1e-5)
    assert_close("last_state", torch.view_as_real(last), torch.view_as_real(last_ref), 1e-5)   # complex


@pytest.mark.parametrize("cu_seqlens, match", [
    (torch.tensor([0.0, 5.0, 11.0]), "1-D integer tensor"),
    (torch.tensor([[0, 5, 11]]), "1-D integer tensor"),
    ([0, 5, 11], "1-D integer tensor"),
    (torch.tensor([0, 8, 5, 11]), "non-decreasing offsets in \\[0, L=11\\]"),
    (torch.tensor([0, 5, 12]), "non-decreasing offsets in \\[0, L=11\\]"),
])
def test_packed_sequences_wrong_offsets(device, cu_seqlens, match):
    i = scan_inputs(device, dim=3, length=11, n_states=4)
    with pytest.raises(ValueError, match=match):
        kernelgen.selective_scan(*(i[k] for k in PARAMS[:8]), cu_seqlens=cu_seqlens)
    i["B"] = i["B"][..., :5]   # the whole call's shapes are checked before it is cut into sequences
    with pytest.raises(ValueError, match=r"B must be \[batch=2, N=4, L=11\]"):
        kernelgen.selective_scan(*(i[k] for k in PARAMS[:8]), cu_seqlens=torch.tensor([0, 5, 11]))


@pytest.mark.parametrize("chunks", [2, 3])
def test_chunked_prefill_through_prev_state(device, chunks):
    # mamba-ssm's scan_chunks: L cut into equal chunks (the last takes the rest), state passed on.
    i = scan_inputs(device, torch.float16, dim=4, length=37, b_layout=2, c_layout=2)
    y_ref, last_ref = _scan(selective_scan_ref, i, delta_softplus=True, return_last_state=True)
    step = 37 // chunks
    bounds = [(c * step, 37 if c == chunks - 1 else (c + 1) * step) for c in range(chunks)]
    state, ys = None, []
    for start, end in bounds:
        part = {k: (v[..., start:end] if k in ("u", "delta", "z", "B", "C") else v) for k, v in i.items()}
        y, state = kernelgen.selective_scan(*(part[k] for k in PARAMS[:8]), delta_softplus=True,
                                            return_last_state=True, prev_state=state)
        ys.append(y)
    assert_close("y", torch.cat(ys, dim=-1), y_ref, TOL[torch.float16])
    assert_close("last_state", state, last_ref, 1e-4)


# --- the scan: wrong inputs -----------------------------------------------------------------------

def _bad(name, value):
    return lambda i: {name: value(i)}


@pytest.mark.parametrize("change, error, match", [
    (_bad("delta", lambda i: i["delta"][..., :-1]), ValueError,
     r"delta must be \[batch=2, dim=4, L=37\]; got \[2, 4, 36\]"),
    (_bad("z", lambda i: i["z"][:1]), ValueError, r"z must be \[batch=2, dim=4, L=37\]; got \[1, 4, 37\]"),
    (_bad("A", lambda i: i["A"][:3]), ValueError, r"A must be \[dim=4, N\]; got \[3, 8\]"),
    (_bad("B", lambda i: i["B"][:, :5]), ValueError, r"B must be \[batch=2, N=8, L=37\]; got \[2, 5, 37\]"),
    (_bad("C", lambda i: i["C"][..., :30]), ValueError, r"C must be \[batch=2, N=8, L=37\]; got \[2, 8, 30\]"),
    (_bad("B", lambda i: i["B"][:, None, None]), ValueError, r"B must be \[dim, N\] \(constant\), \[batch, N, L\] or"),
    (_bad("C", lambda i: torch.ones(3, 8)), ValueError, r"C must be \[dim=4, N=8\]; got \[3, 8\]"),
    (_bad("D", lambda i: i["D"][:3]), ValueError, r"D must be \[dim=4\]; got \[3\]"),
    (_bad("delta_bias", lambda i: i["delta_bias"][None]), ValueError, r"delta_bias must be \[dim=4\]; got \[1, 4\]"),
    (_bad("initial_state", lambda i: torch.zeros(2, 4, 7)), ValueError,
     r"initial_state must be \[batch=2, dim=4, N=8\]"),
    (_bad("u", lambda i: i["u"][0]), ValueError, r"u must be \[batch, dim, L\]; got \[4, 37\]"),
    (_bad("u", lambda i: i["u"].tolist()), TypeError, r"u must be a torch.Tensor"),
    (_bad("u", lambda i: i["u"].to(torch.int32)), TypeError,
     r"u must have dtype in \(float32, float16, bfloat16\); got int32"),
    (_bad("u", lambda i: i["u"].double()), TypeError, r"u must have dtype in .*; got float64"),
    (_bad("delta", lambda i: i["delta"].to(torch.int64)), TypeError, r"delta must have dtype in .*; got int64"),
    (_bad("delta", lambda i: i["delta"].half()), TypeError, r"delta must have the dtype of u \(float32\); got float16"),
    (_bad("z", lambda i: i["z"] > 0), TypeError, r"z must have dtype in .*; got bool"),
    (_bad("A", lambda i: i["A"].to(torch.int32)), TypeError, r"A must have dtype in .*; got int32"),
    (_bad("B", lambda i: i["B"].to(torch.int16)), TypeError, r"B must have dtype in .*; got int16"),
    (_bad("D", lambda i: i["D"].to(torch.int64)), TypeError, r"D must have dtype in .*; got int64"),
    (_bad("u", lambda i: i["u"].to("meta")), ValueError, r"delta is on cpu but u is on meta"),
    (_bad("A", lambda i: i["A"].to("meta")), ValueError, r"A is on meta but u is on cpu"),
    (_bad("delta_bias", lambda i: i["delta_bias"].to("meta")), ValueError, r"delta_bias is on meta but u is on cpu"),
    (lambda i: {"A": torch.zeros(4, 257), "B": torch.ones(2, 257, 37), "C": torch.ones(2, 257, 37)}, ValueError,
     r"the state size N \(A.shape\[1\]\) must be in \[1, 256\]; got 257"),
    (lambda i: {"B": torch.ones(2, 3, 8, 37), "C": torch.ones(2, 3, 8, 37)}, ValueError,
     r"dim=4 must be a multiple of the number of groups G=3 of B"),
    (lambda i: {"C": torch.ones(2, 4, 8, 37)}, ValueError,
     r"B and C must have the same number of groups; got G=1 and G=4"),
])
def test_scan_wrong_inputs(change, error, match):
    # Built on the CPU: the meta tensors make a device mix without a GPU.
    i = scan_inputs("cpu")
    i.update(change(i))
    with pytest.raises(error, match=match):
        _scan(kernelgen.selective_scan, i, delta_softplus=True)


# --- decode step -------------------------------------------------------------------------------------

def step_inputs(device, dtype=torch.float32, state_dtype=torch.float32, batch=2, dim=6, n_states=5, groups=None,
                with_d=True, with_z=True, with_bias=True, bc_dtype=torch.float32, seed=0):
    """mamba-ssm's decode test draws: dt_bias in (-4, -3), A in (-2, -1), B/C in fp32 whatever x's dtype."""
    gen = torch.Generator().manual_seed(seed)

    def draw(*size, dt=dtype, scale=1.0, shift=0.0, uniform=False):
        values = torch.rand(*size, generator=gen) if uniform else torch.randn(*size, generator=gen)
        return (shift + scale * values).to(dt).to(device)

    bc = (batch, n_states) if groups is None else (batch, groups, n_states)
    return {"state": draw(batch, dim, n_states, dt=state_dtype), "x": draw(batch, dim), "dt": draw(batch, dim),
            "A": draw(dim, n_states, dt=torch.float32, scale=-1.0, shift=-1.0, uniform=True),
            "B": draw(*bc, dt=bc_dtype), "C": draw(*bc, dt=bc_dtype),
            "D": draw(dim, dt=torch.float32) if with_d else None,
            "z": draw(batch, dim) if with_z else None,
            "dt_bias": draw(dim, dt=torch.float32, shift=-4.0, uniform=True) if with_bias else None}


STEP_ARGS = ("state", "x", "dt", "A", "B", "C", "D", "z", "dt_bias")


def _step(fn, i, softplus=True, **kwargs):
    return fn(*(i[k] for k in STEP_ARGS), softplus, **kwargs)


def check_step(i, softplus=True):
    """Run the op on i (its state updated in place) and compare y and the state with the reference."""
    before = i["state"].clone()
    y = _step(kernelgen.selective_state_update, i, softplus)
    y_ref, state_ref = _step(selective_state_update_ref, {**i, "state": before}, softplus)
    loose = i["x"].dtype == torch.float16 or i["state"].dtype == torch.float16
    assert y.dtype == i["x"].dtype and y.shape == i["x"].shape
    assert_close("y", y, y_ref, TOL[torch.float16] if loose else TOL[torch.float32])
    assert_close("state (in place)", i["state"], state_ref, TOL[torch.float16] if loose else TOL[torch.float32])


@pytest.mark.parametrize("options", [
    {},                                                         # mamba's call: D, z, dt_bias, softplus
    {"with_z": False}, {"with_d": False}, {"with_bias": False}, {"softplus": False},
    {"with_z": False, "with_d": False, "with_bias": False, "softplus": False},
    {"groups": 1}, {"groups": 3}, {"groups": 6},
    {"dtype": torch.float16},                                   # fp16 x, fp32 B/C and state
    {"dtype": torch.float16, "state_dtype": torch.float16, "bc_dtype": torch.float16, "groups": 2},
    {"n_states": 1}, {"n_states": 256, "dim": 3}, {"dim": 1}, {"dim": 5, "groups": 5}, {"batch": 0},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "mamba")
def test_decode_step_options(device, options):
    options = dict(options)
    softplus = options.pop("softplus", True)
    check_step(step_inputs(device, **options), softplus)


def test_decode_step_strided_activations(device):
    i = step_inputs(device, groups=2)
    strided = {"x": i["x"].t().contiguous().t(), "dt": i["dt"][:1].expand(2, 6),
               "z": i["z"].t().contiguous().t(), "B": i["B"].transpose(1, 2).contiguous().transpose(1, 2),
               "A": i["A"].t().contiguous().t(), "D": i["D"].repeat(2)[::2]}
    check_step({**i, **strided})


def _channel_state_views(state):
    """Same values as state [batch, dim, N], stored so that no single flat layout holds them."""
    batch, dim, n_states = state.shape
    cache = torch.zeros(batch + 1, 2 * dim, n_states + 3, dtype=state.dtype, device=state.device)
    sliced = cache[1:, ::2, 1:n_states + 1]                       # rows of a larger cache, strided
    sliced.copy_(state)
    return {"sliced": (sliced, cache),
            "n_major": (state.transpose(1, 2).contiguous().transpose(1, 2), None),
            "batch_last": (state.permute(1, 2, 0).contiguous().permute(2, 0, 1), None)}


@pytest.mark.parametrize("layout", ["sliced", "n_major", "batch_last"])
@pytest.mark.parametrize("state_dtype", [torch.float32, torch.float16])
def test_decode_step_updates_a_strided_state_in_place(device, layout, state_dtype):
    i = step_inputs(device, state_dtype=state_dtype, groups=2)
    view, cache = _channel_state_views(i["state"])[layout]
    outside = cache.clone() if cache is not None else None
    check_step({**i, "state": view})
    if cache is not None:           # everything of the cache outside the view is left alone
        untouched = torch.ones_like(cache, dtype=torch.bool)
        untouched[1:, ::2, 1:i["state"].shape[2] + 1] = False
        assert torch.equal(cache[untouched], outside[untouched])


def head_inputs(device, dtype=torch.float32, batch=2, nheads=4, headdim=3, n_states=5, ngroups=2, tied=True,
                with_d=True, with_z=True, with_bias=True, seed=0):
    """mamba-2's decode inputs; tied: dt, dt_bias, A, D one value per head, broadcast with stride 0."""
    gen = torch.Generator().manual_seed(seed)

    def draw(*size, dt=dtype, scale=1.0, shift=0.0, uniform=False):
        values = torch.rand(*size, generator=gen) if uniform else torch.randn(*size, generator=gen)
        return (shift + scale * values).to(dt).to(device)

    per_head = (nheads,) if tied else (nheads, headdim)

    def spread(t, *lead):       # [..., nheads] -> [..., nheads, headdim] (stride 0) when tied
        return t[..., None].expand(*lead, nheads, headdim) if tied else t

    A = draw(*per_head, dt=torch.float32, scale=-1.0, shift=-1.0, uniform=True)
    return {"state": draw(batch, nheads, headdim, n_states), "x": draw(batch, nheads, headdim),
            "dt": spread(draw(batch, *per_head), batch),
            "A": (A[:, None, None].expand(nheads, headdim, n_states) if tied
                  else draw(nheads, headdim, n_states, dt=torch.float32, scale=-1.0, shift=-1.0, uniform=True)),
            "B": draw(batch, ngroups, n_states, dt=torch.float32),
            "C": draw(batch, ngroups, n_states, dt=torch.float32),
            "D": spread(draw(*per_head, dt=torch.float32)) if with_d else None,
            "z": draw(batch, nheads, headdim) if with_z else None,
            "dt_bias": spread(draw(*per_head, dt=torch.float32, shift=-4.0, uniform=True)) if with_bias else None}


def _as_channels(i):
    """The head-form inputs as the channel form (dim = nheads·headdim), for the reference."""
    batch, nheads, headdim, n_states = i["state"].shape
    dim = nheads * headdim
    flat = {"state": (batch, dim, n_states), "x": (batch, dim), "dt": (batch, dim), "z": (batch, dim),
            "A": (dim, n_states), "D": (dim,), "dt_bias": (dim,)}
    return {k: (v.reshape(*flat[k]) if v is not None and k in flat else v) for k, v in i.items()}


def check_head_step(i, state_rows=None, softplus=True):
    cache_before = i["state"].clone()
    rows = None if state_rows is None else state_rows.long()
    before = cache_before if rows is None else cache_before[rows]
    kwargs = {} if state_rows is None else {"state_batch_indices": state_rows}
    y = _step(kernelgen.selective_state_update, i, softplus, **kwargs)
    flat = _as_channels({**i, "state": before})
    y_ref, state_ref = _step(selective_state_update_ref, flat, softplus)
    tol = TOL[i["x"].dtype]
    after = i["state"] if rows is None else i["state"][rows]
    assert y.shape == i["x"].shape and y.dtype == i["x"].dtype
    assert_close("y", y.reshape(y_ref.shape), y_ref, tol)
    assert_close("state (in place)", after.reshape(state_ref.shape), state_ref, tol)
    if rows is not None:        # the cache rows this batch does not use are left alone
        unused = torch.ones(i["state"].shape[0], dtype=torch.bool, device=rows.device)
        unused[rows] = False
        assert torch.equal(i["state"][unused], cache_before[unused])


@pytest.mark.parametrize("options", [
    {}, {"with_z": False}, {"with_d": False}, {"with_bias": False}, {"softplus": False},
    {"ngroups": 1}, {"ngroups": 4}, {"tied": False}, {"tied": False, "ngroups": 4, "with_z": False},
    {"dtype": torch.float16}, {"headdim": 1}, {"nheads": 1, "ngroups": 1}, {"n_states": 1}, {"batch": 0},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "tied")
def test_decode_head_form_options(device, options):
    options = dict(options)
    softplus = options.pop("softplus", True)
    check_head_step(head_inputs(device, **options), softplus=softplus)


@pytest.mark.parametrize("layout", ["sliced", "headdim_major"])
def test_decode_head_form_updates_a_strided_state_in_place(device, layout):
    i = head_inputs(device)
    batch, nheads, headdim, n_states = i["state"].shape
    if layout == "sliced":      # every other head of a larger cache: heads × headdim still flatten
        cache = torch.zeros(batch, 2 * nheads, headdim, n_states, device=device)
        view = cache[:, ::2]
    else:                       # [batch, headdim, nheads, N] storage: no flat view exists
        view = torch.zeros(batch, headdim, nheads, n_states, device=device).transpose(1, 2)
    view.copy_(i["state"])
    check_head_step({**i, "state": view})
    if layout == "sliced":
        assert torch.equal(cache[:, 1::2], torch.zeros_like(cache[:, 1::2]))


@pytest.mark.parametrize("form", ["channels", "heads"])
def test_state_batch_indices(device, form):
    if form == "heads":
        i = head_inputs(device, batch=3, tied=True)
        i["state"] = torch.randn(7, *i["state"].shape[1:], generator=torch.Generator().manual_seed(5)).to(device)
        rows = torch.tensor([5, 0, 3], dtype=torch.int32, device=device)
        check_head_step(i, rows)
        return
    i = step_inputs(device, batch=3, groups=3)
    cache = torch.randn(7, 6, 5, generator=torch.Generator().manual_seed(5)).to(device)
    rows = torch.tensor([6, 2, 4], dtype=torch.int64, device=device)
    before = cache.clone()
    y = _step(kernelgen.selective_state_update, {**i, "state": cache}, state_batch_indices=rows)
    y_ref, state_ref = _step(selective_state_update_ref, {**i, "state": before[rows]})
    assert_close("y", y, y_ref, TOL[torch.float32])
    assert_close("state rows", cache[rows], state_ref, TOL[torch.float32])
    others = torch.tensor([0, 1, 3, 5], device=device)
    assert torch.equal(cache[others], before[others])


# --- decode step: wrong inputs ---------------------------------------------------------------------

@pytest.mark.parametrize("change, error, match", [
    (_bad("x", lambda i: i["x"][:, :5]), ValueError, r"x must be \[batch=2, dim=6\]; got \[2, 5\]"),
    (_bad("dt", lambda i: i["dt"][:1]), ValueError, r"dt must be \[batch=2, dim=6\]; got \[1, 6\]"),
    (_bad("z", lambda i: i["z"][..., None]), ValueError, r"z must be \[batch=2, dim=6\]; got \[2, 6, 1\]"),
    (_bad("A", lambda i: i["A"][:, :4]), ValueError, r"A must be \[dim=6, N=5\]; got \[6, 4\]"),
    (_bad("B", lambda i: i["B"][:, :4]), ValueError, r"B must be \[batch=2, N=5\]; got \[2, 4\]"),
    (_bad("C", lambda i: i["C"][None]), ValueError, r"C must be \[batch=2, G, N=5\]; got \[1, 2, 5\]"),
    (_bad("D", lambda i: i["D"][:5]), ValueError, r"D must be \[dim=6\]; got \[5\]"),
    (_bad("dt_bias", lambda i: i["dt_bias"][None]), ValueError, r"dt_bias must be \[dim=6\]; got \[1, 6\]"),
    (_bad("state", lambda i: i["state"][0]), ValueError, r"state must be \[batch, dim, N\]; got \[6, 5\]"),
    (_bad("state", lambda i: i["state"].to(torch.int32)), TypeError, r"state must have dtype in .*; got int32"),
    (_bad("x", lambda i: i["x"].to(torch.int64)), TypeError, r"x must have dtype in .*; got int64"),
    (_bad("dt", lambda i: i["dt"].to(torch.int32)), TypeError, r"dt must have the dtype of x \(float32\); got int32"),
    (_bad("z", lambda i: i["z"].half()), TypeError, r"z must have the dtype of x \(float32\); got float16"),
    (_bad("A", lambda i: i["A"].to(torch.int32)), TypeError, r"A must have dtype in .*; got int32"),
    (_bad("B", lambda i: i["B"] > 0), TypeError, r"B must have dtype in .*; got bool"),
    (_bad("dt_bias", lambda i: i["dt_bias"].to(torch.int64)), TypeError, r"dt_bias must have dtype in .*; got int64"),
    (_bad("x", lambda i: i["x"].to("meta")), ValueError, r"x is on meta but state is on cpu"),
    (_bad("D", lambda i: i["D"].to("meta")), ValueError, r"D is on meta but state is on cpu"),
    (lambda i: {"state": torch.zeros(2, 6, 257), "A": torch.zeros(6, 257), "B": torch.ones(2, 257),
                "C": torch.ones(2, 257)}, ValueError, r"the state size N \(state.shape\[2\]\) must be in \[1, 256\]"),
    (lambda i: {"B": torch.ones(2, 4, 5), "C": torch.ones(2, 4, 5)}, ValueError,
     r"dim=6 must be a multiple of the number of groups G=4 of B"),
    (lambda i: {"C": torch.ones(2, 3, 5)}, ValueError, r"B and C must have the same number of groups; got G=1 and G=3"),
])
def test_decode_step_wrong_inputs(change, error, match):
    i = step_inputs("cpu")
    i.update(change(i))
    with pytest.raises(error, match=match):
        _step(kernelgen.selective_state_update, i)


@pytest.mark.parametrize("change, error, match", [
    (_bad("A", lambda i: i["A"][:, 0]), ValueError, r"A must be \[nheads=4, headdim=3, N=5\]; got \[4, 5\]"),
    (_bad("dt", lambda i: i["dt"][:, :, :2]), ValueError, r"dt must be \[batch=2, nheads=4, headdim=3\]"),
    (_bad("D", lambda i: i["D"][0]), ValueError, r"D must be \[nheads=4, headdim=3\]; got \[3\]"),
    (lambda i: {"B": torch.ones(2, 3, 5), "C": torch.ones(2, 3, 5)}, ValueError,
     r"nheads=4 must be a multiple of the number of groups ngroups=3 of B"),
    (lambda i: {"state": torch.zeros(2, 4, 3, 300), "A": torch.zeros(4, 3, 300), "B": torch.ones(2, 2, 300),
                "C": torch.ones(2, 2, 300)}, ValueError,
     r"the state size N \(state.shape\[3\]\) must be in \[1, 256\]"),
    (_bad("x", lambda i: i["x"].to(torch.int32)), TypeError, r"x must have dtype in .*; got int32"),
    (_bad("dt", lambda i: i["dt"].to("meta")), ValueError, r"dt is on meta but state is on cpu"),
])
def test_head_form_wrong_inputs(change, error, match):
    i = head_inputs("cpu")
    i.update(change(i))
    with pytest.raises(error, match=match):
        _step(kernelgen.selective_state_update, i)


@pytest.mark.parametrize("rows, error, match", [
    (torch.tensor([0.0, 1.0]), TypeError, r"state_batch_indices must be an integer tensor \[batch\]; got float32"),
    (torch.tensor([0, 1, 2]), ValueError, r"state_batch_indices must be \[batch=2\]; got \[3\]"),
    (torch.tensor([0, 4]), ValueError,
     r"state_batch_indices must be distinct rows of state, in \[0, 4\); got \[0, 4\]"),
    (torch.tensor([-1, 2]), ValueError, r"in \[0, 4\); got \[-1, 2\]"),
    (torch.tensor([3, 3]), ValueError, r"must be distinct rows of state"),
    (torch.tensor([0, 1], device="meta"), ValueError, r"state_batch_indices is on meta but state is on cpu"),
])
def test_state_batch_indices_wrong_values(rows, error, match):
    i = step_inputs("cpu")
    cache = torch.randn(4, 6, 5)
    before = cache.clone()
    with pytest.raises(error, match=match):
        _step(kernelgen.selective_state_update, {**i, "state": cache}, state_batch_indices=rows)
    assert torch.equal(cache, before)          # refused before anything was written


def test_decode_step_tells_autograd_of_its_in_place_write(device):
    """The kernel writes the state in place; its version counter moves, so a scan that saved the
    same tensor as its initial_state refuses a backward on the changed values."""
    i = step_inputs(device, dim=4, n_states=8)
    scan = scan_inputs(device, dim=4, n_states=8, length=9, with_h0=True)
    scan["initial_state"] = i["state"]
    u = scan["u"].clone().requires_grad_()
    y = _scan(kernelgen.selective_scan, {**scan, "u": u}, delta_softplus=True)
    before = i["state"]._version
    _step(kernelgen.selective_state_update, i)
    assert i["state"]._version > before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
