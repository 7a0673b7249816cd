"""Session 25: bench's decode row at batch 32, dim 2048, N 128 timed the op at 0.146 ms against
0.030 for the same Triton config run directly. Host time per call, syncs, and do_bench of both."""
import time
import warnings

import torch
import triton

import kernelgen
from kernelgen.templates import selective_scan as ss

warnings.simplefilter("ignore")
for batch, dim, n in ((32, 2048, 128), (256, 4096, 16), (32, 2048, 16)):
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)
    bf = torch.bfloat16
    state = r(batch, dim, n)
    x, dt, z = r(batch, dim).to(bf), (0.5 * r(batch, dim)).to(bf), r(batch, dim).to(bf)
    A = -(0.5 + 0.5 * n * torch.rand(dim, n, device="cuda", generator=g))
    B, C = r(batch, n).to(bf), r(batch, n).to(bf)
    D, bias = r(dim), -2.0 + 0.5 * r(dim)
    args = (state, x, dt, A, B, C, D, z, bias, True)
    op = lambda: kernelgen.selective_state_update(*args)
    cfg = ss.STEP.default_config({"batch": batch, "dim": dim, "N": n})
    out = torch.empty_like(x)
    run = lambda: ss.selective_state_update_run(cfg, state, state, x, dt, A, B.unsqueeze(1), C.unsqueeze(1), D, z, bias, True, out)
    for f in (op, run):
        f()
    torch.cuda.synchronize()
    for name, f in (("op", op), ("run", run)):
        t0 = time.perf_counter()
        for _ in range(200):
            f()
        host = (time.perf_counter() - t0) / 200 * 1e6
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(200):
            f()
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) / 200 * 1e6
        ms = triton.testing.do_bench(f, warmup=25, rep=200)
        print(f"batch={batch} dim={dim} N={n} {name}: host {host:.1f} us/call, wall {wall:.1f} us/call, do_bench {ms:.4f} ms", flush=True)
    torch.cuda.set_sync_debug_mode(1)
    op()
    torch.cuda.set_sync_debug_mode(0)
print("config", cfg)
