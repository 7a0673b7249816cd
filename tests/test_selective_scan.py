"""kernelgen.selective_scan / selective_state_update and their templates vs the float64 reference.

On the CPU these run the real Triton kernels under the interpreter, on tiny ragged shapes
(dim=6 channels, L=37 steps, N=5 states: none a multiple of a tile). Tolerances are relative
errors ‖out − ref‖/‖ref‖: fp32 1e-5 (fp32 accumulation, exp2 approximations), fp16 3e-3 (the
output rounded to fp16), bf16 2e-2 (GPU tests only: bf16 tl.dot is broken in the interpreter).
"""
import itertools

import pytest
import torch

import kernelgen
from kernelgen.reference.selective_scan import selective_scan_ref, selective_state_update_ref
from kernelgen.templates import selective_scan as ss
from reference_utils import assert_close, call_selective_scan, require_grad

TOL = {torch.float32: 1e-5, torch.float16: 3e-3, torch.bfloat16: 2e-2}


def make_inputs(device, dtype=torch.float32, batch=2, dim=6, length=37, n_states=5, groups=None,
                with_d=True, with_z=False, with_bias=True, with_h0=False, seed=0, requires_grad=False,
                softplus=True):
    """Random inputs (never zeros). groups=None: B, C are [batch, N, L]; else [batch, G, N, L].
    Without softplus, delta (and delta_bias) are drawn positive, as a step size must be."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*size, scale=1.0, shift=0.0, dt=dtype):
        return (shift + scale * torch.randn(*size, generator=gen)).to(dt).to(device)

    bc = (batch, n_states, length) if groups is None else (batch, groups, n_states, length)
    inputs = {
        "u": randn(batch, dim, length),
        "delta": (randn(batch, dim, length, scale=0.5) if softplus else
                  (0.05 + 0.3 * torch.rand(batch, dim, length, generator=gen)).to(dtype).to(device)),
        "A": (-(0.5 + 0.5 * n_states * torch.rand(dim, n_states, generator=gen))).to(device),
        "B": randn(*bc), "C": randn(*bc),
        "D": randn(dim, dt=torch.float32) if with_d else None,
        "z": randn(batch, dim, length) if with_z else None,
        "delta_bias": (randn(dim, scale=0.3, shift=-1.0, dt=torch.float32) if softplus else
                       (0.05 * torch.rand(dim, generator=gen)).to(device)) if with_bias else None,
        "initial_state": randn(batch, dim, n_states, dt=torch.float32) if with_h0 else None,
    }
    return require_grad(inputs) if requires_grad else inputs


def _float64(inputs):
    return {k: (v.detach().double().requires_grad_(v.requires_grad) if v is not None else None)
            for k, v in inputs.items()}


# --- the op: forward -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, groups, with_d, with_z, with_bias, softplus, with_h0", [
    (torch.float32, None, True, False, True, True, False),     # the Mamba call: D, bias, softplus
    (torch.float16, 2, False, True, False, False, True),       # groups, z, initial state
    (torch.float32, 3, True, True, True, False, True),         # 3 groups of 2 channels, bias w/o softplus
    (torch.float16, None, False, False, False, True, False),   # bare
])
def test_forward_matches_reference(device, dtype, groups, with_d, with_z, with_bias, softplus, with_h0):
    inputs = make_inputs(device, dtype, groups=groups, with_d=with_d, with_z=with_z, with_bias=with_bias,
                         with_h0=with_h0, softplus=softplus)
    y, last = call_selective_scan(kernelgen.selective_scan, inputs, delta_softplus=softplus, return_last_state=True)
    y_ref, last_ref = call_selective_scan(selective_scan_ref, inputs, delta_softplus=softplus, return_last_state=True)
    assert y.dtype == dtype and last.dtype == torch.float32
    assert_close("y", y, y_ref, TOL[dtype])
    assert_close("last_state", last, last_ref, TOL[torch.float32] if dtype == torch.float32 else 1e-4)
    assert isinstance(call_selective_scan(kernelgen.selective_scan, inputs, delta_softplus=softplus), torch.Tensor)


@pytest.mark.parametrize("length", [0, 1, 8, 70])
def test_ragged_and_edge_lengths(device, length):
    # 70 crosses a checkpoint boundary (64 steps) and is no multiple of any chunk.
    inputs = make_inputs(device, length=length, with_z=True, with_h0=True, groups=2)
    y, last = call_selective_scan(kernelgen.selective_scan, inputs, delta_softplus=True, return_last_state=True)
    y_ref, last_ref = call_selective_scan(selective_scan_ref, inputs, delta_softplus=True, return_last_state=True)
    assert y.shape == (2, 6, length)
    if length:
        assert_close("y", y, y_ref, TOL[torch.float32])
    assert_close("last_state", last, last_ref, TOL[torch.float32])


def test_non_contiguous_inputs(device):
    inputs = make_inputs(device, groups=2, with_z=True)
    # Time-major storage viewed as [batch, dim, L] (what a [batch, L, dim] activation gives).
    strided = {k: (v.transpose(1, 2).contiguous().transpose(1, 2) if k in ("u", "delta", "z") else v)
               for k, v in inputs.items()}
    strided["B"] = inputs["B"].transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not strided["u"].is_contiguous()
    y = call_selective_scan(kernelgen.selective_scan, strided, delta_softplus=True)
    assert_close("y", y, call_selective_scan(selective_scan_ref, inputs, delta_softplus=True), TOL[torch.float32])


# --- the op: backward --------------------------------------------------------------------------

@pytest.mark.parametrize("b_form", ["[batch, N, L]", "[batch, 1, N, L]", "[dim, N]"])
def test_backward_without_channels(device, b_form):
    """dim = 0: the forward returns empty tensors, the backward empty gradients and zeros for the
    operands no channel reads (before: an IndexError or a ZeroDivisionError in the launcher)."""
    batch, length, n = 2, 5, 3
    shapes = {"[batch, N, L]": (batch, n, length), "[batch, 1, N, L]": (batch, 1, n, length), "[dim, N]": (0, n)}
    leaves = [torch.randn(*shape, device=device).requires_grad_() for shape in
              ((batch, 0, length), (batch, 0, length), (0, n), shapes[b_form], (batch, n, length), (0,), (batch, 0, length),
               (0,), (batch, 0, n))]
    u, delta, A, B, C, D, z, bias, h0 = leaves
    y, last = kernelgen.selective_scan(u, delta, A, B, C, D, z, bias, True, return_last_state=True, initial_state=h0)
    grads = torch.autograd.grad(y.sum() + last.sum(), leaves)
    for leaf, grad in zip(leaves, grads):
        assert grad.shape == leaf.shape and grad.dtype == leaf.dtype and not grad.abs().sum()


def _outputs_and_gradients(inputs):
    """(run, names): run() gives y, last_state and the gradient of every input in names under a
    fixed random loss on both, for comparing two ways of running the same call."""
    names = [k for k, v in inputs.items() if v is not None]
    dy = torch.randn(inputs["u"].shape, generator=torch.Generator().manual_seed(3)).to(inputs["u"].device)

    def run():
        y, last = call_selective_scan(kernelgen.selective_scan, inputs, delta_softplus=True, return_last_state=True)
        return (y, last, *torch.autograd.grad((y * dy).sum() + last.sum(), [inputs[k] for k in names]))
    return run, names


def test_constant_bc_beyond_the_grid_runs_in_channel_runs(device, monkeypatch):
    """A constant B or C makes every channel a group on the grid's y axis (capped at 65535): more
    channels run as runs of channels, with the same outputs and gradients."""
    from kernelgen.ops import selective_scan as op
    inputs = make_inputs(device, dim=7, length=20, with_z=True, with_h0=True, requires_grad=True)
    inputs["B"] = torch.randn(7, 5, device=device).requires_grad_()        # constant B, variable C
    run, names = _outputs_and_gradients(inputs)
    whole = run()
    monkeypatch.setattr(op, "MAX_GRID_CHANNELS", 3)
    calls = []
    apply = op._SelectiveScan.apply
    monkeypatch.setattr(op._SelectiveScan, "apply", lambda *a: calls.append(a[0].shape[1]) or apply(*a))
    runs = run()
    assert calls == [3, 3, 1]
    for name, got, want in zip(["y", "last_state", *names], runs, whole):
        assert_close(name, got, want, 1e-6)

@pytest.mark.parametrize("dtype, groups, length, with_z, with_h0, softplus", [
    (torch.float32, 2, 37, True, True, True),       # every input, plus a gradient into last_state
    (torch.float16, None, 70, False, False, True),  # two checkpoint segments, ragged last chunk
])
def test_backward_matches_reference(device, dtype, groups, length, with_z, with_h0, softplus):
    inputs = make_inputs(device, dtype, groups=groups, length=length, with_z=with_z, with_h0=with_h0,
                         requires_grad=True, softplus=softplus)
    names = [k for k, v in inputs.items() if v is not None]
    y, last = call_selective_scan(kernelgen.selective_scan, inputs, delta_softplus=softplus, return_last_state=True)
    gen = torch.Generator().manual_seed(1)
    dy = torch.randn(y.shape, generator=gen).to(dtype).to(device)
    dlast = torch.randn(last.shape, generator=gen).to(device) if with_h0 else None
    outputs, cotangents = ((y, last), (dy, dlast)) if dlast is not None else ((y,), (dy,))
    grads = torch.autograd.grad(outputs, [inputs[k] for k in names], cotangents)

    ref_inputs = _float64(inputs)
    y_ref, last_ref = call_selective_scan(selective_scan_ref, ref_inputs, delta_softplus=softplus, return_last_state=True)
    ref_outputs = (y_ref, last_ref) if dlast is not None else (y_ref,)
    ref_grads = torch.autograd.grad(ref_outputs, [ref_inputs[k] for k in names],
                                    [c.double() for c in cotangents])
    for name, grad, ref in zip(names, grads, ref_grads):
        assert grad.dtype == inputs[name].dtype, name
        assert_close(f"d{name}", grad, ref, TOL[dtype] if grad.dtype == dtype else 1e-4)


def test_backward_without_grad_of_every_input(device):
    inputs = make_inputs(device, with_h0=True)
    inputs["u"].requires_grad_(True)     # only u: no dA/dB/... wanted, initial_state not differentiated
    y = call_selective_scan(kernelgen.selective_scan, inputs, delta_softplus=True)
    (du,) = torch.autograd.grad(y.sum(), [inputs["u"]])
    ref_inputs = _float64(inputs)
    (du_ref,) = torch.autograd.grad(call_selective_scan(selective_scan_ref, ref_inputs, delta_softplus=True).sum(), [ref_inputs["u"]])
    assert_close("du", du, du_ref, TOL[torch.float32])


# --- decode step and chunked prefill ------------------------------------------------------------

@pytest.mark.parametrize("dtype, groups, state_dtype", [(torch.float32, None, torch.float32),
                                                        (torch.float16, 3, torch.float32),
                                                        (torch.float32, 2, torch.float16)])
def test_decode_step_equals_last_step_of_scan(device, dtype, groups, state_dtype):
    i = make_inputs(device, dtype, length=9, groups=groups, with_z=True, with_h0=True)
    y_full, _ = call_selective_scan(kernelgen.selective_scan, i, delta_softplus=True, return_last_state=True)
    head = {k: (v[..., :-1] if k in ("u", "delta", "z", "B", "C") else v) for k, v in i.items()}
    _, state = call_selective_scan(kernelgen.selective_scan, head, delta_softplus=True, return_last_state=True)
    state = state.to(state_dtype)
    state_before = state.clone()
    y = kernelgen.selective_state_update(state, i["u"][..., -1], i["delta"][..., -1], i["A"], i["B"][..., -1],
                                         i["C"][..., -1], i["D"], i["z"][..., -1], i["delta_bias"], True)
    y_ref, state_ref = selective_state_update_ref(state_before, i["u"][..., -1], i["delta"][..., -1], i["A"],
                                                  i["B"][..., -1], i["C"][..., -1], i["D"], i["z"][..., -1],
                                                  i["delta_bias"], True)
    tol = TOL[dtype] if state_dtype == torch.float32 else TOL[torch.float16]
    assert y.dtype == dtype and state.dtype == state_dtype
    assert_close("y", y, y_ref, tol)
    assert_close("state (updated in place)", state, state_ref, tol)
    assert_close("y vs the scan's last step", y, y_full[..., -1], 10 * tol)


@pytest.mark.parametrize("b_grouped", [False, True])
def test_decode_step_b_and_c_in_either_form(device, b_grouped):
    """B [batch, N] beside C [batch, 1, N] (and the other way round) is one group either way; the
    launchers read a 2-D operand through a zero group stride (before, a 2-D B made C a 4-D view)."""
    i = make_inputs(device, length=3, with_z=True, with_h0=True)
    state = torch.randn(i["u"].shape[0], i["u"].shape[1], i["A"].shape[1], device=device)
    B, C = i["B"][..., -1], i["C"][..., -1]                    # [batch, N], not contiguous
    B, C = (B.unsqueeze(1), C) if b_grouped else (B, C.unsqueeze(1))
    args = (i["u"][..., -1], i["delta"][..., -1], i["A"])
    tail = (i["D"], i["z"][..., -1], i["delta_bias"], True)
    y_ref, state_ref = selective_state_update_ref(state.clone(), *args, i["B"][..., -1], i["C"][..., -1], *tail)
    y = kernelgen.selective_state_update(state, *args, B, C, *tail)
    assert_close("y", y, y_ref, TOL[torch.float32])
    assert_close("state (updated in place)", state, state_ref, TOL[torch.float32])


def test_groups_beyond_the_grid_run_in_runs_of_groups(device, monkeypatch):
    """More groups than the grid's y axis takes (65535) run as runs of whole groups, for the scan
    (outputs and gradients) and the decode step (state updated in place through views)."""
    from kernelgen.ops import selective_scan as op
    inputs = make_inputs(device, dim=6, length=20, groups=3, with_z=True, with_h0=True, requires_grad=True)
    run, names = _outputs_and_gradients(inputs)
    whole = run()
    state = torch.randn(2, 6, 5, device=device)
    x, dt, A = inputs["u"][..., -1].detach(), inputs["delta"][..., -1].detach(), inputs["A"].detach()
    B, C, z = inputs["B"][..., -1].detach(), inputs["C"][..., -1].detach(), inputs["z"][..., -1].detach()
    step_state = state.clone()
    step_whole = kernelgen.selective_state_update(step_state, x, dt, A, B, C, inputs["D"].detach(), z,
                                                  inputs["delta_bias"].detach(), True)
    monkeypatch.setattr(op, "MAX_GRID_CHANNELS", 2)
    calls = []
    apply = op._SelectiveScan.apply
    monkeypatch.setattr(op._SelectiveScan, "apply", lambda *a: calls.append(a[3].shape[1]) or apply(*a))
    for name, got, want in zip(["y", "last_state", *names], run(), whole):
        assert_close(name, got, want, 1e-6)
    assert calls == [2, 1]
    runs_state = state.clone()
    step_groups = []
    run_step = op.selective_state_update_run
    monkeypatch.setattr(op, "selective_state_update_run", lambda *a: step_groups.append(a[6].shape[1]) or run_step(*a))
    step_runs = kernelgen.selective_state_update(runs_state, x, dt, A, B, C, inputs["D"].detach(), z,
                                                 inputs["delta_bias"].detach(), True)
    assert step_groups == [2, 1]
    assert_close("decode y", step_runs, step_whole, 1e-6)
    assert_close("decode state", runs_state, step_state, 1e-6)


def test_decode_step_refuses_expanded_states_every_time(device):
    """The in-place check depends on strides, so a call of an already-checked shape with an
    expanded state is still refused (before, the checks' cache let it through and every row wrote
    the same memory); the head form checks its own 4-D state, and a cache passed with
    state_batch_indices is checked before any row is gathered."""
    i = make_inputs(device, length=1)
    x, dt, A, B, C = i["u"][..., 0], i["delta"][..., 0], i["A"], i["B"][..., 0], i["C"][..., 0]
    kernelgen.selective_state_update(torch.randn(2, 6, 5, device=device), x, dt, A, B, C)
    expanded = torch.randn(1, 6, 5, device=device).expand(2, 6, 5)
    with pytest.raises(ValueError, match="must not share memory"):
        kernelgen.selective_state_update(expanded, x, dt, A, B, C)
    heads = torch.randn(2, 3, 1, 5, device=device).expand(2, 3, 2, 5)     # broadcast over headdim
    before = heads.clone()
    with pytest.raises(ValueError, match="must not share memory"):
        kernelgen.selective_state_update(heads, x.view(2, 3, 2), dt.view(2, 3, 2), A.view(3, 2, 5), B, C)
    assert torch.equal(heads, before)
    with pytest.raises(ValueError, match="must not share memory"):
        kernelgen.selective_state_update(torch.randn(1, 6, 5, device=device).expand(4, 6, 5), x, dt, A, B, C,
                                         state_batch_indices=torch.tensor([0, 2], device=device))


def test_chunked_prefill_equals_one_call(device):
    i = make_inputs(device, length=37, groups=2, with_z=True, with_h0=True, requires_grad=True)
    y_one, last_one = call_selective_scan(kernelgen.selective_scan, i, delta_softplus=True, return_last_state=True)
    cut = 20
    first = {k: (v[..., :cut] if k in ("u", "delta", "z", "B", "C") else v) for k, v in i.items()}
    second = {k: (v[..., cut:] if k in ("u", "delta", "z", "B", "C") else v) for k, v in i.items()}
    y1, mid = call_selective_scan(kernelgen.selective_scan, first, delta_softplus=True, return_last_state=True)
    second["initial_state"] = mid
    y2, last_two = call_selective_scan(kernelgen.selective_scan, second, delta_softplus=True, return_last_state=True)
    y_two = torch.cat([y1, y2], dim=-1)
    assert_close("y", y_two, y_one, TOL[torch.float32])
    assert_close("last_state", last_two, last_one, TOL[torch.float32])
    # The gradient flows through the passed state, so the chunked call trains like one call.
    dy = torch.randn_like(y_one)
    wrt = [i["u"], i["A"], i["initial_state"]]
    for grad_one, grad_two in zip(torch.autograd.grad(y_one, wrt, dy), torch.autograd.grad(y_two, wrt, dy)):
        assert_close("gradient", grad_two, grad_one, 1e-5)


# --- constant ("non-variable") B and C --------------------------------------------------------------

def _random_bc(device, layout, dtype, batch, dim, n_states, length, seed):
    """layout "const": [dim, N]; None: [batch, N, L]; an int G: [batch, G, N, L]."""
    gen = torch.Generator().manual_seed(seed)
    size = {"const": (dim, n_states), None: (batch, n_states, length)}.get(layout, (batch, layout, n_states, length))
    return torch.randn(*size, generator=gen).to(dtype).to(device)


def _expanded_for_reference(inputs):
    """The reference takes B, C per batch and step: a constant [dim, N] is broadcast to
    [batch, dim, N, L] (G = dim), so autograd through it sums the gradient over batch and time."""
    batch, dim, length = inputs["u"].shape
    out = dict(inputs)
    for name in ("B", "C"):
        if inputs[name].dim() == 2:
            out[name] = inputs[name][None, :, :, None].expand(batch, dim, inputs[name].shape[1], length)
    return out


# A constant operand runs every channel as its own group (slow under the interpreter): dim=4 here.
@pytest.mark.parametrize("dtype, b_layout, c_layout, const_dtype, dim, length, with_z, with_h0", [
    (torch.float32, "const", "const", torch.float32, 4, 37, False, False),   # both constant: packed once
    (torch.float16, "const", "const", torch.float32, 4, 66, True, True),     # mamba's wtype fp32, two segments
    (torch.float32, "const", 2, torch.float32, 4, 37, True, True),           # constant B, grouped C
    (torch.float16, None, "const", torch.float32, 4, 37, False, True),       # variable B (G=1), constant C
    (torch.float32, 3, "const", torch.float32, 6, 21, True, False),          # 1 < G < dim: copied per channel
    (torch.float16, "const", None, torch.float16, 4, 29, True, False),       # constant B in u's dtype
])
def test_constant_bc_forward_backward(device, dtype, b_layout, c_layout, const_dtype, dim, length, with_z, with_h0):
    inputs = make_inputs(device, dtype, dim=dim, length=length, with_z=with_z, with_h0=with_h0)
    batch, dim, _ = inputs["u"].shape
    for name, layout, seed in (("B", b_layout, 11), ("C", c_layout, 12)):
        inputs[name] = _random_bc(device, layout, const_dtype if layout == "const" else dtype, batch, dim, 5,
                                  length, seed)
    require_grad(inputs)
    names = [k for k, v in inputs.items() if v is not None]
    y, last = call_selective_scan(kernelgen.selective_scan, inputs, delta_softplus=True, return_last_state=True)
    assert y.dtype == dtype and last.dtype == torch.float32
    gen = torch.Generator().manual_seed(1)
    dy = torch.randn(y.shape, generator=gen).to(dtype).to(device)
    dlast = torch.randn(last.shape, generator=gen).to(device)
    grads = torch.autograd.grad((y, last), [inputs[k] for k in names], (dy, dlast))

    ref_inputs = _float64(inputs)
    y_ref, last_ref = call_selective_scan(selective_scan_ref, _expanded_for_reference(ref_inputs), delta_softplus=True,
                            return_last_state=True)
    ref_grads = torch.autograd.grad((y_ref, last_ref), [ref_inputs[k] for k in names], (dy.double(), dlast.double()))
    assert_close("y", y, y_ref, TOL[dtype])
    assert_close("last_state", last, last_ref, TOL[torch.float32] if dtype == torch.float32 else 1e-4)
    for name, grad, ref in zip(names, grads, ref_grads):
        assert grad.dtype == inputs[name].dtype and grad.shape == inputs[name].shape, name
        assert_close(f"d{name}", grad, ref, TOL[dtype] if grad.dtype == dtype else 1e-4)


def test_both_constant_bc_are_packed_once_for_every_batch_row(device):
    # The memory claim of the docstring: no batch factor in the packed buffer when both are constant.
    from kernelgen.ops import selective_scan as op
    batch, dim, n_states, length = 3, 6, 5, 37
    B = _random_bc(device, "const", torch.float32, batch, dim, n_states, length, 1)
    C = _random_bc(device, "const", torch.float32, batch, dim, n_states, length, 2)
    packed = op._pack_per_channel(op._per_channel(B, batch, dim, length), op._per_channel(C, batch, dim, length),
                                  n_states)
    assert packed.shape[:2] == (batch, dim) and packed.stride(0) == 0
    assert torch.equal(packed[2, :, :length, 0, :n_states], B[:, None, :].expand(dim, length, n_states))
    assert torch.equal(packed[1, :, :length, 1, :n_states], C[:, None, :].expand(dim, length, n_states))


def test_parameters_in_the_input_dtype(device):
    # A, D, delta_bias in u's dtype (fp16) instead of fp32: cast in, gradients cast back.
    inputs = make_inputs(device, torch.float16, dim=4, length=29, with_z=True)
    for name in ("A", "D", "delta_bias"):
        inputs[name] = inputs[name].half()
    inputs["B"] = _random_bc(device, "const", torch.float16, 2, 4, 5, 29, 3)
    require_grad(inputs)
    names = [k for k, v in inputs.items() if v is not None]
    y = call_selective_scan(kernelgen.selective_scan, inputs, delta_softplus=True)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).half().to(device)
    grads = torch.autograd.grad(y, [inputs[k] for k in names], dy)
    ref_inputs = _float64(inputs)
    y_ref = call_selective_scan(selective_scan_ref, _expanded_for_reference(ref_inputs), delta_softplus=True)
    ref_grads = torch.autograd.grad(y_ref, [ref_inputs[k] for k in names], dy.double())
    assert y.dtype == torch.float16
    assert_close("y", y, y_ref, TOL[torch.float16])
    for name, grad, ref in zip(names, grads, ref_grads):
        assert grad.dtype == torch.float16, name
        assert_close(f"d{name}", grad, ref, TOL[torch.float16])


@pytest.mark.parametrize("which", ["B", "C", "initial_state"])
def test_complex_weights_need_a_complex_a(device, which):
    # A complex A selects the complex mode (tests/test_selective_scan_complex.py); with a real A the
    # scan is real, so a complex B, C or initial state is refused rather than silently cast.
    i = make_inputs(device, with_h0=True)
    constant = _random_bc(device, "const", torch.float32, 2, 6, 5, 37, 1)
    i[which] = (torch.complex(i["initial_state"], i["initial_state"]) if which == "initial_state"
                else torch.complex(constant, constant))
    with pytest.raises(TypeError, match=rf"{which} must be real; got complex64: with a real A the scan is real"):
        call_selective_scan(kernelgen.selective_scan, i, delta_softplus=True)


# --- decode step: mamba-2's head form and state rows of a cache ------------------------------------

def _head_inputs(device, dtype=torch.float32, batch=2, nheads=4, headdim=3, n_states=5, ngroups=2,
                 state_dtype=torch.float32, tied=False, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def randn(*size, dt=dtype, scale=1.0, shift=0.0):
        return (shift + scale * torch.randn(*size, generator=gen)).to(dt).to(device)

    i = {"state": randn(batch, nheads, headdim, n_states, dt=state_dtype),
         "x": randn(batch, nheads, headdim), "z": randn(batch, nheads, headdim),
         "B": randn(batch, ngroups, n_states), "C": randn(batch, ngroups, n_states)}
    if tied:   # mamba-2 "tied" head dims: one value per head, broadcast with stride 0
        i["dt"] = randn(batch, nheads, scale=0.5)[..., None].expand(batch, nheads, headdim)
        i["dt_bias"] = randn(nheads, dt=torch.float32, scale=0.3, shift=-1.0)[:, None].expand(nheads, headdim)
        i["A"] = (-(0.5 + 2 * torch.rand(nheads, generator=gen))).to(device)[:, None, None].expand(
            nheads, headdim, n_states)
        i["D"] = randn(nheads, dt=torch.float32)[:, None].expand(nheads, headdim)
    else:
        i["dt"] = randn(batch, nheads, headdim, scale=0.5)
        i["dt_bias"] = randn(nheads, headdim, dt=torch.float32, scale=0.3, shift=-1.0)
        i["A"] = (-(0.5 + 2 * torch.rand(nheads, headdim, n_states, generator=gen))).to(device)
        i["D"] = randn(nheads, headdim, dt=torch.float32)
    return i


def _step(fn, i, state, **kwargs):
    return fn(state, i["x"], i["dt"], i["A"], i["B"], i["C"], i["D"], i["z"], i["dt_bias"], True, **kwargs)


def _flattened(i):
    """The head-form inputs as the channel form: dim = nheads·headdim (contiguous copies)."""
    batch, nheads, headdim, n_states = i["state"].shape
    dim = nheads * headdim
    out = {k: i[k].reshape(batch, dim) for k in ("x", "dt", "z")}
    out.update(A=i["A"].reshape(dim, n_states), D=i["D"].reshape(dim), dt_bias=i["dt_bias"].reshape(dim),
               B=i["B"], C=i["C"], state=i["state"].reshape(batch, dim, n_states))
    return out


@pytest.mark.parametrize("dtype, state_dtype, tied, ngroups", [
    (torch.float32, torch.float32, False, 2),
    (torch.float16, torch.float32, True, 4),     # stride-0 A, dt, dt_bias, D; a group per head
    (torch.float32, torch.float16, True, 1),
])
def test_head_form_equals_channel_form(device, dtype, state_dtype, tied, ngroups):
    i = _head_inputs(device, dtype, state_dtype=state_dtype, tied=tied, ngroups=ngroups)
    flat = _flattened(i)
    state = i["state"].clone()
    y = _step(kernelgen.selective_state_update, i, state)
    flat_state = flat["state"].clone()
    y_flat = _step(kernelgen.selective_state_update, flat, flat_state)
    assert y.shape == i["x"].shape and y.dtype == dtype and state.dtype == state_dtype
    torch.testing.assert_close(y.reshape(y_flat.shape), y_flat, rtol=0, atol=0)
    torch.testing.assert_close(state.reshape(flat_state.shape), flat_state, rtol=0, atol=0)
    y_ref, state_ref = _step(selective_state_update_ref, flat, flat["state"])
    tol = TOL[dtype] if state_dtype == torch.float32 else TOL[torch.float16]
    assert_close("y", y.reshape(y_ref.shape), y_ref, tol)
    assert_close("state (in place)", state.reshape(state_ref.shape), state_ref, tol)


def test_head_form_state_without_a_flat_view_is_updated_in_place(device):
    i = _head_inputs(device, ngroups=2)
    batch, nheads, headdim, n_states = i["state"].shape
    # Stored [batch, headdim, nheads, N]: heads × headdim cannot be flattened into one stride.
    state = i["state"].transpose(1, 2).contiguous().transpose(1, 2)
    with pytest.raises(RuntimeError):
        state.view(batch, nheads * headdim, n_states)
    y = _step(kernelgen.selective_state_update, i, state)
    flat = _flattened(i)
    y_ref, state_ref = _step(selective_state_update_ref, flat, flat["state"])
    assert_close("y", y.reshape(y_ref.shape), y_ref, TOL[torch.float32])
    assert_close("state (in place)", state.reshape(state_ref.shape), state_ref, TOL[torch.float32])


def test_head_form_equals_the_last_step_of_the_scan(device):
    # The scan over 9 steps on the flattened channels (group of channel = head's group), and the
    # head-form step from the state after 8 of them, give the same last output.
    batch, nheads, headdim, n_states, ngroups, length = 2, 4, 3, 5, 2, 9
    dim = nheads * headdim
    i = make_inputs(device, batch=batch, dim=dim, length=length, n_states=n_states, groups=ngroups,
                    with_z=True, with_h0=True)
    y_full = call_selective_scan(kernelgen.selective_scan, i, delta_softplus=True)
    head = {k: (v[..., :-1] if k in ("u", "delta", "z", "B", "C") else v) for k, v in i.items()}
    _, state = call_selective_scan(kernelgen.selective_scan, head, delta_softplus=True, return_last_state=True)
    per_head = lambda t: t[..., -1].reshape(batch, nheads, headdim)      # noqa: E731
    y = kernelgen.selective_state_update(
        state.view(batch, nheads, headdim, n_states), per_head(i["u"]), per_head(i["delta"]),
        i["A"].view(nheads, headdim, n_states), i["B"][..., -1], i["C"][..., -1], i["D"].view(nheads, headdim),
        per_head(i["z"]), i["delta_bias"].view(nheads, headdim), True)
    assert_close("y vs the scan's last step", y.reshape(batch, dim), y_full[..., -1], 1e-4)


@pytest.mark.parametrize("form", ["channels", "heads"])
def test_state_batch_indices_update_only_those_rows(device, form):
    i = _head_inputs(device, batch=3, ngroups=2)
    cache = torch.randn(7, *i["state"].shape[1:], generator=torch.Generator().manual_seed(5)).to(device)
    rows = torch.tensor([5, 0, 3], dtype=torch.int32, device=device)
    if form == "channels":
        i = _flattened(i)
        cache = cache.reshape(7, -1, cache.shape[-1])
    before = cache.clone()
    y = _step(kernelgen.selective_state_update, i, cache, state_batch_indices=rows)
    flat = _flattened({**i, "state": before[rows.long()]}) if form == "heads" else {**i, "state": before[rows.long()]}
    y_ref, state_ref = _step(selective_state_update_ref, flat, flat["state"])
    assert_close("y", y.reshape(y_ref.shape), y_ref, TOL[torch.float32])
    assert_close("updated rows", cache[rows.long()].reshape(state_ref.shape), state_ref, TOL[torch.float32])
    untouched = [r for r in range(7) if r not in rows.tolist()]
    assert torch.equal(cache[untouched], before[untouched])


def test_head_form_bad_inputs(device):
    i = _head_inputs(device, nheads=4, ngroups=2)
    with pytest.raises(ValueError, match=r"nheads=4 must be a multiple of the number of groups ngroups=3 of B"):
        kernelgen.selective_state_update(i["state"], i["x"], i["dt"], i["A"], torch.randn(2, 3, 5), torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"A must be \[nheads=4, headdim=3, N=5\]; got \[12, 5\]"):
        kernelgen.selective_state_update(i["state"], i["x"], i["dt"], i["A"].reshape(12, 5), i["B"], i["C"])
    with pytest.raises(ValueError, match=r"x must be \[batch=2, nheads=4, headdim=3\]; got \[2, 12\]"):
        kernelgen.selective_state_update(i["state"], i["x"].reshape(2, 12), i["dt"], i["A"], i["B"], i["C"])
    with pytest.raises(TypeError, match=r"state_batch_indices must be an integer tensor \[batch\]; got float32"):
        kernelgen.selective_state_update(i["state"], i["x"], i["dt"], i["A"], i["B"], i["C"],
                                         state_batch_indices=torch.zeros(2, device=device))
    with pytest.raises(ValueError, match=r"state_batch_indices must be \[batch=2\]; got \[3\]"):
        kernelgen.selective_state_update(i["state"], i["x"], i["dt"], i["A"], i["B"], i["C"],
                                         state_batch_indices=torch.arange(3, device=device))
    with pytest.raises(TypeError, match=r"A must be real; got complex64: the decode step has no complex mode"):
        kernelgen.selective_state_update(i["state"], i["x"], i["dt"], torch.complex(i["A"], i["A"]), i["B"], i["C"])


# --- bad inputs ----------------------------------------------------------------------------------

def _bad(device, **changes):
    i = make_inputs(device, groups=2)
    i.update(changes)
    return i


@pytest.mark.parametrize("change, error, match", [
    (lambda i: {"A": i["A"][:5, :3]}, ValueError, r"A must be \[dim=6, N\]; got \[5, 3\]"),
    (lambda i: {"delta": i["delta"].half()}, TypeError, r"delta must have the dtype of u \(float32\); got float16"),
    (lambda i: {"B": i["B"][..., :-1]}, ValueError, r"B must be \[batch=2, G, N=5, L=37\]; got \[2, 2, 5, 36\]"),
    (lambda i: {"B": torch.randn(2, 4, 5, 37), "C": torch.randn(2, 4, 5, 37)}, ValueError,
     r"dim=6 must be a multiple of the number of groups G=4 of B"),
    (lambda i: {"A": -torch.rand(6, 300), "B": torch.randn(2, 300, 37), "C": torch.randn(2, 300, 37)},
     ValueError, r"state size N \(A.shape\[1\]\) must be in \[1, 256\]; got 300"),
    (lambda i: {"u": i["u"].to(torch.int32)}, TypeError, r"u must have dtype in \(float32, float16, bfloat16\); got int32"),
    (lambda i: {"D": torch.complex(i["D"], i["D"])}, TypeError, r"D must be real"),
    (lambda i: {"D": torch.randn(7)}, ValueError, r"D must be \[dim=6\]; got \[7\]"),
    (lambda i: {"C": i["C"][:, :1]}, ValueError, r"B and C must have the same number of groups"),
    (lambda i: {"B": i["B"][:, 0, :3]}, ValueError, r"B must be \[batch=2, N=5, L=37\]; got \[2, 3, 37\]"),
    (lambda i: {"z": i["u"].to("meta")}, ValueError, r"z is on meta but u is on"),
])
def test_bad_inputs_give_clear_errors(device, change, error, match):
    i = make_inputs(device, groups=2)
    i.update(change(i))
    with pytest.raises(error, match=match):
        call_selective_scan(kernelgen.selective_scan, i, delta_softplus=True)


def test_a_in_half_precision_is_cast_not_refused(device):
    i = make_inputs(device)
    half_a = dict(i, A=i["A"].half())
    y = call_selective_scan(kernelgen.selective_scan, half_a, delta_softplus=True)
    y_ref = call_selective_scan(selective_scan_ref, dict(i, A=i["A"].half().float()), delta_softplus=True)
    assert_close("y", y, y_ref, TOL[torch.float32])


def test_decode_step_bad_inputs(device):
    state = torch.randn(2, 6, 5, device=device)
    x, A = torch.randn(2, 6, device=device), -torch.rand(6, 5, device=device)
    B = torch.randn(2, 5, device=device)
    with pytest.raises(ValueError, match=r"dt must be \[batch=2, dim=6\]; got \[2, 5\]"):
        kernelgen.selective_state_update(state, x, x[:, :5], A, B, B)
    with pytest.raises(TypeError, match=r"dt must have the dtype of x"):
        kernelgen.selective_state_update(state, x, x.half(), A, B, B)
    with pytest.raises(ValueError, match=r"multiple of the number of groups G=4 of B"):
        kernelgen.selective_state_update(state, x, x, A, torch.randn(2, 4, 5), torch.randn(2, 4, 5))
    with pytest.raises(TypeError, match=r"A must be a torch.Tensor \[dim, N\]; got NoneType"):
        kernelgen.selective_state_update(state, x, x, None, B, B)
    # written in place: rows of an expanded state would race on one memory location
    with pytest.raises(ValueError, match=r"state is updated in place, so its elements must not share memory"):
        kernelgen.selective_state_update(state[:1].expand(2, 6, 5), x, x, A, B, B)


@pytest.mark.parametrize("groups", [None, 2])
def test_batch_over_the_grid_limit_runs_in_row_groups(device, monkeypatch, groups):
    """The kernels put the batch on a grid axis CUDA caps at 65535: bigger batches run in groups of
    rows. With the cap patched to 2, a batch of 5 (groups 2, 2, 1) against float64, forward and
    backward in every input, and the decode step against its reference."""
    import kernelgen.ops.selective_scan as op
    monkeypatch.setattr(op, "MAX_GRID_BATCH", 2)
    launched = []   # the batch of every scan and decode call that reaches the kernels
    scan_apply, step_run = op._SelectiveScan.apply, op.selective_state_update_run
    monkeypatch.setattr(op._SelectiveScan, "apply", lambda u, *a: launched.append(u.shape[0]) or scan_apply(u, *a))
    monkeypatch.setattr(op, "selective_state_update_run",
                        lambda config, state, *a: launched.append(state.shape[0]) or step_run(config, state, *a))
    i = make_inputs(device, batch=5, length=21, groups=groups, with_z=True, with_h0=True, requires_grad=True)
    y, last = call_selective_scan(kernelgen.selective_scan, i, delta_softplus=True, return_last_state=True)
    y_ref, last_ref = call_selective_scan(selective_scan_ref, i, delta_softplus=True, return_last_state=True)
    assert_close("y", y, y_ref, TOL[torch.float32])
    assert_close("last_state", last, last_ref, TOL[torch.float32])
    names = [name for name, value in i.items() if value is not None]
    weight_y, weight_last = torch.randn_like(y_ref), torch.randn_like(last_ref)
    grads = torch.autograd.grad((y * weight_y).sum() + (last * weight_last).sum(), [i[n] for n in names])
    grads_ref = torch.autograd.grad((y_ref * weight_y).sum() + (last_ref * weight_last).sum(), [i[n] for n in names])
    for name, grad, grad_ref in zip(names, grads, grads_ref):
        assert_close(f"d{name}", grad, grad_ref, 1e-4)

    state = torch.randn(5, 6, 5, device=device)
    x, dt, z = (torch.randn(5, 6, device=device) for _ in range(3))
    B = torch.randn(5, 5, device=device) if groups is None else torch.randn(5, groups, 5, device=device)
    C = torch.randn_like(B)
    A = -torch.rand(6, 5, device=device)
    expected_y, expected_state = selective_state_update_ref(state.clone(), x, dt, A, B, C, None, z, None, True)
    y = kernelgen.selective_state_update(state, x, dt, A, B, C, z=z, dt_softplus=True)
    assert_close("step y", y, expected_y, TOL[torch.float32])
    assert_close("step state", state, expected_state, TOL[torch.float32])
    assert launched == [2, 2, 1, 2, 2, 1]


def test_decode_step_fast_path_keeps_checks_and_casts(device):
    # The op checks a call signature once; later calls with it skip the checks but must still
    # cast non-fp32 / non-contiguous parameters, and a new signature must still be checked.
    state = torch.randn(2, 6, 5, device=device)
    x, dt = torch.randn(2, 6, device=device), 0.3 * torch.randn(2, 6, device=device)
    A, B, C = -torch.rand(5, 6, device=device).t(), torch.randn(2, 5, device=device), torch.randn(2, 5, device=device)
    D = torch.randn(6, device=device, dtype=torch.float16)
    for _ in range(2):
        expected_y, expected_state = selective_state_update_ref(state.clone(), x, dt, A, B, C, D.float())
        y = kernelgen.selective_state_update(state, x, dt, A, B, C, D)
        assert_close("y", y, expected_y, TOL[torch.float32])
        assert_close("state", state, expected_state, TOL[torch.float32])
    with pytest.raises(ValueError, match=r"dt must be \[batch=2, dim=6\]; got \[2, 5\]"):
        kernelgen.selective_state_update(state, x, dt[:, :5], A, B, C, D)


# --- templates -----------------------------------------------------------------------------------

def _run_template(template, config, shape, dtype, flags, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    inputs = template.make_inputs(shape, dtype, flags, device, gen)
    outputs = template.allocate_outputs(inputs, shape, dtype, flags)
    for buffer in outputs.values():
        buffer.fill_(float("nan"))
    template.launch(config, inputs, outputs, shape, flags)
    reference = template.reference(inputs, shape, flags)
    for name, expected in reference.items():
        assert_close(f"{template.name} {config} {name}", outputs[name], expected, template.tolerance(dtype, name))


@pytest.mark.parametrize("template", [ss.FWD, ss.BWD, ss.STEP], ids=lambda t: t.name)
def test_template_default_on_cpu_workload(device, template):
    for shape in template.cpu_workload:
        for flags in template.flags:
            _run_template(template, template.default_config(shape), shape, "fp32", flags, device)


FWD_CONFIGS = [
    {"backend": "triton", "scan": "seq", "block_d": 8, "block_l": 4, "num_warps": 1, "exp_fma": 2},
    {"backend": "triton", "scan": "seq", "block_d": 4, "block_l": 16, "num_warps": 1, "exp_fma": 4},
    {"backend": "triton", "scan": "assoc", "block_d": 4, "block_l": 8, "num_warps": 1, "exp_fma": 0},
    {"backend": "triton", "scan": "assoc", "block_d": 4, "block_l": 32, "num_warps": 2, "exp_fma": 0},
    {"backend": "triton", "scan": "tile", "block_d": 4, "block_l": 8, "num_warps": 1, "exp_fma": 0},
    {"backend": "triton", "scan": "tile", "block_d": 4, "block_l": 16, "num_warps": 1, "exp_fma": 0},
]


@pytest.mark.parametrize("config", FWD_CONFIGS, ids=lambda c: f"{c['scan']}-d{c['block_d']}-l{c['block_l']}")
def test_fwd_template_configs(device, config):
    shape = ss.FWD.cpu_workload[0]
    assert ss.FWD.check_config(config, shape) is None
    assert config in ss.FWD.grid(shape)
    _run_template(ss.FWD, config, shape, "fp16", "z", device)


TILE = {"backend": "triton", "scan": "tile", "block_d": 4, "block_l": 8, "num_warps": 1, "exp_fma": 0}


@pytest.mark.parametrize("dtype, length, groups, with_d, with_z, with_bias, softplus, with_h0", [
    (torch.float32, 37, 3, True, True, True, True, True),       # everything, ragged L, 3 groups
    (torch.float16, 21, None, False, False, True, False, False),  # bias without softplus, bare otherwise
])
def test_tile_scan_every_option(device, dtype, length, groups, with_d, with_z, with_bias, softplus, with_h0):
    """The "tile" forward (associative scan over [block_d, N, block_l] tiles, carried across
    chunks) against the reference, and its training-mode checkpoints against the "seq" ones."""
    i = make_inputs(device, dtype, length=length, groups=groups, with_d=with_d, with_z=with_z,
                    with_bias=with_bias, with_h0=with_h0, softplus=softplus)
    B, C = (i["B"], i["C"]) if groups is not None else (i["B"][:, None], i["C"][:, None])
    batch, dim, _ = i["u"].shape
    results = {}
    for name, config in (("tile", TILE), ("seq", {**TILE, "scan": "seq", "exp_fma": 0})):
        out = torch.empty_like(i["u"])
        last = torch.empty(batch, dim, 5, device=device)
        ckpt = torch.full((batch, dim, -(-length // ss.CHECKPOINT_STEPS), 5), float("nan"), device=device)
        ss.selective_scan_fwd(config, i["u"], i["delta"], i["A"], B, C, i["D"], i["z"], i["delta_bias"],
                              softplus, i["initial_state"], out, last, ckpt)
        results[name] = out, last, ckpt
    ref_out, ref_last = selective_scan_ref(
        *(v.double() if v is not None else None for v in (i["u"], i["delta"], i["A"], i["B"], i["C"], i["D"], i["z"],
                                                          i["delta_bias"])),
        softplus, return_last_state=True,
        initial_state=i["initial_state"].double() if with_h0 else None)
    out, last, ckpt = results["tile"]
    assert_close("tile out", out, ref_out, TOL[dtype])
    assert_close("tile last_state", last, ref_last, TOL[torch.float32])
    torch.testing.assert_close(ckpt, results["seq"][2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config, shape", [
    ({"block_d": 8, "chunk": 4, "num_warps": 1, "exp_fma": 2, "channel_sum": "lanes"}, None),
    ({"block_d": 4, "chunk": 8, "num_warps": 1, "exp_fma": 0, "channel_sum": "lanes"}, None),
    # channel sums on tensor cores: needs a 16-channel block
    ({"block_d": 16, "chunk": 2, "num_warps": 1, "exp_fma": 0, "channel_sum": "mma"},
     {"batch": 1, "dim": 16, "L": 20, "N": 4}),
], ids=["chunk4-fma", "chunk8", "mma"])
def test_bwd_template_configs(device, config, shape):
    shape = shape or ss.BWD.cpu_workload[0]
    assert ss.BWD.check_config(config, shape) is None
    assert config in ss.BWD.grid(shape)
    _run_template(ss.BWD, config, shape, "fp32", "z", device)


def test_step_template_configs(device):
    shape = ss.STEP.cpu_workload[0]
    for config in ss.STEP.grid(shape)[:4]:
        _run_template(ss.STEP, config, shape, "fp16", "z", device)


@pytest.mark.parametrize("template", [ss.FWD, ss.BWD, ss.STEP], ids=lambda t: t.name)
def test_grid_walks_one_product_per_backend(template, monkeypatch):
    """The grid (the tuner's grid sampler and its space size) walks each backend's knobs alone:
    same configs as the joint product, which for the forward is ~10M combinations."""
    subspaces = template.subspaces()
    assert [s["backend"] for s in subspaces] == [["triton"], ["cuda"]]
    assert set().union(*subspaces) == set(template.space)
    assert not (set(subspaces[0]) & set(subspaces[1])) - {"backend"}
    for space in subspaces:
        assert all(set(values) <= set(template.space[k]) for k, values in space.items())
    if template is not ss.FWD:   # small enough to compare with the joint product
        monkeypatch.setattr(ss, "cuda_unavailable", lambda: None)   # count the CUDA configs too
        shape = template.workload[0]
        joint = {tuple(sorted(template.canonical(dict(zip(template.space, values))).items()))
                 for values in itertools.product(*template.space.values())}
        joint = {c for c in joint if template.check_config(dict(c), shape) is None}
        assert {tuple(sorted(c.items())) for c in template.grid(shape)} == joint


def test_check_config_rejects_impossible_configs():
    shape = {"batch": 8, "dim": 2048, "L": 4096, "N": 16}
    seq = {"backend": "triton", "scan": "seq", "block_d": 32, "block_l": 8, "num_warps": 1, "exp_fma": 0}
    assert ss.FWD.check_config(seq, shape) is None
    assert "block_l 32 > 16" in ss.FWD.check_config({**seq, "block_l": 32}, shape)
    assert "spill" in ss.FWD.check_config({**seq, "block_d": 128}, shape)
    assert "idle" in ss.FWD.check_config({**seq, "block_d": 4, "num_warps": 8}, shape)
    assert "must be below N" in ss.FWD.check_config({**seq, "exp_fma": 4}, {**shape, "N": 4})
    assert "N must be in" in ss.FWD.check_config(seq, {**shape, "N": 300})
    assoc = {"backend": "triton", "scan": "assoc", "block_d": 32, "block_l": 64, "num_warps": 1, "exp_fma": 0}
    assert "spill" in ss.FWD.check_config(assoc, shape)
    tile = {**assoc, "scan": "tile", "block_d": 4, "block_l": 16}
    assert ss.FWD.check_config(tile, shape) is None
    assert "spill" in ss.FWD.check_config({**tile, "block_d": 16, "block_l": 32, "num_warps": 4}, shape)
    assert "too short" in ss.FWD.check_config({**tile, "block_l": 4}, shape)
    assert "idle" in ss.FWD.check_config({**tile, "block_l": 8, "num_warps": 8}, shape)
    assert "spill" in ss.BWD.check_config({"block_d": 128, "chunk": 8, "num_warps": 1, "exp_fma": 0,
                                           "channel_sum": "lanes"}, shape)
    assert "tl.dot sizes" in ss.BWD.check_config({"block_d": 8, "chunk": 2, "num_warps": 1, "exp_fma": 0,
                                                  "channel_sum": "mma"}, shape)
    if ss.cuda_unavailable() is not None:
        assert "CUDA backend unavailable" in ss.FWD.check_config({"backend": "cuda"}, shape)
        assert "CUDA backend unavailable" in ss.STEP.check_config({"backend": "cuda"}, {"batch": 1, "dim": 64, "N": 16})
        assert all(c["backend"] == "triton" for c in ss.FWD.grid(ss.FWD.cpu_workload[0]))


def test_canonical_keeps_only_the_chosen_backends_parameters():
    config = {name: values[0] for name, values in ss.FWD.space.items()}
    triton_config = ss.FWD.canonical({**config, "backend": "triton"})
    assert set(triton_config) == {"backend", *ss.FWD_TRITON_SPACE}
    cuda_config = ss.FWD.canonical({**config, "backend": "cuda"})    # layout "warp": the first value
    assert set(cuda_config) == {"backend", "layout", "threads", "items_per_thread", "state_unroll", "occupancy"}
    channel = ss.FWD.canonical({**config, "backend": "cuda", "layout": "channel"})
    assert set(channel) == {"backend", "layout", "threads", "occupancy", "split", "chunk", "poly", "steps"}
    assert ss.FWD.canonical({**config, "scan": "assoc", "exp_fma": 4})["exp_fma"] == 0
    assert ss.FWD.canonical({**config, "scan": "tile", "exp_fma": 4})["exp_fma"] == 0
    step = {name: values[0] for name, values in ss.STEP.space.items()}
    assert set(ss.STEP.canonical({**step, "backend": "triton"})) == {"backend", *ss.STEP_TRITON_SPACE}


def test_a_shape_no_config_runs_is_refused_by_name():
    from kernelgen.templates import get_template
    for name in ("selective_scan.fwd", "selective_scan.bwd"):
        with pytest.raises(ValueError, match=f"{name}: no config runs .*N must be in \\[1, 256\\]; got 300"):
            get_template(name).default_config({"batch": 1, "dim": 64, "L": 64, "N": 300})


def test_every_default_config_is_valid():
    for template in (ss.FWD, ss.BWD, ss.STEP):
        for shape in template.workload + template.cpu_workload:
            for n_states in (1, 16, 100, 256):
                sized = {**shape, "N": n_states}
                assert template.check_config(template.default_config(sized), sized) is None, (template.name, sized)


@pytest.mark.parametrize("cuda", [False, True])
def test_candidates_are_every_backends_default(monkeypatch, cuda):
    # Every TPE study measures Triton against CUDA (both forward layouts), whichever is the default.
    monkeypatch.setattr(ss, "cuda_unavailable", lambda: None if cuda else "no GPU here")
    big, small = {"batch": 8, "dim": 2048, "L": 4096, "N": 16}, {"batch": 2, "dim": 1536, "L": 2048, "N": 16}
    cases = [(ss.FWD, big, {("triton", None), ("cuda", "channel"), ("cuda", "warp")}),
             (ss.FWD, small, {("triton", None), ("cuda", "warp")}),   # the channel default needs 4096 channels
             (ss.BWD, big, {("triton", None), ("cuda", "channel")}), (ss.BWD, small, {("triton", None), ("cuda", "channel")})]
    for template, shape, backends in cases:
        default = template.default_config(shape)
        found = set()
        for candidate in template.candidates(shape):
            config = template.canonical({**default, **candidate})   # as the study merges them
            assert template.check_config(config, shape) is None, config
            found.add((config.get("backend", "triton"), config.get("layout")))
        assert found == (backends if cuda else {("triton", None)}), (template.name, shape, found)


def test_cuda_config_falls_back_to_triton_where_cuda_cannot_run(device):
    # A tuned file may name the CUDA backend; on a machine without it (or with mixed input dtypes,
    # outside the CUDA kernels' contract) the op still runs, on the Triton default.
    if ss.cuda_unavailable() is None and device == "cuda":
        pytest.skip("the CUDA backend is available here")
    i = make_inputs(device, groups=2)
    B, C = i["B"], i["C"]
    out = torch.empty_like(i["u"])
    ss.selective_scan_fwd({"backend": "cuda"}, i["u"], i["delta"], i["A"], B, C, i["D"], None, i["delta_bias"],
                          True, None, out, None)
    assert_close("y", out, call_selective_scan(selective_scan_ref, i, delta_softplus=True), TOL[torch.float32])


# --- GPU ----------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("with_z", [False, True])
def test_gpu_forward_target_shape_bf16(backend, with_z):
    if backend == "cuda" and ss.cuda_unavailable() is not None:
        pytest.skip(ss.cuda_unavailable())
    shape = {"batch": 8, "dim": 2048, "L": 4096, "N": 16}
    flags = "z" if with_z else ""
    config = ss.FWD.triton_default_config(shape)
    if backend == "cuda":
        config = {"backend": "cuda", **ss._cuda.cuda_default_config(shape, "fwd")}
    small = ss.FWD.verification_shape(shape)     # full length, fewer channels: the reference is a loop
    _run_template(ss.FWD, config, small, "bf16", flags, "cuda")
    gen = torch.Generator().manual_seed(0)
    inputs = ss.FWD.make_inputs(shape, "bf16", flags, "cuda", gen)
    outputs = ss.FWD.allocate_outputs(inputs, shape, "bf16", flags)
    ss.FWD.launch(config, inputs, outputs, shape, flags)   # the full shape runs (no reference)
    torch.cuda.synchronize()
    assert torch.isfinite(outputs["out"].float()).all()


@pytest.mark.gpu
def test_gpu_backends_agree_at_target_shape():
    if ss.cuda_unavailable() is not None:
        pytest.skip(ss.cuda_unavailable())
    shape = {"batch": 8, "dim": 2048, "L": 4096, "N": 16}
    gen = torch.Generator().manual_seed(0)
    inputs = ss.FWD.make_inputs(shape, "bf16", "z", "cuda", gen)
    results = []
    for config in (ss.FWD.triton_default_config(shape), {"backend": "cuda", **ss._cuda.cuda_default_config(shape, "fwd")}):
        outputs = ss.FWD.allocate_outputs(inputs, shape, "bf16", "z")
        ss.FWD.launch(config, inputs, outputs, shape, "z")
        results.append(outputs)
    assert_close("out", results[1]["out"], results[0]["out"], 1e-2)
    assert_close("last_state", results[1]["last_state"], results[0]["last_state"], 1e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("flags", ["", "z"])
def test_gpu_backward_bf16(flags):
    shape = {"batch": 2, "dim": 256, "L": 1000, "N": 16}
    _run_template(ss.BWD, ss.BWD.default_config(shape), ss.BWD.verification_shape(shape), "bf16", flags, "cuda")
    for config in ss.BWD.grid(shape)[:: max(1, len(ss.BWD.grid(shape)) // 6)]:
        _run_template(ss.BWD, config, {**shape, "dim": 64}, "bf16", flags, "cuda")


@pytest.mark.gpu
def test_gpu_op_autograd_bf16():
    i = make_inputs("cuda", torch.bfloat16, batch=2, dim=128, length=300, n_states=16, groups=2, with_z=True,
                    with_h0=True, requires_grad=True)
    names = [k for k, v in i.items() if v is not None]
    y, last = call_selective_scan(kernelgen.selective_scan, i, delta_softplus=True, return_last_state=True)
    dy, dlast = torch.randn_like(y), torch.randn_like(last)
    grads = torch.autograd.grad((y, last), [i[k] for k in names], (dy, dlast))
    ref_inputs = _float64(i)
    y_ref, last_ref = call_selective_scan(selective_scan_ref, ref_inputs, delta_softplus=True, return_last_state=True)
    ref_grads = torch.autograd.grad((y_ref, last_ref), [ref_inputs[k] for k in names], (dy.double(), dlast.double()))
    assert_close("y", y, y_ref, TOL[torch.bfloat16])
    for name, grad, ref in zip(names, grads, ref_grads):
        assert_close(f"d{name}", grad, ref, TOL[torch.bfloat16])


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_gpu_decode_step_target_shape(backend):
    if backend == "cuda" and ss.cuda_unavailable() is not None:
        pytest.skip(ss.cuda_unavailable())
    shape = {"batch": 256, "dim": 4096, "N": 16}
    config = ss.STEP.default_config(shape)
    if backend == "cuda":
        config = {"backend": "cuda", **ss._cuda.cuda_default_config(shape, "step")}
    _run_template(ss.STEP, config, shape, "bf16", "z", "cuda")
