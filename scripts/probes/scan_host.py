"""Shared pieces of the host-overhead probes (overhead_launch.py, ls_fwdbwd.py): per-call wall
time, an empty autograd.Function (the host's autograd yardstick), and linear_scan's fwd+bwd at
the issue's target shape B=8 T=4096 D=2048."""
import time

import torch


def per_call(fn, n=400, warmup=30):
    """Mean wall microseconds of fn() over n back-to-back calls (synchronised at both ends)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n * 1e6


class Nop(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        return torch.empty_like(a)

    @staticmethod
    def backward(ctx, d):
        return torch.empty_like(d), torch.empty_like(d)


def target_fwd_bwd(dev="cuda", B=8, T=4096, D=2048):
    """A closure running kernelgen.linear_scan forward and autograd.grad on bf16 inputs."""
    import kernelgen
    x = torch.randn(B, T, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
    g = torch.nn.functional.logsigmoid(torch.randn(B, T, D, device=dev)).to(torch.bfloat16).requires_grad_()
    do = torch.randn(B, T, D, device=dev, dtype=torch.bfloat16)

    def fwd_bwd():
        out, _ = kernelgen.linear_scan(x, g)
        return torch.autograd.grad(out, (x, g), do)
    return fwd_bwd
