"""Host overhead per call of linear_scan at a tiny shape (GPU time ~ a few us): where the us go."""
import time, torch, cProfile, pstats, io
import kernelgen
from kernelgen.templates.linear_scan import linear_scan_fwd, FWD
from kernelgen.dispatch import config_for

x = torch.randn(1, 64, 64, device="cuda", dtype=torch.bfloat16)
g = torch.nn.functional.logsigmoid(torch.randn_like(x))
def per_call(fn, n=300):
    for _ in range(20): fn()
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(n): fn()
    torch.cuda.synchronize(); return (time.perf_counter() - t) / n * 1e6
o = torch.empty_like(x)
cfg = config_for(FWD, {"B": 1, "T": 64, "D": 64}, x.dtype, "", x.device)
print("config", cfg)
print(f"op fwd            {per_call(lambda: kernelgen.linear_scan(x, g)):7.1f} us")
print(f"launcher only     {per_call(lambda: linear_scan_fwd(cfg, x, g, None, o, None)):7.1f} us")
print(f"torch.add (ref)   {per_call(lambda: torch.add(x, g)):7.1f} us")
xr, gr = x.clone().requires_grad_(), g.clone().requires_grad_()
def fb():
    o, _ = kernelgen.linear_scan(xr, gr); o.sum().backward()
print(f"op fwd+bwd        {per_call(fb):7.1f} us")
try:
    from fla.ops.hgrn import chunk_hgrn
    print(f"fla chunk_hgrn fwd {per_call(lambda: chunk_hgrn(x, g)):7.1f} us")
except Exception as e: print("fla:", e)
pr = cProfile.Profile(); pr.enable()
for _ in range(300): kernelgen.linear_scan(x, g)
pr.disable(); s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(14); print(s.getvalue()[:3500])
