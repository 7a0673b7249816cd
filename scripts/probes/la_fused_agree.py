"""At the target shape (bf16, g): dq, dk, dv and dg of the backward with the dk and dv passes against
dkv_fused, and both against a float64 chunked reference on the first two heads of batch 0
(session 14). python3 scripts/probes/la_fused_agree.py"""
import torch

from kernelgen.reference import linear_attention as ref
from kernelgen.templates import linear_attention as la

from la_target import K, backward_default, target_inputs

q, k, v, do, g = target_inputs()
base = backward_default("g")


def grads(config):
    dq, dk, dv, dg, _, _ = la.backward(q, k, v, g, None, K ** -0.5, None, False, None, None, None, None, do,
                                       None, None, None, None, None, config, need_dg=True)
    return {"dq": dq, "dk": dk, "dv": dv, "dg": dg.view(g.shape)}


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


passes = grads(base)
fused = grads({**base, "dkv_fused": 1, "dkv_fused_chunk": 32, "dkv_fused_warps": 8})
# float64 reference on a slice (batch 0, heads 0-1): the loss ⟨o, dO⟩ on that slice only
sl = (slice(0, 1), slice(None), slice(0, 2))
leaves = [t[sl].double().requires_grad_() for t in (q, k, v, g)]
o, _ = ref.linear_attention_chunked(leaves[0], leaves[1], leaves[2], g=leaves[3], scale=K ** -0.5)
ref_grads = dict(zip(["dq", "dk", "dv", "dg"], torch.autograd.grad(o, leaves, do[sl].double())))
for name in ("dq", "dk", "dv", "dg"):
    print(f"{name}: fused vs passes {rel(fused[name], passes[name]):.2e}; vs float64: passes "
          f"{rel(passes[name][sl], ref_grads[name]):.2e}, fused {rel(fused[name][sl], ref_grads[name]):.2e}")
