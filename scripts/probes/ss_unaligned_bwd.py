"""fwd+bwd and the backward alone at L 4096 against 4093 (rows not 16-byte aligned) at the target
(session 23): does the channel backward pay for unaligned rows? Its loads are per element either way."""
import warnings

import torch
import triton

import kernelgen

warnings.simplefilter("ignore")
g = torch.Generator(device="cuda").manual_seed(0)
for length in (4096, 4093):
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)
    leaves = [r(8, 2048, length).bfloat16().requires_grad_(), (r(8, 2048, length) * 0.5).bfloat16().requires_grad_(),
              (-torch.rand(2048, 16, device="cuda", generator=g)).requires_grad_(),
              r(8, 16, length).bfloat16().requires_grad_(), r(8, 16, length).bfloat16().requires_grad_(),
              r(2048).requires_grad_(), (r(2048) * 0.1).requires_grad_()]
    u, delta, A, B, C, D, bias = leaves
    dout = torch.randn_like(u)
    fwd = lambda: kernelgen.selective_scan(u, delta, A, B, C, D, delta_bias=bias, delta_softplus=True)
    both = lambda: torch.autograd.grad(fwd(), leaves, dout)
    y = fwd()
    bwd = lambda: torch.autograd.grad(y, leaves, dout, retain_graph=True)
    t = {name: min(triton.testing.do_bench(f, warmup=25, rep=200) for _ in range(2))
         for name, f in (("fwd", fwd), ("fwd+bwd", both), ("bwd", bwd))}
    print(f"L={length}: " + "  ".join(f"{k} {v:.3f}" for k, v in t.items()) + " ms", flush=True)
