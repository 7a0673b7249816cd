"""Session 26: linear_attention's gated fwd+bwd at B=1, T=65536 (round 242: 10.3 ms) with its
backward's split_len from the call's shape (Template.shape_knobs) against the B=8 entry's
split_len 0, interleaved; gradients compared."""
import statistics
import warnings

import torch
import triton

import kernelgen
from kernelgen import dispatch
from kernelgen.templates import get_template

warnings.simplefilter("ignore")
gen = torch.Generator(device="cuda").manual_seed(0)
B, T, H, K = 1, 65536, 16, 128
q, k, v = (torch.randn(B, T, H, K, device="cuda", generator=gen).bfloat16() for _ in range(3))
g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, device="cuda", generator=gen) + 2)
leaves = [t.requires_grad_() for t in (q, k, v, g)]
do = torch.randn_like(v)
step = lambda: torch.autograd.grad(kernelgen.linear_attention(*leaves[:3], g=leaves[3])[0], leaves, do)
bwd = get_template("linear_attention.bwd")
knobs = bwd.shape_knobs
grads, times = {}, {"entry's split_len": [], "call's split_len": []}
for _ in range(3):
    for name, shape_knobs in (("entry's split_len", ()), ("call's split_len", knobs)):
        type(bwd).shape_knobs = shape_knobs
        dispatch.reset()
        grads[name] = step()
        times[name].append(triton.testing.do_bench(step, warmup=5, rep=60))
type(bwd).shape_knobs = knobs
dispatch.reset()
print("bwd config now:", dispatch.config_for(bwd, dict(B=B, T=T, H=H, K=K, V=K, F=K), torch.bfloat16, "g", q.device))
a, b = grads.values()
rel = [((x.float() - y.float()).abs().max() / y.float().abs().max()).item() for x, y in zip(a, b)]
print(", ".join(f"{k} {statistics.median(v):.3f} ms" for k, v in times.items()),
      "| max rel diff dq dk dv dg:", " ".join(f"{r:.1e}" for r in rel), flush=True)
