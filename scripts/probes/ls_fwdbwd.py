"""linear_scan fwd+bwd at B=8 T=4096 D=2048 (target <= 0.50 ms eager): eager and CUDA-graph times
with the look-back's tile order by program id (default) and by atomic ticket, and the host's
speed (an empty autograd.Function's fwd+bwd per call), to tell GPU time from host time."""
import torch, triton
import kernelgen
import kernelgen.templates.linear_scan as ls
from scan_host import Nop, per_call, target_fwd_bwd

big = target_fwd_bwd()
X = torch.randn(1, 64, 64, device="cuda", dtype=torch.bfloat16)
G = torch.nn.functional.logsigmoid(torch.randn(1, 64, 64, device="cuda")).to(torch.bfloat16)
DO = torch.randn_like(X)
xs, gs, dos = X.clone().requires_grad_(), G.clone().requires_grad_(), DO
print(f"host: empty autograd.Function fwd+bwd {per_call(lambda: torch.autograd.grad(Nop.apply(xs, gs), (xs, gs), dos), n=300):.1f} us/call")
print(f"host: op fwd+bwd at B=1 T=64 D=64 {per_call(lambda: torch.autograd.grad(kernelgen.linear_scan(xs, gs)[0], (xs, gs), dos), n=300):.1f} us/call")
real = ls._run_scan
for ticket in (False, True):
    def patched(config, **kw):
        return real({**config, "ticket": ticket} if config.get("algorithm") == "lookback" else config, **kw)
    ls._run_scan = patched
    eager = triton.testing.do_bench(big, warmup=50, rep=400)
    loop = per_call(big, n=300) / 1e3
    torch.cuda.synchronize()
    try:
        graph = triton.testing.do_bench_cudagraph(big, rep=400)
    except Exception as error:   # noqa: BLE001
        graph = float("nan"); print("graph:", error)
    print(f"ticket={ticket}: fwd+bwd eager do_bench {eager:.4f} ms, back-to-back loop {loop:.4f} ms, CUDA graph {graph:.4f} ms")
ls._run_scan = real
