"""Session 26: the selective-scan op's backward host time at a tiny shape (round 239: fwd+bwd 955
µs against 160 for the forward and 182 for a no-op Function's fwd+bwd): syncs (sync debug mode),
the backward alone (retain_graph), and its pieces."""
import time
import warnings

import torch

import kernelgen
from kernelgen.ops import selective_scan as ops
from kernelgen.templates import selective_scan as ss

warnings.simplefilter("ignore")
gen = torch.Generator(device="cuda").manual_seed(0)
r = lambda *s: torch.randn(*s, device="cuda", generator=gen)
bf = torch.bfloat16


def us(fn, n=1000):
    for _ in range(30):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    host = (time.perf_counter() - t0) / n * 1e6
    torch.cuda.synchronize()
    return host


batch, dim, length, n = 1, 64, 64, 16
u, delta = r(batch, dim, length).to(bf), (0.5 * r(batch, dim, length)).to(bf)
A = -torch.rand(dim, n, device="cuda", generator=gen)
B, C = r(batch, n, length).to(bf), r(batch, n, length).to(bf)
D, bias = r(dim), 0.1 * r(dim)
leaves = [t.requires_grad_() for t in (u, delta, A, B, C, D, bias)]
dy = torch.randn_like(u)
op = lambda: kernelgen.selective_scan(u, delta, A, B, C, D, delta_bias=bias, delta_softplus=True)
torch.cuda.set_sync_debug_mode("warn")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    torch.autograd.grad(op(), leaves, dy)
    torch.cuda.synchronize()
torch.cuda.set_sync_debug_mode(0)
print("syncs in one fwd+bwd:", [str(w.message)[:120] for w in caught if "synchron" in str(w.message)], flush=True)
y = op()
bwd_only = lambda: torch.autograd.grad(y, leaves, dy, retain_graph=True)
u4 = u.detach().unsqueeze(1).requires_grad_()
rows = {
    "op fwd+bwd": lambda: torch.autograd.grad(op(), leaves, dy),
    "op bwd only (retain_graph)": bwd_only,
    "op bwd only, grads of u alone": lambda: torch.autograd.grad(y, [u], dy, retain_graph=True),
    "torch.no_grad op fwd": lambda: torch.no_grad()(op)(),
}
for name, fn in rows.items():
    print(f"  {name:42s} {us(fn):8.1f} µs", flush=True)

# the backward's pieces, called as _SelectiveScan.backward calls them
import cProfile, pstats, io
prof = cProfile.Profile()
prof.enable()
for _ in range(300):
    bwd_only()
prof.disable()
s = io.StringIO()
pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(18)
print(s.getvalue()[-3500:])
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as p:
    for _ in range(20):
        bwd_only()
    torch.cuda.synchronize()
print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=22, max_name_column_width=48))
