"""Session 26: same-process A/B of this session's host-side changes.
- selective_scan eager fwd+bwd: the op at HEAD (scripts/probes/_ss_ops_head.py, a copy of
  kernelgen/ops/selective_scan.py at 51ce409, removed after the run) against the working tree;
- the decay gradient's reverse cumsum: the walk (BLOCKS_FROM_T out of reach) against blocks,
  inside linear_attention's gated backward at the target shape and at B=1, T=65536.
Interleaved, medians of 5 alternations."""
import statistics
import sys
import time
import warnings

import torch
import triton

sys.path.insert(0, "scripts/probes")
import _ss_ops_head as ss_head  # noqa: E402
from kernelgen.ops import selective_scan as ss_new  # noqa: E402
from kernelgen.templates import reverse_cumsum as chunk_common  # noqa: E402  (the switch moved there in session 27)
import kernelgen  # noqa: E402

warnings.simplefilter("ignore")
gen = torch.Generator(device="cuda").manual_seed(0)
r = lambda *s: torch.randn(*s, device="cuda", generator=gen)
bf = torch.bfloat16


def host_us(fn, n=400):
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


for batch, dim, length in ((1, 64, 64), (2, 1536, 2048), (4, 64, 256)):
    n = 16
    u, delta = r(batch, dim, length).to(bf), (0.5 * r(batch, dim, length)).to(bf)
    A = -torch.rand(dim, n, device="cuda", generator=gen)
    B, C = r(batch, n, length).to(bf), r(batch, n, length).to(bf)
    D, bias = r(dim), 0.1 * r(dim)
    leaves = [t.requires_grad_() for t in (u, delta, A, B, C, D, bias)]
    dy = torch.randn_like(u)
    fns = {name: (lambda m=m: torch.autograd.grad(m.selective_scan(u, delta, A, B, C, D, delta_bias=bias, delta_softplus=True),
                                                    leaves, dy)) for name, m in (("HEAD", ss_head), ("new", ss_new))}
    g_head, g_new = fns["HEAD"](), fns["new"]()
    diff = max((a - b).abs().max().item() for a, b in zip(g_head, g_new))
    times = {name: [] for name in fns}
    for _ in range(5):
        for name, fn in fns.items():
            times[name].append(host_us(fn))
    print(f"selective_scan fwd+bwd batch {batch} dim {dim} L {length}: " +
          ", ".join(f"{k} {statistics.median(v):.1f} µs" for k, v in times.items()) +
          f" (wall a call, eager); grads max |diff| {diff:.1e}, dB contiguous {g_new[3].is_contiguous()}", flush=True)

for B_, T_ in ((8, 4096), (1, 65536)):
    H, K = 16, 128
    q, k, v = (r(B_, T_, H, K).to(bf) for _ in range(3))
    g = torch.nn.functional.logsigmoid(r(B_, T_, H) + 2)
    leaves = [t.requires_grad_() for t in (q, k, v, g)]
    do = torch.randn_like(v)
    step = lambda: torch.autograd.grad(kernelgen.linear_attention(*leaves[:3], g=leaves[3])[0], leaves, do)
    out = {}
    for name, limit in (("walk", 10 ** 9), ("blocks", 2048)):
        chunk_common.BLOCKS_FROM_T = limit
        out[name] = step()
        out[name + " ms"] = [triton.testing.do_bench(step, warmup=10, rep=100)]
    for _ in range(2):
        for name, limit in (("walk", 10 ** 9), ("blocks", 2048)):
            chunk_common.BLOCKS_FROM_T = limit
            out[name + " ms"].append(triton.testing.do_bench(step, warmup=10, rep=100))
    dg_rel = ((out["walk"][3] - out["blocks"][3]).abs().max() / out["walk"][3].abs().max()).item()
    print(f"linear_attention gated fwd+bwd B={B_} T={T_}: walk {statistics.median(out['walk ms']):.4f} ms, "
          f"blocks {statistics.median(out['blocks ms']):.4f} ms; dg max rel diff {dg_rel:.1e}", flush=True)
chunk_common.BLOCKS_FROM_T = 2048
