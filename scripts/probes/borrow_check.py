"""Borrowed configs on the real GPU (round 205): with tuned/h100.json relabelled as another sm_90
GPU's file (and no file of this GPU's own), every shipped entry's shape resolves to the config it
resolves to from the real file, each borrow warns, and the ops run at two bench shapes."""
import json
import os
import tempfile
import warnings

import torch

from kernelgen import dispatch
from kernelgen.templates import get_template

shipped = json.load(open("tuned/h100.json"))
twin_dir = tempfile.mkdtemp()
twin = dict(shipped, gpu=dict(shipped["gpu"], key="h100-twin", name="H100 twin"))
json.dump(twin, open(os.path.join(twin_dir, "h100-twin.json"), "w"))


def resolve_all(tuned_dir):
    os.environ["KERNELGEN_TUNED_DIR"] = tuned_dir
    dispatch.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        configs = [dispatch.config_for(get_template(f"{e['op']}.{e['kernel']}"), e["shape"], e["dtype"], e["flags"],
                                       "cuda") for e in shipped["entries"]]
    return configs, [str(w.message) for w in caught]


own, own_warnings = resolve_all(os.path.abspath("tuned"))
borrowed, borrow_warnings = resolve_all(twin_dir)
same = sum(a == b for a, b in zip(own, borrowed))
print(f"{len(own)} entries: {same} resolve to the same config borrowed; own-file warnings {len(own_warnings)}, "
      f"borrow warnings {len(borrow_warnings)}")
print("first borrow warning:", borrow_warnings[0][:300] if borrow_warnings else None)

import kernelgen  # noqa: E402  (the ops with the borrowed configs)
torch.manual_seed(0)
B, T, H, K = 8, 4096, 16, 128
q, k, v = (torch.randn(B, T, H, K, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
g = (-torch.rand(B, T, H, device="cuda") * 0.1).requires_grad_()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    o, _ = kernelgen.linear_attention(q, k, v, g=g)
    o.float().square().sum().backward()
    u = torch.randn(8, 2048, 4096, device="cuda", dtype=torch.bfloat16)
    delta = torch.randn_like(u)
    A = -torch.rand(2048, 16, device="cuda")
    Bm, Cm = (torch.randn(8, 16, 4096, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    y = kernelgen.selective_scan(u, delta, A, Bm, Cm, D=torch.randn(2048, device="cuda"),
                                 delta_bias=torch.rand(2048, device="cuda"), delta_softplus=True)
torch.cuda.synchronize()
print("ops ran: linear_attention fwd+bwd finite", bool(torch.isfinite(q.grad).all() and torch.isfinite(g.grad).all()),
      "| selective_scan finite", bool(torch.isfinite(y).all()))
