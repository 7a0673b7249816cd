"""Session 26: the public ops inside torch.compile with its default (inductor) backend on the GPU,
as a user's model would run them: outputs and gradients against eager, and the time of a small
compiled block around each op against eager (graph breaks at each op; eager_op)."""
import warnings

import torch
import triton.testing

import kernelgen

warnings.simplefilter("ignore")
torch.manual_seed(0)
dev, bf = "cuda", torch.bfloat16


def block_ss(u, delta, A, B, C, D):
    y = kernelgen.selective_scan(torch.nn.functional.silu(u), delta, A, B, C, D, delta_softplus=True)
    return (y * 2).sum(1)


def block_la(q, k, v, g):
    o, _ = kernelgen.linear_attention(torch.nn.functional.normalize(q, dim=-1), k, v, g=torch.nn.functional.logsigmoid(g))
    return o.float().square().mean(-1)


def leaves(ts):
    return [t.detach().clone().requires_grad_(t.is_floating_point()) for t in ts]


cases = {
    "selective_scan": (block_ss, [torch.randn(2, 512, 1000, device=dev, dtype=bf), torch.randn(2, 512, 1000, device=dev, dtype=bf),
                                  -torch.rand(512, 16, device=dev) - 0.5, torch.randn(2, 16, 1000, device=dev, dtype=bf),
                                  torch.randn(2, 16, 1000, device=dev, dtype=bf), torch.randn(512, device=dev)]),
    "linear_attention": (block_la, [torch.randn(2, 1000, 4, 64, device=dev, dtype=bf) for _ in range(3)]
                         + [torch.randn(2, 1000, 4, device=dev) + 3]),
}
for name, (fn, ins) in cases.items():
    torch._dynamo.reset()
    compiled = torch.compile(fn)
    a, b = leaves(ins), leaves(ins)
    want, got = fn(*a), compiled(*b)
    up = torch.randn_like(want)
    ga = torch.autograd.grad(want, [t for t in a if t.requires_grad], up)
    gb = torch.autograd.grad(got, [t for t in b if t.requires_grad], up)
    err = max([((got - want).abs().max() / want.abs().max()).item()]
              + [((y - x).abs().max() / x.abs().max().clamp_min(1e-30)).item() for x, y in zip(ga, gb)])
    fb = lambda f, t: (lambda: torch.autograd.grad(f(*t), [x for x in t if x.requires_grad], up))
    ms_e, ms_c = triton.testing.do_bench(fb(fn, a)), triton.testing.do_bench(fb(compiled, b))
    print(f"{name}: inductor vs eager max rel diff {err:.2e}; fwd+bwd eager {ms_e:.4f} ms, compiled {ms_c:.4f} ms", flush=True)
