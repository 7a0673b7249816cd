"""Host time of selective_scan's eager fwd+bwd (session 23: batch 2, dim 1536, L 2048 read 1.20 ms
eager in round 220 against 0.72 ms as a CUDA graph in round 216) and of its decode step, and where
it goes: wall time per call at a tiny shape (GPU work of a few µs), then cProfile's top functions."""
import cProfile
import pstats
import time

import torch

import kernelgen

gen = torch.Generator(device="cuda").manual_seed(0)


def scan_inputs(batch, dim, length, n=16):
    r = lambda *s: torch.randn(*s, device="cuda", generator=gen)
    u = r(batch, dim, length).bfloat16().requires_grad_()
    delta = (r(batch, dim, length) * 0.5).bfloat16().requires_grad_()
    A = (-torch.rand(dim, n, device="cuda", generator=gen)).requires_grad_()
    B, C = (r(batch, n, length).bfloat16().requires_grad_() for _ in range(2))
    D, bias = r(dim).requires_grad_(), (r(dim) * 0.1).requires_grad_()
    return [u, delta, A, B, C, D, bias]


def timed(step, n=200):
    for _ in range(20):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


for name, shape in (("tiny", (1, 64, 64)), ("bench", (2, 1536, 2048))):
    leaves = scan_inputs(*shape)
    u, delta, A, B, C, D, bias = leaves
    dout = torch.randn_like(u)
    fwd = lambda: kernelgen.selective_scan(u, delta, A, B, C, D, delta_bias=bias, delta_softplus=True)
    both = lambda: torch.autograd.grad(fwd(), leaves, dout)
    print(f"{name} {shape}: fwd {timed(fwd):.0f} µs, fwd+bwd {timed(both):.0f} µs a call (wall, eager)", flush=True)

state = torch.randn(1, 64, 16, device="cuda")
x, dt = torch.randn(1, 64, device="cuda").bfloat16(), torch.rand(1, 64, device="cuda").bfloat16()
A, Bs, Cs = -torch.rand(64, 16, device="cuda"), torch.randn(1, 16, device="cuda").bfloat16(), torch.randn(1, 16, device="cuda").bfloat16()
step = lambda: kernelgen.selective_state_update(state, x, dt, A, Bs, Cs, dt_softplus=True)
print(f"decode step tiny: {timed(step):.0f} µs a call", flush=True)

import sys
leaves = scan_inputs(*((2, 1536, 2048) if "bench" in sys.argv else (1, 64, 64)))
u, delta, A, B, C, D, bias = leaves
dout = torch.randn_like(u)
profile = cProfile.Profile()
profile.enable()
for _ in range(100):
    torch.autograd.grad(kernelgen.selective_scan(u, delta, A, B, C, D, delta_bias=bias, delta_softplus=True),
                        leaves, dout)
profile.disable()
torch.cuda.synchronize()
stats = pstats.Stats(profile)
stats.sort_stats("tottime").print_stats(22)
stats.sort_stats("cumulative").print_stats(25)

with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    for _ in range(20):
        torch.autograd.grad(kernelgen.selective_scan(u, delta, A, B, C, D, delta_bias=bias, delta_softplus=True),
                            leaves, dout)
    torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=50))
