"""The sliding-window backward timed three ways on the same GPU: through the op (autograd), by
swa_backward on the op's inputs, and on the bwd template's own inputs (what the probe times)."""
import torch
import triton.testing

import kernelgen
from kernelgen.dispatch import config_for
from kernelgen.templates.sliding_window_attention import BACKWARD, FORWARD, swa_backward, swa_forward

B, T, H, D, W = 8, 4096, 16, 128, 512
gen = torch.Generator(device="cuda").manual_seed(0)
q, k, v, do = (torch.randn(B, T, H, D, device="cuda", generator=gen, dtype=torch.bfloat16) for _ in range(4))
shape = FORWARD.shape_of(B=B, T=T, HQ=H, H=H, D=D, W=W)
bwd_config = config_for(BACKWARD, shape, torch.bfloat16, "", q.device)
o, lse = swa_forward(q, k, v, W, D ** -0.5, None, config_for(FORWARD, shape, torch.bfloat16, "", q.device))
print("swa_backward, op inputs", triton.testing.do_bench(lambda: swa_backward(q, k, v, o, lse, do, W, D ** -0.5, None, bwd_config)))
inputs = BACKWARD.make_inputs(shape, "bf16", "", "cuda", torch.Generator().manual_seed(1))
print("input std", {n: float(t.float().std()) for n, t in inputs.items() if t.dtype == torch.bfloat16})
print("swa_backward, template inputs", triton.testing.do_bench(
    lambda: swa_backward(inputs["q"], inputs["k"], inputs["v"], inputs["o"], inputs["lse"], inputs["do"], W, D ** -0.5,
                         None, bwd_config)))
