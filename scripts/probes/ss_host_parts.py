"""Session 26: the selective-scan eager fwd+bwd's host time piece by piece, in µs a call without a
profiler (cProfile inflates Python calls), at a tiny shape (GPU work of a few µs) and at batch 2,
dim 1536, L 2048 (CUDA backends). Each piece is called 2000 times; the GPU queue never drains
because every piece is host-bound here."""
import time
import warnings

import torch

import kernelgen
from kernelgen import cuda_jit
from kernelgen.dispatch import config_for
from kernelgen.ops import selective_scan as ops
from kernelgen.templates import selective_scan as ss
from kernelgen.templates import selective_scan_cuda as sc

warnings.simplefilter("ignore")
gen = torch.Generator(device="cuda").manual_seed(0)
r = lambda *s: torch.randn(*s, device="cuda", generator=gen)
bf = torch.bfloat16


def us(fn, n=2000):
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    host = (time.perf_counter() - t0) / n * 1e6
    torch.cuda.synchronize()
    return host


class _Nop(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *xs):
        ctx.save_for_backward(*xs)
        return torch.empty_like(xs[0])

    @staticmethod
    def backward(ctx, g):
        return tuple(torch.empty_like(x) for x in ctx.saved_tensors)


for batch, dim, length in ((1, 64, 64), (2, 1536, 2048)):
    n = 16
    u, delta = r(batch, dim, length).to(bf), (0.5 * r(batch, dim, length)).to(bf)
    A = -torch.rand(dim, n, device="cuda", generator=gen)
    B, C = r(batch, n, length).to(bf), r(batch, n, length).to(bf)
    D, bias = r(dim), 0.1 * r(dim)
    leaves = [t.requires_grad_() for t in (u, delta, A, B, C, D, bias)]
    dy = torch.randn_like(u)
    shape = ss.FWD.shape_of(batch=batch, dim=dim, L=length, N=n)
    fcfg = config_for(ss.FWD, shape, bf, "", u.device)
    bcfg = config_for(ss.BWD, shape, bf, "", u.device)
    B4, C4 = B.detach().unsqueeze(1), C.detach().unsqueeze(1)
    out = torch.empty_like(u)
    last = torch.empty(batch, dim, n, device="cuda")
    ck = torch.empty(batch, dim, -(-length // ss.CHECKPOINT_STEPS), n, device="cuda")
    ud, dd, Ad, Dd, biasd = (t.detach() for t in (u, delta, A, D, bias))
    BC = ss.pack_bc(B4, C4, 16)
    rows = {
        "op fwd (no grad)": lambda: kernelgen.selective_scan(ud, dd, Ad, B.detach(), C.detach(), Dd, delta_bias=biasd, delta_softplus=True),
        "op fwd (grad)": lambda: kernelgen.selective_scan(u, delta, A, B, C, D, delta_bias=bias, delta_softplus=True),
        "op fwd+bwd": lambda: torch.autograd.grad(kernelgen.selective_scan(u, delta, A, B, C, D, delta_bias=bias, delta_softplus=True), leaves, dy),
        "nop Function fwd+bwd, 7 inputs": lambda: torch.autograd.grad(_Nop.apply(*leaves), leaves, dy),
        "torch.empty": lambda: torch.empty(batch, dim, length, device="cuda", dtype=bf),
        "config_for fwd": lambda: config_for(ss.FWD, shape, bf, "", u.device),
        "pack_bc": lambda: ss.pack_bc(B4, C4, 16),
        "selective_scan_fwd (template, training)": lambda: ss.selective_scan_fwd(fcfg, ud, dd, Ad, B4, C4, Dd, None, biasd, True, None, out, last, ck),
        "selective_scan_bwd (template)": lambda: ss.selective_scan_bwd(bcfg, ud, dd, Ad, BC, n, Dd, None, biasd, True, ck, dy, None, out, out, None, False),
        "cuda_jit.pointer x11": lambda: [cuda_jit.pointer(ud) for _ in range(11)],
        "signature": lambda: ops._signature(u, delta, A, B, C, D, None, bias, None),
    }
    print(f"batch {batch} dim {dim} L {length}: fwd config {fcfg}, bwd config {bcfg}", flush=True)
    for name, fn in rows.items():
        print(f"  {name:42s} {us(fn):8.1f} µs", flush=True)

# linear_attention (gated), tiny: the op against its template calls
from kernelgen.templates import linear_attention as la

q, k, v = (r(1, 64, 2, 64).to(bf) for _ in range(3))
g = torch.nn.functional.logsigmoid(r(1, 64, 2) + 3)
la_leaves = [t.requires_grad_() for t in (q, k, v, g)]
do = torch.randn_like(v)
lshape = {"B": 1, "T": 64, "H": 2, "K": 64, "V": 64, "F": 64}
lf = config_for(la.templates_for(None)[0], lshape, bf, "g", q.device)
lb = config_for(la.templates_for(None)[1], lshape, bf, "g", q.device)
qd, kd, vd, gd = (t.detach() for t in la_leaves)
o_ = la.forward(qd, kd, vd, gd, None, 0.125, None, False, None, None, False, None, lf)[0]
rows = {
    "la op fwd (grad)": lambda: kernelgen.linear_attention(*la_leaves[:3], g=la_leaves[3]),
    "la op fwd+bwd": lambda: torch.autograd.grad(kernelgen.linear_attention(*la_leaves[:3], g=la_leaves[3])[0], la_leaves, do),
    "la nop Function fwd+bwd, 4 inputs": lambda: torch.autograd.grad(_Nop.apply(*la_leaves), la_leaves, do),
    "la.forward (template)": lambda: la.forward(qd, kd, vd, gd, None, 0.125, None, False, None, None, False, None, lf),
    "la.backward (template, dg)": lambda: la.backward(qd, kd, vd, gd, None, 0.125, None, False, None, None, o_, None, do,
                                                      None, None, None, None, None, lb, need_dg=True),
}
for name, fn in rows.items():
    print(f"  {name:42s} {us(fn):8.1f} µs", flush=True)
