"""Op-level fwd+bwd next to the backward's own launch (session 4: the sliding-window bench
disagreed with the probe). python3 scripts/probes/op_check.py"""
import torch
import triton.testing

import kernelgen
from kernelgen.dispatch import config_for
from kernelgen.templates.sliding_window_attention import BACKWARD, FORWARD

gen = torch.Generator(device="cuda").manual_seed(0)
B, T, H, D, W = 8, 4096, 16, 128, 512
q, k, v, do = (torch.randn(B, T, H, D, device="cuda", generator=gen, dtype=torch.bfloat16) for _ in range(4))
shape = FORWARD.shape_of(B=B, T=T, HQ=H, H=H, D=D, W=W)
print("swa bwd config", config_for(BACKWARD, shape, torch.bfloat16, "", q.device))
leaves = [x.clone().requires_grad_() for x in (q, k, v)]


def swa():
    o = kernelgen.sliding_window_attention(*leaves, W)
    torch.autograd.grad(o, leaves, do)


print("swa op fwd", triton.testing.do_bench(lambda: kernelgen.sliding_window_attention(q, k, v, W)))
print("swa op fwd+bwd", triton.testing.do_bench(swa))
K = V = 128
q2, k2, v2, do2 = (torch.randn(B, T, H, d, device="cuda", generator=gen, dtype=torch.bfloat16) for d in (K, K, V, V))
g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, device="cuda", generator=gen) + 2.0)
for decay in (g, None):
    leaves2 = [x.clone().requires_grad_() for x in ((q2, k2, v2) if decay is None else (q2, k2, v2, g))]

    def la():
        o, _ = kernelgen.linear_attention(*leaves2[:3], g=leaves2[3] if decay is not None else None)
        torch.autograd.grad(o, leaves2, do2)
    print("la op fwd+bwd", "g" if decay is not None else "none", triton.testing.do_bench(la))
