"""The linear-attention probes' inputs: the issue's target shape in bf16 on the GPU, fixed seed."""
import torch

from kernelgen.templates import get_template

B, T, H, K, V = 8, 4096, 16, 128, 128
SHAPE = {"B": B, "T": T, "H": H, "K": K, "V": V, "F": K}


def target_inputs():
    """(q, k, v, dO, g) at the target shape; g = logsigmoid(N(2, 1)), a mild data-dependent decay."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v, do = (torch.randn(B, T, H, d, device="cuda", generator=gen, dtype=torch.bfloat16) for d in (K, K, V, V))
    g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, device="cuda", generator=gen) + 2.0)
    return q, k, v, do, g


def backward_default(flags: str = "g"):
    """The backward's default config for ``flags`` at the target shape."""
    return get_template("linear_attention.bwd").default_for(SHAPE, None, flags)
