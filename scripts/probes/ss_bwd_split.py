"""Where selective_scan's fwd+bwd goes at the issue's shape (batch 8, dim 2048, L 4096, N 16, bf16,
softplus + delta_bias, no z): the op's median time and each GPU kernel's share (session 15: the
CUDA backward had never been profiled). python3 scripts/probes/ss_bwd_split.py [batch dim L N]"""
import torch
import triton.testing

import kernelgen
from kernelgen.tune.breakdown import kernel_split

import sys

torch.manual_seed(0)
# optional argv: batch dim L N (default: the target)
batch, dim, L, N = (int(x) for x in sys.argv[1:5]) if len(sys.argv) > 4 else (8, 2048, 4096, 16)
dev, dt = "cuda", torch.bfloat16
u = torch.randn(batch, dim, L, device=dev, dtype=dt, requires_grad=True)
delta = (0.5 * torch.rand(batch, dim, L, device=dev, dtype=dt)).requires_grad_()
A = (-0.5 * torch.rand(dim, N, device=dev)).requires_grad_()
B = torch.randn(batch, N, L, device=dev, dtype=dt, requires_grad=True)
C = torch.randn(batch, N, L, device=dev, dtype=dt, requires_grad=True)
D = torch.randn(dim, device=dev, requires_grad=True)
bias = torch.randn(dim, device=dev, requires_grad=True)
dy = torch.randn(batch, dim, L, device=dev, dtype=dt)
leaves = [u, delta, A, B, C, D, bias]


def fwd_bwd():
    y = kernelgen.selective_scan(u, delta, A, B, C, D, delta_bias=bias, delta_softplus=True)
    torch.autograd.grad(y, leaves, dy)


def fwd():
    with torch.no_grad():
        kernelgen.selective_scan(u, delta, A, B, C, D, delta_bias=bias, delta_softplus=True)


for label, fn in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
    ms = triton.testing.do_bench(fn, warmup=10, rep=50)
    print(f"{label}: {ms:.4f} ms", flush=True)
    for name, row in kernel_split(fn, "cuda").items():
        print(f"   {row['ms']:.4f} ms x{row['launches']:g}  {name[:110]}", flush=True)
