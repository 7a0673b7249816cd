"""kernelgen.selective_scan with complex weights (mamba-ssm's complex64 wtype) vs the complex128 reference.

Shapes as mamba-ssm's own test (batch 2, dim 4, N 8) with ragged L = 37 and L = 128. Relative errors
‖out − ref‖/‖ref‖, by the dtype of the compared tensor: fp32/complex64 1e-5 (fp32 math, chunked
log-space scan), fp16 3e-3 and bf16 2e-2 (the tensor rounded to that dtype).
"""
import math

import pytest
import torch

import kernelgen
from kernelgen.ops import selective_scan_complex as complex_mode
from kernelgen.reference.selective_scan import selective_scan_complex_ref, selective_scan_ref
from reference_utils import assert_close as assert_real_close, call_selective_scan, require_grad

TOL = {torch.float32: 1e-5, torch.complex64: 1e-5, torch.complex128: 1e-5, torch.float16: 3e-3,
       torch.bfloat16: 2e-2}
BATCH, DIM, N_STATES = 2, 4, 8


def assert_close(name, out, ref, tol):
    """The shared relative-error check, on (real, imaginary) pairs for complex tensors (its float64
    cast alone would drop the imaginary parts)."""
    if out.is_complex() or ref.is_complex():
        out, ref = (torch.view_as_real(t.to(torch.complex128)) for t in (out.detach(), ref.detach()))
    assert_real_close(name, out, ref, tol)


def _weight(gen, layout, dtype, length):
    """B or C. layout "const": complex64 [dim, N]; "const_real": fp32 [dim, N]; an int G: real
    [batch, G, N, 2L] in ``dtype``; 0: real [batch, N, 2L] (no group axis)."""
    if layout == "const":
        return torch.randn(DIM, N_STATES, generator=gen, dtype=torch.complex64)
    if layout == "const_real":
        return torch.randn(DIM, N_STATES, generator=gen)
    size = (BATCH, N_STATES, 2 * length) if layout == 0 else (BATCH, layout, N_STATES, 2 * length)
    return torch.randn(*size, generator=gen).to(dtype)


def make_inputs(dtype=torch.float32, length=37, b_layout=0, c_layout=0, softplus=True, with_d=True,
                with_z=True, with_bias=True, with_h0=False, seed=0, requires_grad=True):
    """Random complex-mode inputs, like mamba-ssm's test: A = -0.5·rand (both parts); without
    softplus, delta and delta_bias are drawn positive, as a step size must be."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*size, dt=dtype):
        return torch.randn(*size, generator=gen).to(dt)

    inputs = {
        "u": randn(BATCH, DIM, length),
        "delta": (0.5 * torch.rand(BATCH, DIM, length, generator=gen) + (0 if softplus else 0.05)).to(dtype),
        "A": -0.5 * torch.rand(DIM, N_STATES, generator=gen, dtype=torch.complex64),
        "B": _weight(gen, b_layout, dtype, length),
        "C": _weight(gen, c_layout, dtype, length),
        "D": randn(DIM, dt=torch.float32) if with_d else None,
        "z": randn(BATCH, DIM, length) if with_z else None,
        "delta_bias": 0.5 * torch.rand(DIM, generator=gen) if with_bias else None,
        "initial_state": randn(BATCH, DIM, N_STATES, dt=torch.complex64) if with_h0 else None,
    }
    return require_grad(inputs) if requires_grad else inputs


def _widened(inputs):
    """The same values in float64 / complex128, as fresh leaves for the reference's autograd."""
    def widen(value):
        wide = value.detach().to(torch.complex128 if value.is_complex() else torch.float64)
        return wide.requires_grad_(value.requires_grad)
    return {k: (widen(v) if v is not None else None) for k, v in inputs.items()}


