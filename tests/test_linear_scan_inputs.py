"""linear_scan on the inputs callers really pass (fla's hgrn test suite among them).

Strided views, empty / tiny / ragged T and D, B = 0, mixed float dtypes (x, g and initial_state
each in its own), losses on o only, on final_state only or on both, gates from exactly 0 to very
negative, packed sequences with length-0 and length-1 members, and wrong inputs (clear errors
naming the argument). Forward and backward against the float64 reference
(kernelgen/reference/linear_scan.py) with the config dispatch picks. Non-contiguous inputs are
views of leaf tensors: gradients are checked on the leaves.
Tolerances (relative Frobenius error): fp32 1e-5; fp16 3e-3; bf16 3e-2 (rounding of o, dx, dg).
"""
import numpy as np
import pytest
import torch

import kernelgen
from kernelgen.reference.linear_scan import linear_scan_ref
from reference_utils import rel_error

TOL = {torch.float32: 1e-5, torch.float16: 3e-3, torch.bfloat16: 3e-2, torch.float64: 1e-5}


def randn(*shape, seed=0, dtype=torch.float32, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)


def log_gate(*shape, seed=1, dtype=torch.float32, device="cpu"):
    """fla's gates: logsigmoid of a normal, decays spread over (0, 1)."""
    return torch.nn.functional.logsigmoid(randn(*shape, seed=seed)).to(device=device, dtype=dtype)


def _close(name, out, expected, tol):
    out, expected = out.detach(), expected.detach()
    assert out.shape == expected.shape, f"{name}: shape {tuple(out.shape)} != {tuple(expected.shape)}"
    if out.numel() == 0:
        return
    if float(expected.norm()) == 0.0:   # e.g. dg at t = 0 without a state: exactly zero
        assert float(out.abs().max()) <= tol, f"{name}: expected zeros"
    else:
        err = rel_error(out, expected)
        assert err <= tol, f"{name}: relative error {err:.3e} > {tol:.1e}"


def compare(build, leaves, output_final_state=True, use_o=True, use_final=True, cu_seqlens=None):
    """The op vs the float64 reference on build(*leaves) = (x, g, initial_state or None): o, the
    final state, and the gradient of every leaf under a random weighted loss on o and/or final."""
    mine = [t.detach().clone().requires_grad_() for t in leaves]
    theirs = [t.detach().to(torch.float64).requires_grad_() for t in leaves]
    x, g, h0 = build(*mine)
    o, final = kernelgen.linear_scan(x, g, h0, output_final_state=output_final_state, cu_seqlens=cu_seqlens)
    o_ref, final_ref = _reference(*build(*theirs), cu_seqlens)
    tol = TOL[x.dtype]
    assert o.dtype == x.dtype
    _close("o", o, o_ref, tol)
    if output_final_state:
        assert final.dtype == torch.float32
        _close("final_state", final, final_ref, TOL[torch.float32])
    else:
        assert final is None

    gen = torch.Generator().manual_seed(11)
    w_o = torch.randn(o_ref.shape, generator=gen, dtype=torch.float64)
    w_f = torch.randn(final_ref.shape, generator=gen, dtype=torch.float64)
    terms = [(o, o_ref, w_o)] if use_o else []
    terms += [(final, final_ref, w_f)] if use_final and output_final_state else []
    loss = sum((t.double() * w.to(t.device)).sum() for t, _, w in terms)
    loss_ref = sum((t * w.to(t.device)).sum() for _, t, w in terms)
    if not torch.is_tensor(loss) or not loss.requires_grad:   # nothing to differentiate (T = 0, no state)
        return
    grads = torch.autograd.grad(loss, mine, allow_unused=True)
    grads_ref = torch.autograd.grad(loss_ref, theirs, allow_unused=True)
    for i, (leaf, grad, grad_ref) in enumerate(zip(mine, grads, grads_ref)):
        grad_ref = torch.zeros_like(theirs[i]) if grad_ref is None else grad_ref
        # the best the leaf's dtype can hold: with g = -30, dg ~ e^-30 underflows fp16 to 0
        grad_ref = grad_ref.to(leaf.dtype).double()
        grad = torch.zeros_like(leaf) if grad is None else grad
        assert grad.dtype == leaf.dtype, f"leaf {i}: gradient {grad.dtype}, input {leaf.dtype}"
        _close(f"d(leaf {i})", grad, grad_ref, max(tol, TOL[leaf.dtype]))


