"""linear_scan fwd+bwd at B=8 T=4096 D=2048 (target <= 0.50 ms eager): eager and CUDA-graph times
with the look-back's tile order by program id (default) and by atomic ticket, and the host's
speed (an empty autograd.Function's fwd+bwd per call), to tell GPU time from host time."""
import time
import torch, triton
import kernelgen
import kernelgen.templates.linear_scan as ls

dev = "cuda"
B, T, D = 8, 4096, 2048
X = torch.randn(B, T, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
G = torch.nn.functional.logsigmoid(torch.randn(B, T, D, device=dev)).to(torch.bfloat16).requires_grad_()
DO = torch.randn(B, T, D, device=dev, dtype=torch.bfloat16)


def big():
    out, _ = kernelgen.linear_scan(X, G)
    return torch.autograd.grad(out, (X, G), DO)


def per_call(fn, n=300):
    for _ in range(20):
        fn()
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n * 1e3


class Nop(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        return torch.empty_like(a)

    @staticmethod
    def backward(ctx, d):
        return torch.empty_like(d), torch.empty_like(d)


xs, gs = X[:1, :64, :64].detach().clone().requires_grad_(), G[:1, :64, :64].detach().clone().requires_grad_()
dos = DO[:1, :64, :64].clone()
print(f"host: empty autograd.Function fwd+bwd {per_call(lambda: torch.autograd.grad(Nop.apply(xs, gs), (xs, gs), dos)) * 1e3:.1f} us/call")
print(f"host: op fwd+bwd at B=1 T=64 D=64 {per_call(lambda: torch.autograd.grad(kernelgen.linear_scan(xs, gs)[0], (xs, gs), dos)) * 1e3:.1f} us/call")
real = ls._run_scan
for ticket in (False, True):
    def patched(config, **kw):
        return real({**config, "ticket": ticket} if config.get("algorithm") == "lookback" else config, **kw)
    ls._run_scan = patched
    eager = triton.testing.do_bench(big, warmup=50, rep=400)
    loop = per_call(big)
    torch.cuda.synchronize()
    try:
        graph = triton.testing.do_bench_cudagraph(big, rep=400)
    except Exception as error:   # noqa: BLE001
        graph = float("nan"); print("graph:", error)
    print(f"ticket={ticket}: fwd+bwd eager do_bench {eager:.4f} ms, back-to-back loop {loop:.4f} ms, CUDA graph {graph:.4f} ms")
ls._run_scan = real