def _cotangents(y, last, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(y.shape, generator=gen).to(y.dtype), torch.randn(last.shape, generator=gen, dtype=last.dtype)


def _check_against_reference(inputs, softplus):
    names = [k for k, v in inputs.items() if v is not None]
    y, last = call_selective_scan(kernelgen.selective_scan, inputs, delta_softplus=softplus, return_last_state=True)
    dy, dlast = _cotangents(y, last)
    grads = torch.autograd.grad((y, last), [inputs[k] for k in names], (dy, dlast))

    wide = _widened(inputs)
    y_ref, last_ref = call_selective_scan(selective_scan_complex_ref, wide, delta_softplus=softplus, return_last_state=True)
    ref_grads = torch.autograd.grad((y_ref, last_ref), [wide[k] for k in names],
                                    (dy.double(), dlast.to(torch.complex128)))
    assert y.dtype == inputs["u"].dtype and last.dtype == torch.complex64 and last.shape == (BATCH, DIM, N_STATES)
    assert_close("y", y, y_ref, TOL[y.dtype])
    assert_close("last_state", last, last_ref, TOL[torch.complex64])
    for name, grad, ref in zip(names, grads, ref_grads):
        assert grad.dtype == inputs[name].dtype and grad.shape == inputs[name].shape, name
        assert_close(f"d{name}", grad, ref, TOL[grad.dtype])


# --- forward and backward against the reference ---------------------------------------------------

@pytest.mark.parametrize("dtype, length, b_layout, c_layout, softplus, with_d, with_z, with_bias, with_h0", [
    (torch.float32, 37, 0, 0, True, True, True, True, False),              # mamba-ssm's call, G = 1
    (torch.float32, 128, 2, 2, True, True, True, True, True),              # groups, initial state
    (torch.float32, 37, 1, 1, False, False, False, True, True),            # [batch, 1, N, 2L], no softplus
    (torch.float32, 128, "const", "const", False, True, False, False, True),   # both constant (complex)
    (torch.float32, 37, "const", 2, True, False, True, True, False),       # constant B, grouped C
    (torch.float32, 37, 0, "const_real", True, True, False, True, False),  # real constant C, promoted
    (torch.float16, 37, 2, "const", False, True, True, True, True),        # fp16 activations, variable B fp16
    (torch.bfloat16, 128, 0, 0, True, True, True, True, False),            # bf16 activations
])
def test_forward_backward_match_reference(dtype, length, b_layout, c_layout, softplus, with_d, with_z, with_bias,
                                          with_h0):
    inputs = make_inputs(dtype, length, b_layout, c_layout, softplus, with_d, with_z, with_bias, with_h0)
    _check_against_reference(inputs, softplus)
    y = call_selective_scan(kernelgen.selective_scan, inputs, delta_softplus=softplus)
    assert isinstance(y, torch.Tensor) and y.shape == (BATCH, DIM, length)


def test_a_in_complex128_is_cast_and_its_gradient_cast_back():
    inputs = make_inputs(length=37, with_h0=True)
    inputs["A"] = inputs["A"].detach().to(torch.complex128).requires_grad_(True)
    inputs["initial_state"] = inputs["initial_state"].detach().real.requires_grad_(True)   # a real state: promoted
    _check_against_reference(inputs, softplus=True)


@pytest.mark.parametrize("length", [0, 1])
def test_edge_lengths(length):
    inputs = make_inputs(length=length, with_h0=True)
    y, last = call_selective_scan(kernelgen.selective_scan, inputs, delta_softplus=True, return_last_state=True)
    y_ref, last_ref = call_selective_scan(selective_scan_complex_ref, _widened(inputs), delta_softplus=True, return_last_state=True)
    assert y.shape == (BATCH, DIM, length)
    if length:
        assert_close("y", y, y_ref, TOL[torch.float32])
    assert_close("last_state", last, last_ref, TOL[torch.complex64])
    (dh0,) = torch.autograd.grad(last.abs().sum(), [inputs["initial_state"]])
    assert torch.isfinite(torch.view_as_real(dh0)).all()


# --- the conventions, checked without the complex reference ---------------------------------------

def test_real_valued_weights_give_twice_the_real_scan():
    # Zero imaginary parts make every state real: y = 2·(the real scan) before D, the state is real,
    # and a variable B/C's real parts are its even entries (mamba-ssm's (real, imaginary) pairs).
    inputs = make_inputs(length=37, b_layout=2, c_layout=2, with_d=False, with_z=False, requires_grad=False)
    inputs["A"] = torch.complex(inputs["A"].real, torch.zeros_like(inputs["A"].real))
    for name in ("B", "C"):
        inputs[name][..., 1::2] = 0
    y, last = call_selective_scan(kernelgen.selective_scan, inputs, delta_softplus=True, return_last_state=True)
    real = dict(inputs, A=inputs["A"].real, B=inputs["B"][..., 0::2], C=inputs["C"][..., 0::2])
    y_real, last_real = call_selective_scan(selective_scan_ref, _widened(real), delta_softplus=True, return_last_state=True)
    assert_close("y", y, 2 * y_real, TOL[torch.float32])
    assert_close("last_state", last.real, last_real, TOL[torch.float32])
    assert last.imag.abs().max() == 0


def test_variable_pairs_along_time_equal_a_constant_weight():
    # G = dim groups of one channel: a variable B whose step t is view_as_real(B_const) at 2t, 2t+1
    # must act as the constant complex B_const.
    length = 37
    inputs = make_inputs(length=length, b_layout="const", c_layout="const", requires_grad=False)
    y_const = call_selective_scan(kernelgen.selective_scan, inputs, delta_softplus=True)
    variable = dict(inputs)
    for name in ("B", "C"):
        per_step = inputs[name][None, :, :, None].expand(BATCH, DIM, N_STATES, length)
        variable[name] = torch.view_as_real(per_step).flatten(-2)        # [batch, G=dim, N, 2L]
    y_variable = call_selective_scan(kernelgen.selective_scan, variable, delta_softplus=True)
    assert_close("y", y_variable, y_const, 1e-6)


def test_chunked_prefill_equals_one_call():
    inputs = make_inputs(length=128, b_layout=2, c_layout=2, with_h0=True)
    y_one, last_one = call_selective_scan(kernelgen.selective_scan, inputs, delta_softplus=True, return_last_state=True)
    cut = 53
    first, second = dict(inputs), dict(inputs)
    for name in ("u", "delta", "z"):
        first[name], second[name] = inputs[name][..., :cut], inputs[name][..., cut:]
    for name in ("B", "C"):   # the time axis holds two reals per step
        first[name], second[name] = inputs[name][..., :2 * cut], inputs[name][..., 2 * cut:]
    y1, mid = call_selective_scan(kernelgen.selective_scan, first, delta_softplus=True, return_last_state=True)
    second["initial_state"] = mid
    y2, last_two = call_selective_scan(kernelgen.selective_scan, second, delta_softplus=True, return_last_state=True)
    y_two = torch.cat([y1, y2], dim=-1)
    assert_close("y", y_two, y_one, TOL[torch.float32])
    assert_close("last_state", last_two, last_one, TOL[torch.complex64])
    dy = torch.randn(y_one.shape, generator=torch.Generator().manual_seed(2))
    wrt = [inputs["u"], inputs["A"], inputs["B"], inputs["initial_state"]]
    for grad_one, grad_two in zip(torch.autograd.grad(y_one, wrt, dy), torch.autograd.grad(y_two, wrt, dy)):
        assert_close("gradient", grad_two, grad_one, TOL[torch.float32])


# --- chunk length: strong decay and fast rotation ------------------------------------------------------

def test_chunk_len_follows_the_largest_step():
    A = torch.full((DIM, N_STATES), complex(-0.1, 0.1), dtype=torch.complex64)
    small = torch.full((BATCH, DIM, 5), 0.01)
    assert complex_mode._chunk_len(small, A) == complex_mode.MAX_CHUNK_LEN
    step = complex_mode.CHUNK_LOG_RANGE / 10.5 / abs(complex(-0.1, 0.1))
    assert complex_mode._chunk_len(torch.full((BATCH, DIM, 5), step), A) == 10
    assert complex_mode._chunk_len(torch.full((BATCH, DIM, 5), 1e6), A) == 1
    assert complex_mode._chunk_len(torch.full((BATCH, DIM, 5), math.inf), A) == 1
    assert complex_mode._chunk_len(torch.zeros(BATCH, DIM, 0), A) == complex_mode.MAX_CHUNK_LEN


def _s4d_lin(imag_scale):
    # S4D-Lin's A: -1/2 + i·π·n (here scaled), fast rotation and little decay.
    n = torch.arange(N_STATES).float().expand(DIM, N_STATES)
    return torch.complex(-0.5 * torch.ones(DIM, N_STATES), imag_scale * math.pi * n)


def _strong_decay():
    # Decay of up to e^-60 per step: a chunk of several such steps would leave fp32's range.
    return torch.complex(-torch.linspace(0.1, 40.0, N_STATES).expand(DIM, N_STATES), -0.3 * torch.ones(DIM, N_STATES))


@pytest.mark.parametrize("A, softplus, delta_scale, chunk_lens", [
    (_s4d_lin(0.25), False, 1.0, (3, 16)),           # fast rotation, chunks of a few steps
    (_s4d_lin(1.0), True, 1.0, (1, 1)),              # ~30 rad per step: one-step chunks
    (_strong_decay(), True, 2.0, (1, 1)),
    (_strong_decay() / 50, False, 0.5, (8, 64)),      # decays of e^-30 within a chunk
])
def test_strong_decay_and_fast_rotation_stay_exact(A, softplus, delta_scale, chunk_lens):
    inputs = make_inputs(length=128, b_layout=2, c_layout=2, with_h0=True, softplus=softplus)
    with torch.no_grad():
        inputs["delta"].mul_(delta_scale)
    inputs["A"] = A.to(torch.complex64).requires_grad_(True)
    step = inputs["delta"].detach() + inputs["delta_bias"].detach()[:, None]
    step = torch.nn.functional.softplus(step) if softplus else step
    assert chunk_lens[0] <= complex_mode._chunk_len(step, inputs["A"].detach()) <= chunk_lens[1]
    _check_against_reference(inputs, softplus)


# --- bad inputs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("change, error, match", [
    (lambda i: {"B": torch.complex(i["B"], i["B"])}, TypeError,
     r"B \(variable\) must be real when A is complex, each step t stored as the pair"),
    (lambda i: {"C": i["C"][..., :37]}, ValueError, r"C must be \[batch=2, N=8, 2L=74\]; got \[2, 8, 37\]"),
    (lambda i: {"B": torch.randn(2, 3, 8, 74), "C": torch.randn(2, 3, 8, 74)}, ValueError,
     r"dim=4 must be a multiple of the number of groups G=3 of B"),
    (lambda i: {"B": torch.randn(2, 2, 8, 74)}, ValueError, r"B and C must have the same number of groups"),
    (lambda i: {"B": torch.randn(4, 7, dtype=torch.complex64)}, ValueError, r"B must be \[dim=4, N=8\]; got \[4, 7\]"),
    (lambda i: {"u": torch.complex(i["u"], i["u"])}, TypeError, r"u must be real \(with a complex A"),
    (lambda i: {"D": torch.complex(i["D"], i["D"])}, TypeError, r"D must be real"),
    (lambda i: {"delta": i["delta"].half()}, TypeError, r"delta must have the dtype of u \(float32\); got float16"),
    (lambda i: {"initial_state": torch.zeros(2, 4, 7, dtype=torch.complex64)}, ValueError,
     r"initial_state must be \[batch=2, dim=4, N=8\]; got \[2, 4, 7\]"),
    (lambda i: {"A": i["A"][:, :0]}, ValueError, r"state size N \(A.shape\[1\]\) must be at least 1; got 0"),
    (lambda i: {"z": i["u"].to("meta")}, ValueError, r"z is on meta but u is on"),
])
def test_bad_inputs_give_clear_errors(change, error, match):
    i = make_inputs(requires_grad=False)
    i.update(change(i))
    with pytest.raises(error, match=match):
        call_selective_scan(kernelgen.selective_scan, i, delta_softplus=True)