def _reference(x, g, h0, cu_seqlens):
    if cu_seqlens is None:
        return linear_scan_ref(x, g, h0)
    bounds = cu_seqlens.tolist()
    parts = [linear_scan_ref(x[:, a:b], g[:, a:b], None if h0 is None else h0[n:n + 1])
             for n, (a, b) in enumerate(zip(bounds, bounds[1:]))]
    return torch.cat([o for o, _ in parts], 1), torch.cat([f for _, f in parts], 0)


def plain(x, g, h0=None):
    return x, g, h0


# --- layouts ---------------------------------------------------------------------------------------

def test_transposed_and_sliced_views(device):
    # x stored [B, D, T] and read transposed; g every other channel of a wider tensor; h0 [D, B]ᵀ
    leaves = [randn(2, 24, 13, device=device), log_gate(2, 13, 48, device=device), randn(24, 2, seed=2, device=device)]
    compare(lambda x, g, h0: (x.transpose(1, 2), g[:, :, ::2], h0.t()), leaves)


def test_expanded_views(device):
    # stride-0 views: one sequence broadcast over the batch, one gate row over all steps
    leaves = [randn(1, 9, 5, device=device), log_gate(5, device=device), randn(5, seed=2, device=device)]
    compare(lambda x, g, h0: (x.expand(3, 9, 5), g.expand(3, 9, 5), h0.expand(3, 5)), leaves)


# --- sizes -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 0, 5), (2, 1, 3), (2, 2, 1), (0, 4, 6), (3, 5, 0), (2, 15, 37), (1, 30, 70)],
                         ids=lambda s: "B{}-T{}-D{}".format(*s))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_sizes(device, shape, dtype):
    batch, steps, width = shape
    leaves = [randn(*shape, dtype=dtype, device=device), log_gate(*shape, dtype=dtype, device=device),
              randn(batch, width, seed=2, device=device)]
    compare(plain, leaves)


@pytest.mark.parametrize("x_dtype, g_dtype, h_dtype", [
    (torch.float16, torch.float32, torch.float32),
    (torch.float32, torch.float16, torch.bfloat16),
    (torch.float16, torch.float16, torch.float16),
    (torch.bfloat16, torch.float32, torch.float16),
    (torch.float32, torch.bfloat16, torch.float32),
    (torch.float32, torch.float32, torch.float64),    # a float64 state is cast (as linear_attention's)
], ids=str)
def test_mixed_dtypes(device, x_dtype, g_dtype, h_dtype):
    # o and dx in x's dtype, dg in g's, d initial_state in initial_state's
    leaves = [randn(2, 21, 19, dtype=x_dtype, device=device), log_gate(2, 21, 19, dtype=g_dtype, device=device),
              randn(2, 19, seed=2, dtype=h_dtype, device=device)]
    compare(plain, leaves)


# --- which outputs the loss uses --------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("output_final_state, use_o, use_final", [(False, True, False), (True, False, True),
                                                                  (True, True, False)],
                         ids=["o-only-no-final", "final-only", "o-only-with-final"])
def test_loss_on_o_or_final_state(device, dtype, output_final_state, use_o, use_final):
    leaves = [randn(2, 17, 11, dtype=dtype, device=device), log_gate(2, 17, 11, dtype=dtype, device=device),
              randn(2, 11, seed=2, device=device)]
    compare(plain, leaves, output_final_state, use_o, use_final)


def test_without_initial_state(device):
    leaves = [randn(2, 17, 11, device=device), log_gate(2, 17, 11, device=device)]
    compare(lambda x, g: (x, g, None), leaves)


