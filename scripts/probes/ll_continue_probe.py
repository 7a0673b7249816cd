"""Session 27: loglinear_attention fwd+bwd of 4096 tokens continuing from a state at position P
(the backward's level scan no longer walks the ~P/C chunks before the call), against the same
call from position 0. States random; level count from the largest position."""
import math

import torch
import triton

import kernelgen
from kernelgen.ops.loglinear_attention import LogLinearState

torch.manual_seed(0)
B, T, H, K = 8, 4096, 16, 128
for P in (0, 4096 * 63 + 17, (1 << 24) - 5):
    L = math.ceil(math.log2(P + T)) + 1
    q, k, v = (torch.randn(B, T, H, K, device="cuda").bfloat16().requires_grad_() for _ in range(3))
    g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, device="cuda") + 3).requires_grad_()
    lam = torch.rand(B, T, H, L, device="cuda").requires_grad_()
    state = LogLinearState(torch.randn(B, H, L, K, K, device="cuda") * 0.01,
                           torch.full((B,), P, dtype=torch.int64, device="cuda"), P)
    state.states[:, :, 0] = 0
    for l in range(1, L):   # zero where bit l-1 of P is clear, as the layout requires
        if not (P >> (l - 1)) & 1:
            state.states[:, :, l] = 0
    do = torch.randn(B, T, H, K, device="cuda").bfloat16()
    leaves = [q, k, v, g, lam]
    step = lambda: torch.autograd.grad(kernelgen.loglinear_attention(q, k, v, g, lam, initial_state=state)[0],
                                       leaves, do)
    step()
    ms = triton.testing.do_bench(step, warmup=5, rep=100)
    print(f"B={B} T={T} H={H} K=V={K} from position {P} (L={L}): fwd+bwd {ms:.3f} ms", flush=True)
