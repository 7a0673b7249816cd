"""bf16 calls of the tl.dot-based ops under the Triton interpreter. The interpreter multiplies bf16
dot operands as their raw bit patterns (Triton 3.9, triton-lang/triton#11584), so these ops run
such calls in fp32 and round o back to bf16 (`kernelgen.checks.bf16_dot_on_interpreter`): forward
and backward against float64 references of the bf16 inputs, at bf16's output rounding. On a GPU
the kernels run bf16 themselves (their gpu tests)."""
import pytest
import torch

import kernelgen
from kernelgen.checks import bf16_dot_on_interpreter
from kernelgen.reference.linear_attention import linear_attention_recurrent
from kernelgen.reference.loglinear_attention import loglinear_attention_reference
from kernelgen.reference.sliding_window_attention import (sliding_window_attention_decode_ref,
                                                          sliding_window_attention_ref)
from tests.reference_utils import assert_close

pytestmark = pytest.mark.skipif(not bf16_dot_on_interpreter(torch.empty(0, dtype=torch.bfloat16)),
                                reason="runs under the Triton interpreter (CPU)")

BF16_OUT = 1e-2    # o rounded to bf16 (2^-9 relative), the sums in fp32
BF16_GRAD = 2e-2   # gradients rounded to bf16 as well


def _inputs(*shapes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=gen).to(torch.bfloat16).requires_grad_() for shape in shapes]


def _check_grads(outs, refs, inputs, seed=1):
    """Gradients of a random weighting of the outputs, against the references' autograd."""
    gen = torch.Generator().manual_seed(seed)
    weights = [torch.randn(out.shape, generator=gen, dtype=torch.float64) for out in outs]
    loss = sum((out.double() * w).sum() for out, w in zip(outs, weights))
    loss_ref = sum((ref * w).sum() for ref, w in zip(refs, weights))
    grads = torch.autograd.grad(loss, inputs)
    grads_ref = torch.autograd.grad(loss_ref, inputs)
    for i, (grad, grad_ref) in enumerate(zip(grads, grads_ref)):
        assert grad.dtype == torch.bfloat16
        assert_close(f"grad {i}", grad, grad_ref, BF16_GRAD)


@pytest.mark.parametrize("feature_map, decay", [(None, "g"), ("elu1", None), ("taylor2", "g_gamma")])
def test_linear_attention_bf16(feature_map, decay):
    K = 16 if feature_map == "taylor2" else 32
    q, k, v = _inputs((1, 37, 2, K), (1, 37, 2, K), (1, 37, 2, 24))
    q_scaled = (q.detach().float() * 0.5).to(torch.bfloat16).requires_grad_()   # taylor2 sums grow fast
    g = -torch.rand(1, 37, 2, generator=torch.Generator().manual_seed(3)) if decay == "g" else None
    g_gamma = -torch.rand(2, generator=torch.Generator().manual_seed(4)) if decay == "g_gamma" else None
    o, _ = kernelgen.linear_attention(q_scaled, k, v, g=g, g_gamma=g_gamma, feature_map=feature_map)
    o_ref, _ = linear_attention_recurrent(q_scaled, k, v, g=g, g_gamma=g_gamma, feature_map=feature_map)
    assert o.dtype == torch.bfloat16
    assert_close("o", o, o_ref, BF16_OUT)
    _check_grads([o], [o_ref], [q_scaled, k, v])


def test_loglinear_attention_bf16():
    q, k, v = _inputs((1, 33, 2, 16), (1, 33, 2, 16), (1, 33, 2, 16))
    gen = torch.Generator().manual_seed(5)
    g, level_scales = -torch.rand(1, 33, 2, generator=gen), torch.rand(1, 33, 2, 7, generator=gen)
    o, _ = kernelgen.loglinear_attention(q, k, v, g, level_scales)
    o_ref, _ = loglinear_attention_reference(q, k, v, g, level_scales)
    assert o.dtype == torch.bfloat16
    assert_close("o", o, o_ref, BF16_OUT)
    _check_grads([o], [o_ref], [q, k, v])


def test_sliding_window_attention_bf16():
    q, k, v = _inputs((1, 41, 4, 32), (1, 41, 2, 32), (1, 41, 2, 32))
    o, lse = kernelgen.sliding_window_attention(q, k, v, 9, return_lse=True)
    o_ref, lse_ref = sliding_window_attention_ref(q, k, v, 9)
    assert o.dtype == torch.bfloat16 and lse.dtype == torch.float32
    assert_close("o", o, o_ref, BF16_OUT)
    assert_close("lse", lse, lse_ref, 1e-5)
    _check_grads([o], [o_ref], [q, k, v])


def test_sliding_window_attention_decode_bf16():
    q, k_cache, v_cache = (x.detach() for x in _inputs((3, 4, 32), (3, 20, 2, 32), (3, 20, 2, 32)))
    lengths = torch.tensor([20, 7, 1])
    o = kernelgen.sliding_window_attention_decode(q, k_cache, v_cache, lengths, 6)
    o_ref = sliding_window_attention_decode_ref(q, k_cache, v_cache, lengths, 6)
    assert o.dtype == torch.bfloat16 and o.shape == q.shape
    assert_close("o", o, o_ref, BF16_OUT)


def test_mixed_dtypes_still_refused():
    q, k, v = _inputs((1, 8, 1, 16), (1, 8, 1, 16), (1, 8, 1, 16))
    with pytest.raises(TypeError):
        kernelgen.linear_attention(q, k.half(), v)
