"""Every op's backward is first-order only: asking it for a graph (create_graph=True, the way to a
second derivative) must raise, never come back silently detached (a gradient penalty built on it
would be dropped without a word)."""
import pytest
import torch
import torch.nn.functional as F

import kernelgen


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _linear_scan(device):
    x, g = _randn(1, 9, 4).to(device), (-F.softplus(_randn(1, 9, 4, seed=1))).to(device)
    return [x], lambda x: kernelgen.linear_scan(x, g)[0]


def _selective_scan(device):
    u, delta = _randn(1, 4, 9).to(device), F.softplus(_randn(1, 4, 9, seed=1)).to(device)
    A, B, C = -torch.exp(_randn(4, 3, seed=2)).to(device), _randn(1, 3, 9, seed=3).to(device), _randn(1, 3, 9, seed=4).to(device)
    return [u], lambda u: kernelgen.selective_scan(u, delta, A, B, C)


def _linear_attention(device):
    q, k, v = (_randn(1, 9, 1, 16, seed=s).to(device) for s in range(3))
    g = F.logsigmoid(_randn(1, 9, 1, seed=3)).to(device)
    return [q], lambda q: kernelgen.linear_attention(q, k, v, g=g)[0]


def _loglinear_attention(device):
    q, k, v = (_randn(1, 9, 1, 16, seed=s).to(device) for s in range(3))
    g = F.logsigmoid(_randn(1, 9, 1, seed=3)).to(device)
    levels = torch.rand(1, 9, 1, 5, generator=torch.Generator().manual_seed(4)).to(device)
    return [q], lambda q: kernelgen.loglinear_attention(q, k, v, g, levels)[0]


def _sliding_window_attention(device):
    q, k, v = (_randn(1, 9, 2, 32, seed=s).to(device) for s in range(3))
    return [q], lambda q: kernelgen.sliding_window_attention(q, k, v, 4)


@pytest.mark.parametrize("square", [True, False], ids=["grads_with_graph", "plain_grads"])
@pytest.mark.parametrize("make", [_linear_scan, _selective_scan, _linear_attention, _loglinear_attention,
                                  _sliding_window_attention], ids=lambda make: make.__name__.strip("_"))
def test_create_graph_raises(device, make, square):
    """A backward asked to build a graph (create_graph=True) raises, whether the incoming gradients
    carry one ((o ** 2).sum()) or not (o.sum(): once_differentiable alone would return a detached
    first derivative, and a penalty on it would silently add nothing)."""
    leaves, op = make(device)
    leaves = [x.clone().requires_grad_() for x in leaves]
    loss = lambda: (op(*leaves) ** 2).sum() if square else op(*leaves).sum()
    with pytest.raises(RuntimeError, match="first derivatives only"):
        torch.autograd.grad(loss(), leaves, create_graph=True)
    (grad,) = torch.autograd.grad(loss(), leaves)   # a first derivative alone still works
    assert torch.isfinite(grad).all() and not grad.requires_grad
