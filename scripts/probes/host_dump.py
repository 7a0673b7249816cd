"""Session 26: where the eager fwd+bwd's host time goes, for selective_scan and gated
linear_attention at tiny shapes (GPU work of a few µs): wall µs a call, then cProfile dumps
($OUT/<op>.prof, read with pstats on any machine) and torch's CPU op table."""
import cProfile
import os
import sys
import time

import torch

import kernelgen

gen = torch.Generator(device="cuda").manual_seed(0)
r = lambda *s: torch.randn(*s, device="cuda", generator=gen)
bf = torch.bfloat16


def ss_case(batch, dim, length, n=16):
    u, delta = r(batch, dim, length).to(bf), (0.5 * r(batch, dim, length)).to(bf)
    A = -torch.rand(dim, n, device="cuda", generator=gen)
    B, C = r(batch, n, length).to(bf), r(batch, n, length).to(bf)
    D, bias = r(dim), 0.1 * r(dim)
    leaves = [t.requires_grad_() for t in (u, delta, A, B, C, D, bias)]
    return leaves, lambda u, delta, A, B, C, D, bias: kernelgen.selective_scan(
        u, delta, A, B, C, D, delta_bias=bias, delta_softplus=True)


def la_case(batch, T, H, K):
    q, k, v = (r(batch, T, H, K).to(bf) for _ in range(3))
    g = torch.nn.functional.logsigmoid(r(batch, T, H) + 3)
    leaves = [t.requires_grad_() for t in (q, k, v, g)]
    return leaves, lambda q, k, v, g: kernelgen.linear_attention(q, k, v, g=g)[0]


def timed(step, n=200):
    for _ in range(20):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


out_dir = os.environ.get("OUT", "/tmp")
for name, (leaves, fn) in (("selective_scan", ss_case(1, 64, 64)), ("linear_attention", la_case(1, 64, 2, 64))):
    y = fn(*leaves)
    dy = torch.randn_like(y)
    fwd = lambda: fn(*leaves)
    both = lambda: torch.autograd.grad(fn(*leaves), leaves, dy)
    bwd_only = None
    print(f"{name}: fwd {timed(fwd):.0f} µs, fwd+bwd {timed(both):.0f} µs a call (wall, eager)", flush=True)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(200):
        both()
    profile.disable()
    torch.cuda.synchronize()
    profile.dump_stats(f"{out_dir}/{name}.prof")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(50):
            both()
        torch.cuda.synchronize()
    with open(f"{out_dir}/{name}-ops.txt", "w") as f:
        f.write(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=60))
print("python", sys.version.split()[0], "torch", torch.__version__)
