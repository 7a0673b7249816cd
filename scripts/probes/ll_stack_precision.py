"""Relative L2 errors of the loglinear forward and backward (bf16, model-like gates) against the
float64 reference, for partial configs given as JSON on the command line: does reading live blocks
back from the bf16 blocks (stack_in_blocks) cost precision next to the fp32 stack?
    python3 scripts/probes/ll_stack_precision.py '[{}, {"stack_in_blocks": 1}]'"""
import json
import sys

import torch

from kernelgen.reference import loglinear_attention as ref
from kernelgen.templates import loglinear_attention as tmpl

B, T, H, K, V, L = 1, 4096, 2, 128, 128, 13
gen = torch.Generator().manual_seed(0)
q, k, v = (torch.randn(B, T, H, d, generator=gen).to("cuda", torch.bfloat16) for d in (K, K, V))
g, lam = tmpl.make_gates((B, T, H, L), "cuda", gen)
do = torch.randn(B, T, H, V, generator=gen).to("cuda", torch.bfloat16)
leaves = [x.detach().double().requires_grad_() for x in (q, k, v, g, lam)]
ro, _ = ref.loglinear_attention_reference(*leaves)
grads = torch.autograd.grad(ro, leaves, do.double())
shape = {"B": B, "T": T, "H": H, "K": K, "V": V, "L": L}


def rel(x, want):
    return ((x.double() - want).norm() / want.norm()).item()


for extra in json.loads(sys.argv[1]):
    fwd = {**tmpl.LogLinearForward().default_config(shape), **extra}
    bwd = {**tmpl.LogLinearBackward().default_config(shape), **extra}
    plan = tmpl.make_plan(B, T, fwd["chunk"], None, None, "cuda")
    o, _ = tmpl.forward(q, k, v, g, lam, K ** -0.5, fwd, plan)
    out = tmpl.backward(q, k, v, g, lam, do, K ** -0.5, bwd, tmpl.make_plan(B, T, bwd["chunk"], None, None, "cuda"))
    errs = [rel(o, ro)] + [rel(x, w) for x, w in zip(out, grads)]
    print(json.dumps(extra), " ".join(f"{n} {e:.2e}" for n, e in zip(("o", "dq", "dk", "dv", "dg", "dlam"), errs)))
