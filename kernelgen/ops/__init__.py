"""Public ops, one module each: argument checks, the autograd Function, the dispatch call."""
import functools

import torch
from torch.autograd.function import once_differentiable


def eager_op(op):
    """Marks a public op to run eagerly under torch.compile: a graph break around the call instead
    of Dynamo tracing into its checks and cached Triton/CuPy launches, which it cannot follow (under
    the CPU interpreter it fails outright). The autograd Function inside still gives the backward.
    Eager calls pay ~0.3 µs for the wrapper."""
    return torch.compiler.disable(op, recursive=True)


def first_order(backward):
    """The backward of an op's autograd Function, computed by kernels that build no graph: torch's
    once_differentiable, which raises on a second derivative only when the incoming gradients
    carry a graph, and here also whenever one is asked for (create_graph=True). With plain incoming
    gradients (``o.sum()``) the first would hand back detached gradients, and a gradient penalty
    built on them would be dropped without a word."""
    once = once_differentiable(backward)

    @functools.wraps(backward)
    def checked(ctx, *grads):
        if torch.is_grad_enabled():
            raise RuntimeError(
                f"kernelgen: {type(ctx).__name__.removesuffix('Backward')} gives first derivatives only "
                "(once_differentiable): a backward with create_graph=True through it cannot build the "
                "second one")
        return once(ctx, *grads)
    return checked