# --- gates ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gate", ["zero", "near-zero", "very-negative", "minus-inf"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_gate_extremes(device, gate, dtype):
    # g = 0: no decay (h is a running sum); -1e-6: barely decays; -30: each step forgets all but
    # e^-30; -inf: the state resets every step (o = x, dg = 0)
    value = {"zero": 0.0, "near-zero": -1e-6, "very-negative": -30.0, "minus-inf": float("-inf")}[gate]
    shape = (2, 19, 13)
    g = torch.full(shape, value) + (0.0 if gate in ("zero", "minus-inf") else value * 0.1 * randn(*shape, seed=4))
    leaves = [randn(*shape, dtype=dtype, device=device), g.to(device=device, dtype=dtype),
              randn(2, 13, seed=2, device=device)]
    compare(plain, leaves)


# --- packed sequences --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("state_dtype", [None, torch.float32, torch.float16], ids=str)
def test_varlen_empty_and_one_token_sequences(device, dtype, state_dtype):
    bounds = [0, 0, 1, 1, 6, 7, 20]   # lengths 0, 1, 0, 5, 1, 13
    leaves = [randn(1, 20, 9, dtype=dtype, device=device), log_gate(1, 20, 9, dtype=dtype, device=device)]
    if state_dtype is not None:
        leaves.append(randn(6, 9, seed=2, dtype=state_dtype, device=device))
    cu = torch.tensor(bounds, dtype=torch.int32, device=device)
    compare(lambda x, g, h0=None: (x, g, h0), leaves, cu_seqlens=cu)


def test_varlen_all_empty_and_cpu_offsets(device):
    # T = 0 packed as two empty sequences: final_state = initial_state; offsets may live on the CPU
    leaves = [randn(1, 0, 4, device=device), log_gate(1, 0, 4, device=device), randn(2, 4, seed=2, device=device)]
    compare(plain, leaves, cu_seqlens=torch.tensor([0, 0, 0]))
    leaves = [randn(1, 8, 4, device=device), log_gate(1, 8, 4, device=device), randn(2, 4, seed=2, device=device)]
    compare(plain, leaves, cu_seqlens=torch.tensor([0, 3, 8], dtype=torch.int64))


def test_varlen_matches_separate_calls(device):
    # the packed call equals one call per sequence (what a caller would otherwise do)
    x, g, h0 = randn(1, 12, 6, device=device), log_gate(1, 12, 6, device=device), randn(3, 6, seed=2, device=device)
    o, final = kernelgen.linear_scan(x, g, h0, output_final_state=True,
                                     cu_seqlens=torch.tensor([0, 1, 5, 12], device=device))
    for n, (a, b) in enumerate([(0, 1), (1, 5), (5, 12)]):
        o_n, final_n = kernelgen.linear_scan(x[:, a:b], g[:, a:b], h0[n:n + 1], output_final_state=True)
        _close(f"o of sequence {n}", o[:, a:b], o_n, 1e-6)
        _close(f"final_state of sequence {n}", final[n:n + 1], final_n, 1e-6)


# --- wrong inputs ------------------------------------------------------------------------------------

