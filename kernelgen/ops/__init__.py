"""Public ops, one module each: argument checks, the autograd Function, the dispatch call."""
import torch


def eager_op(op):
    """Marks a public op to run eagerly under torch.compile: a graph break around the call instead
    of Dynamo tracing into its checks and cached Triton/CuPy launches, which it cannot follow (under
    the CPU interpreter it fails outright). The autograd Function inside still gives the backward.
    Eager calls pay ~0.3 µs for the wrapper."""
    return torch.compiler.disable(op, recursive=True)
