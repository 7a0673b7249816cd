"""What the decay gradient's row / column terms (NEED_R) cost the linear-attention dq and dk passes
now: per-kernel time, registers and spills of the backward with and without dg, for the default
and a few tile overrides (session 13). python3 scripts/probes/la_r_cost.py"""
import json
import sys

import triton.testing

from kernelgen.templates import linear_attention as la
from kernelgen.tune.breakdown import kernel_split

from la_target import K, backward_default, target_inputs

q, k, v, do, g = target_inputs()
base = backward_default("g")
overrides = json.loads(sys.argv[1]) if len(sys.argv) > 1 else [{}]


def bwd(config, **need):
    return lambda: la.backward(q, k, v, g, None, K ** -0.5, None, False, None, None, None, None, do,
                               None, None, None, None, None, config, **need)


for override in overrides:
    config = {**base, **override}
    for label, need in (("dg", dict(need_dg=True)), ("no dg", {}),
                        ("dq+dk, dg", dict(need_dq=False, need_dk=False, need_dv=False, need_dg=True))):
        fn = bwd(config, **need)
        ms = triton.testing.do_bench(fn, warmup=25, rep=100)
        split = kernel_split(fn, "cuda")
        parts = "  ".join(f"{name[:22]} {row['ms']:.4f}x{row['launches']:g} "
                          + ",".join(f"r{c['regs']}s{c['spills']}" for c in row["compiled"])
                          for name, row in split.items())
        print(f"{json.dumps(override):42s} {label:12s} {ms:.4f} ms | {parts}", flush=True)
