"""Session 27: where loglinear_attention's fwd+bwd from a state at position P spends its time
(round 246: 94.7 ms at P = 258065 against ~2.4 ms from position 0 without a state): forward alone,
fwd+bwd, and the torch profiler's top ops of one fwd+bwd."""
import math

import torch
import triton
from torch.profiler import ProfilerActivity, profile

import kernelgen
from kernelgen.ops.loglinear_attention import LogLinearState

torch.manual_seed(0)
B, T, H, K, P = 8, 4096, 16, 128, 4096 * 63 + 17
L = math.ceil(math.log2(P + T)) + 1
q, k, v = (torch.randn(B, T, H, K, device="cuda").bfloat16().requires_grad_() for _ in range(3))
g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, device="cuda") + 3).requires_grad_()
lam = torch.rand(B, T, H, L, device="cuda").requires_grad_()
states = torch.randn(B, H, L, K, K, device="cuda") * 0.01
for l in range(L):
    if l == 0 or not (P >> (l - 1)) & 1:
        states[:, :, l] = 0
state = LogLinearState(states, torch.full((B,), P, dtype=torch.int64, device="cuda"), P)
do = torch.randn(B, T, H, K, device="cuda").bfloat16()
leaves = [q, k, v, g, lam]
fwd = lambda: kernelgen.loglinear_attention(q, k, v, g, lam, initial_state=state)[0]
step = lambda: torch.autograd.grad(fwd(), leaves, do)
none = lambda: torch.autograd.grad(kernelgen.loglinear_attention(q, k, v, g, lam[..., :13])[0], leaves[:4] + [lam], do,
                                   allow_unused=True)
step(), none()
with torch.no_grad():
    print(f"fwd {triton.testing.do_bench(fwd, warmup=3, rep=50):.3f} ms (no grad)", flush=True)
print(f"fwd+bwd {triton.testing.do_bench(step, warmup=3, rep=50):.3f} ms; without a state, from 0: "
      f"{triton.testing.do_bench(none, warmup=3, rep=50):.3f} ms", flush=True)
torch.cuda.synchronize()
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    step()
    torch.cuda.synchronize()
events = prof.key_averages()
print(events.table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=50)[:6000])
launches = sum(e.count for e in events if e.key.startswith("cuda") and "Launch" in e.key)
print("kernel launches:", launches)
