"""Host time of linear_scan fwd+bwd as bench.py runs it (autograd.grad with an upstream gradient)."""
import time, torch, cProfile, pstats, io
import kernelgen
x = torch.randn(1, 64, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
g = torch.nn.functional.logsigmoid(torch.randn(1, 64, 64, device="cuda")).to(torch.bfloat16).requires_grad_()
do = torch.randn_like(x)
def fb():
    o, _ = kernelgen.linear_scan(x, g)
    torch.autograd.grad(o, (x, g), do)
def fwd_only():
    with torch.no_grad():
        kernelgen.linear_scan(x, g)
def per_call(fn, n=300):
    for _ in range(20): fn()
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(n): fn()
    torch.cuda.synchronize(); return (time.perf_counter() - t) / n * 1e6
print(f"fwd (no_grad) {per_call(fwd_only):7.1f} us   fwd+bwd {per_call(fb):7.1f} us")
pr = cProfile.Profile(); pr.enable()
for _ in range(300): fb()
pr.disable()
for key in ("tottime", "cumtime"):
    s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats(key).print_stats(22); print(s.getvalue()[:5000])
