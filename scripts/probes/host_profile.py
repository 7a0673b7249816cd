"""Host time of one eager fwd+bwd of linear_attention (g and no decay) and loglinear_attention at a
tiny shape (GPU work of a few µs), and where it goes: cProfile's top functions by own time
(session 14: the plain linear-attention fwd+bwd read 1.128 ms eager against 0.891 ms as a CUDA
graph). python3 scripts/probes/host_profile.py"""
import cProfile
import pstats
import time

import torch

import kernelgen

gen = torch.Generator(device="cuda").manual_seed(0)


def inputs(K=64, L=None):
    q, k, v = (torch.randn(1, 64, 2, K, device="cuda", dtype=torch.bfloat16, generator=gen).requires_grad_()
               for _ in range(3))
    g = torch.nn.functional.logsigmoid(torch.randn(1, 64, 2, device="cuda", generator=gen) + 2).requires_grad_()
    lam = (torch.rand(1, 64, 2, L, device="cuda", generator=gen) + 0.5).requires_grad_() if L else None
    return q, k, v, g, lam


q, k, v, g, lam = inputs(L=8)
do = torch.randn_like(v)
cases = {
    "la g": (lambda: kernelgen.linear_attention(q, k, v, g=g)[0], [q, k, v, g]),
    "la plain": (lambda: kernelgen.linear_attention(q, k, v)[0], [q, k, v]),
    "loglinear": (lambda: kernelgen.loglinear_attention(q, k, v, g, lam)[0], [q, k, v, g, lam]),
}
for name, (fwd, leaves) in cases.items():
    def step():
        return torch.autograd.grad(fwd(), leaves, do)
    for _ in range(20):
        step()
    torch.cuda.synchronize()
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    torch.cuda.synchronize()
    per = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for _ in range(n):
        fwd()
    torch.cuda.synchronize()
    per_f = (time.perf_counter() - t0) / n * 1e6
    print(f"## {name}: fwd+bwd {per:.0f} us a call, fwd {per_f:.0f} us", flush=True)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        step()
    prof.disable()
    torch.cuda.synchronize()
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(18)