def _bad_calls(device):
    x, g, h0 = randn(1, 10, 8, device=device), log_gate(1, 10, 8, device=device), randn(1, 8, device=device)
    cu = torch.tensor([0, 4, 10], device=device)
    scan = kernelgen.linear_scan
    return [
        ("x 2-D", lambda: scan(x[0], g), ValueError, r"x must be \[B, T, D\]; got \[10, 8\]"),
        ("g other T", lambda: scan(x, g[:, :3]), ValueError, r"g must be \[B=1, T=10, D=8\]; got \[1, 3, 8\]"),
        ("g other D", lambda: scan(x, g[..., :7]), ValueError, r"g must be \[B=1, T=10, D=8\]"),
        ("x not a tensor", lambda: scan(x.tolist(), g), TypeError, "x must be a torch.Tensor"),
        ("g None", lambda: scan(x, None), TypeError, "g must be a torch.Tensor"),
        ("x int", lambda: scan(x.int(), g), TypeError, "x must have dtype in .*; got int32"),
        ("x float64", lambda: scan(x.double(), g), TypeError, "x must have dtype in .*; got float64"),
        ("g bool", lambda: scan(x, g < 0), TypeError, "g must have dtype in .*; got bool"),
        ("initial_state int", lambda: scan(x, g, h0.long()), TypeError, "initial_state must have dtype .*int64"),
        ("initial_state [D]", lambda: scan(x, g, h0[0]), ValueError, r"initial_state must be \[B=1, D=8\]; got \[8\]"),
        ("initial_state other D", lambda: scan(x, g, h0[:, :5]), ValueError, "initial_state must be"),
        ("g on meta", lambda: scan(x, g.to("meta")), ValueError, "g is on meta but x is on"),
        ("x on meta", lambda: scan(x.to("meta"), g), ValueError, "g is on .* but x is on meta"),
        ("initial_state on meta", lambda: scan(x, g, h0.to("meta")), ValueError, "initial_state is on meta"),
        ("output_final_state int", lambda: scan(x, g, output_final_state=1), TypeError,
         "output_final_state must be a bool"),
        ("output_final_state int, varlen", lambda: scan(x, g, output_final_state=1, cu_seqlens=cu), TypeError,
         "output_final_state must be a bool"),
        ("cu_seqlens with B=2", lambda: scan(x.expand(2, -1, -1), g.expand(2, -1, -1), cu_seqlens=cu), ValueError,
         "cu_seqlens, x must .* got B=2"),
        ("cu_seqlens from 1", lambda: scan(x, g, cu_seqlens=torch.tensor([1, 10], device=device)), ValueError,
         "cu_seqlens must rise from 0 to T=10"),
        ("cu_seqlens ends early", lambda: scan(x, g, cu_seqlens=torch.tensor([0, 9], device=device)), ValueError,
         "cu_seqlens must rise from 0 to T=10"),
        ("cu_seqlens decreasing", lambda: scan(x, g, cu_seqlens=torch.tensor([0, 6, 4, 10], device=device)),
         ValueError, "cu_seqlens must rise"),
        ("cu_seqlens negative", lambda: scan(x, g, cu_seqlens=torch.tensor([0, -2, 10], device=device)),
         ValueError, "cu_seqlens must rise"),
        ("cu_seqlens float", lambda: scan(x, g, cu_seqlens=torch.tensor([0.0, 10.0], device=device)), ValueError,
         "cu_seqlens must be a 1-D int32/int64 tensor .*float32"),
        ("cu_seqlens list", lambda: scan(x, g, cu_seqlens=[0, 10]), ValueError, "cu_seqlens must be .* got list"),
        ("cu_seqlens 2-D", lambda: scan(x, g, cu_seqlens=cu[None]), ValueError, r"cu_seqlens must be .*\[1, 3\]"),
        ("cu_seqlens one offset", lambda: scan(x, g, cu_seqlens=cu[:1]), ValueError, "cu_seqlens must be"),
        ("cu_seqlens on meta", lambda: scan(x, g, cu_seqlens=cu.to("meta")), ValueError,
         "cu_seqlens is on meta but x is on"),
        ("initial_state [B, D] with N=2", lambda: scan(x, g, h0, cu_seqlens=cu), ValueError,
         r"initial_state must be \[N=2, D=8\]; got \[1, 8\]"),
        ("initial_state on meta, varlen", lambda: scan(x, g, torch.zeros(2, 8, device="meta"), cu_seqlens=cu),
         ValueError, "initial_state is on meta"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_calls("cpu"))), ids=[c[0] for c in _bad_calls("cpu")])
def test_bad_inputs(device, case):
    _, call, error, message = _bad_calls(device)[case]
    with pytest.raises(error, match=message):
        call()


def test_numpy_inputs_are_rejected_by_name(device):
    with pytest.raises(TypeError, match="x must be a torch.Tensor .* got ndarray"):
        kernelgen.linear_scan(np.zeros((1, 2, 3), dtype=np.float32), log_gate(1, 2, 3, device=device))
