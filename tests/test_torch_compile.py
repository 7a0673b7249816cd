"""Every public op inside a torch.compile'd function: the op runs eagerly behind a graph break
(kernelgen.ops.eager_op), so outputs, gradients and in-place state updates equal the eager call's.
Without it Dynamo traced into the launchers and failed (under the CPU interpreter: a fake-tensor
error on the interpreter's own code)."""
import pytest
import torch

import kernelgen

pytestmark = pytest.mark.filterwarnings("ignore")


def _compiled(fn):
    torch._dynamo.reset()
    return torch.compile(fn, backend="aot_eager")


def _leaves(*tensors):
    return [t.detach().clone().requires_grad_() for t in tensors]


def _check(fn, tensors, atol=1e-5):
    """fn(*tensors) -> tensor, compiled against eager: the values and every input's gradient."""
    eager_in, compiled_in = _leaves(*tensors), _leaves(*tensors)
    want = fn(*eager_in)
    got = _compiled(fn)(*compiled_in)
    torch.testing.assert_close(got, want, atol=atol, rtol=1e-5)
    upstream = torch.randn_like(want)
    for a, b in zip(torch.autograd.grad(got, compiled_in, upstream), torch.autograd.grad(want, eager_in, upstream)):
        torch.testing.assert_close(a, b, atol=atol, rtol=1e-5)


def test_linear_scan(device):
    x, g = torch.randn(2, 37, 16, device=device), -torch.rand(2, 37, 16, device=device)
    _check(lambda x, g: kernelgen.linear_scan(x, g)[0] * 2, [x, g])


def test_selective_scan(device):
    u, delta = torch.randn(1, 4, 37, device=device), torch.rand(1, 4, 37, device=device) * 0.5
    A, B, C = -torch.rand(4, 8, device=device), torch.randn(1, 8, 37, device=device), torch.randn(1, 8, 37, device=device)
    _check(lambda u, delta, A, B, C: kernelgen.selective_scan(u, delta, A, B, C, delta_softplus=True) * 2,
           [u, delta, A, B, C])


@pytest.mark.parametrize("feature_map", [None, "elu1"])
def test_linear_attention(device, feature_map):
    q, k, v = (torch.randn(1, 37, 2, 16, device=device) for _ in range(3))
    g = -torch.rand(1, 37, 2, device=device) * 0.1
    _check(lambda q, k, v, g: kernelgen.linear_attention(q, k, v, g=g, feature_map=feature_map)[0] * 2, [q, k, v, g])


def test_loglinear_attention(device):
    q, k, v = (torch.randn(1, 37, 2, 16, device=device) for _ in range(3))
    g, level_scales = -torch.rand(1, 37, 2, device=device) * 0.1, torch.rand(1, 37, 2, 7, device=device)
    _check(lambda q, k, v, g, lam: kernelgen.loglinear_attention(q, k, v, g, lam)[0] * 2, [q, k, v, g, level_scales])


def test_sliding_window_attention(device):
    q, k, v = (torch.randn(1, 37, 2, 32, device=device) for _ in range(3))
    _check(lambda q, k, v: kernelgen.sliding_window_attention(q, k, v, 8) * 2, [q, k, v])


def test_decode_steps_update_their_state_as_eager(device):
    """The in-place decode ops: the compiled call's y and state equal the eager call's."""
    batch, dim, n = 2, 8, 4
    state = torch.randn(batch, dim, n, device=device)
    args = (torch.randn(batch, dim, device=device), torch.rand(batch, dim, device=device),
            -torch.rand(dim, n, device=device), torch.randn(batch, n, device=device), torch.randn(batch, n, device=device))
    eager_state, compiled_state = state.clone(), state.clone()
    want = kernelgen.selective_state_update(eager_state, *args) * 2
    got = _compiled(lambda s, *a: kernelgen.selective_state_update(s, *a) * 2)(compiled_state, *args)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(compiled_state, eager_state)

    q, k, v = (torch.randn(2, 3, 16, device=device) for _ in range(3))
    la_state = torch.randn(2, 3, 16, 16, device=device)
    want_o, want_s = kernelgen.linear_attention_step(q, k, v, la_state.clone())
    got_o, got_s = _compiled(lambda *a: kernelgen.linear_attention_step(*a))(q, k, v, la_state.clone())
    torch.testing.assert_close(got_o, want_o)
    torch.testing.assert_close(got_s, want_s)

    window, length = 8, 11
    q1 = torch.randn(1, 1, 2, 32, device=device)
    k_cache, v_cache = torch.randn(1, 16, 2, 32, device=device), torch.randn(1, 16, 2, 32, device=device)
    want = kernelgen.sliding_window_attention_decode(q1, k_cache, v_cache, length, window)
    got = _compiled(lambda *a: kernelgen.sliding_window_attention_decode(*a, window))(q1, k_cache, v_cache, length)
    torch.testing.assert_close(got, want)


def test_loglinear_decode_step(device):
    q, k, v = (torch.randn(1, 5, 2, 16, device=device) for _ in range(3))
    g, lam = -torch.rand(1, 5, 2, device=device) * 0.1, torch.rand(1, 5, 2, 5, device=device)
    _, state = kernelgen.loglinear_attention(q, k, v, g, lam, output_final_state=True)
    step = (torch.randn(1, 2, 16, device=device), torch.randn(1, 2, 16, device=device),
            torch.randn(1, 2, 16, device=device), -torch.rand(1, 2, device=device) * 0.1,
            torch.rand(1, 2, 5, device=device))
    want, _ = kernelgen.loglinear_attention_step(*step, _copy_state(state))
    got, _ = _compiled(lambda *a: kernelgen.loglinear_attention_step(*a))(*step, _copy_state(state))
    torch.testing.assert_close(got, want)


def _copy_state(state):
    return type(state)(**{name: value.clone() if isinstance(value, torch.Tensor) else value
                          for name, value in vars(state).items()})
