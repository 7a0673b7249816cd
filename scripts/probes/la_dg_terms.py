"""Op-level linear attention fwd+bwd with g for each place the decay gradient's terms come from
(dg_terms), and without decay (session 5). python3 scripts/probes/la_dg_terms.py
Measured at commit 5bf34a8; the dg_terms knob was removed after it (docs/PERF.md, session 5)."""
import torch
import triton.testing

import kernelgen
from kernelgen.ops import linear_attention as op_module

from la_target import target_inputs

q, k, v, do, g = target_inputs()
dispatch = op_module.config_for
mode = {}


def config_for(template, *args, **kwargs):
    config = dispatch(template, *args, **kwargs)
    return {**config, **mode} if template.kernel == "bwd" else config


op_module.config_for = config_for
grads = {}
for decay in (g, None):
    for terms in (("inline", "dv", "kernel") if decay is not None else (None,)):
        mode.clear()
        if terms:
            mode["dg_terms"] = terms
        leaves = [x.clone().requires_grad_() for x in ((q, k, v) if decay is None else (q, k, v, g))]

        def step():
            o, _ = kernelgen.linear_attention(*leaves[:3], g=leaves[3] if decay is not None else None)
            return torch.autograd.grad(o, leaves, do)
        out = step()
        if terms:
            grads[terms] = out[3].float()
        ms = triton.testing.do_bench(step)
        print(f"la op fwd+bwd {'g' if decay is not None else 'none'} dg_terms={terms}: {ms:.4f} ms")
ref = grads["inline"]
for terms, dg in grads.items():
    print(f"dg {terms} vs inline: rel {((dg - ref).norm() / ref.norm()).item():.2e}")
