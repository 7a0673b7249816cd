"""What the training forward's checkpoints cost (session 23: the op's forward read 0.509 ms with
autograd against 0.436 without): the channel kernel alone at the target with and without the
checkpoints, and the op with and without requires_grad."""
import math
import warnings

import torch
import triton

import kernelgen
from kernelgen.templates import selective_scan as ss
from kernelgen.templates import selective_scan_cuda as ssc

warnings.simplefilter("ignore")
config = {"layout": "channel", "threads": 128, "occupancy": 8, "split": 2, "chunk": 64, "poly": 0, "steps": 16}
g = torch.Generator(device="cuda").manual_seed(0)
r = lambda *s: torch.randn(*s, device="cuda", generator=g)
u, delta = r(8, 2048, 4096).bfloat16(), (r(8, 2048, 4096) * 0.5).bfloat16()
A, B, C, D, bias = -torch.rand(2048, 16, device="cuda", generator=g), r(8, 16, 4096).bfloat16(), \
    r(8, 16, 4096).bfloat16(), r(2048), r(2048) * 0.1
out = torch.empty_like(u)
last = torch.empty(8, 2048, 16, device="cuda")
ckpt = torch.empty(8, 2048, math.ceil(4096 / ss.CHECKPOINT_STEPS), 16, device="cuda")
BC = ss.pack_bc(B[:, None], C[:, None], ssc.packed_states(16))
plain = lambda: ssc.selective_scan_fwd_cuda(config, u, delta, A, B, C, D, None, bias, True, None, out, last, BC=BC)
with_ckpt = lambda: ssc.selective_scan_fwd_cuda(config, u, delta, A, B, C, D, None, bias, True, None, out, last,
                                                checkpoints=ckpt, BC=BC)
leaves = [t.clone().requires_grad_() for t in (u, delta, A, B, C, D, bias)]
op_inference = lambda: kernelgen.selective_scan(u, delta, A, B, C, D, delta_bias=bias, delta_softplus=True)
op_training = lambda: kernelgen.selective_scan(*leaves[:6], delta_bias=leaves[6], delta_softplus=True)
fns = {"kernel": plain, "kernel+ckpt": with_ckpt, "op": op_inference, "op training": op_training}
times = {k: [] for k in fns}
for _ in range(3):
    for k, f in fns.items():
        times[k].append(triton.testing.do_bench(f, warmup=25, rep=200))
print("  ".join(f"{k} {min(v):.4f}" for k, v in times.items()), "ms")
