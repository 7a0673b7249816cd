"""The warp-layout forward on rows that are not 16-byte aligned: B's and C's (and delta's and u's)
loads issued before either is shifted (KgRunUnaligned, session 24) against shifting each right
after its loads (7c51242, carried as scripts/probes/_old_ss.cu: the GPU machine's .git is stale).
Tuned and default configs, L a multiple of 8 and not: outputs compared bitwise, timed interleaved
(the kernel alone). Prints 'gain <ms>' last (old - new at batch 2, L 2047, tuned config)."""
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch
import triton

from kernelgen import cuda_jit
from kernelgen.templates import selective_scan_cuda as ssc

warnings.simplefilter("ignore")
carried = Path(__file__).with_name("_old_ss.cu")
old_path = Path(tempfile.mkdtemp()) / "selective_scan.cu"
old_path.write_text(carried.read_text() if carried.exists() else subprocess.run(
    ["git", "show", "7c51242:templates/selective_scan.cu"], capture_output=True, text=True, check=True).stdout)
new_source, old_source = ssc.SOURCE, cuda_jit.CudaSource(old_path)


def use(name):
    ssc.SOURCE = new_source if name == "new" else old_source


tuned = {"layout": "warp", "threads": 32, "items_per_thread": 16, "state_unroll": 1, "occupancy": 8}
default = {"layout": "warp", "threads": 128, "items_per_thread": 8, "state_unroll": 2, "occupancy": 8}
g = torch.Generator(device="cuda").manual_seed(0)
gain = None
for batch, dim, length, config, name in ((2, 1536, 2047, tuned, "tuned"), (2, 1536, 2047, default, "default"),
                                         (1, 2048, 4093, tuned, "tuned"), (1, 2048, 4096, tuned, "tuned")):
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)
    u, delta, z = r(batch, dim, length).bfloat16(), (r(batch, dim, length) * 0.5).bfloat16(), r(batch, dim, length).bfloat16()
    A, B, C, D, bias = -torch.rand(dim, 16, device="cuda", generator=g), r(batch, 1, 16, length).bfloat16(), \
        r(batch, 1, 16, length).bfloat16(), r(dim), r(dim) * 0.1
    outs, times = {}, {"old": [], "new": []}
    for who in times:
        use(who)
        out, last = torch.empty_like(u), torch.empty(batch, dim, 16, device="cuda")
        ssc.selective_scan_fwd_cuda(config, u, delta, A, B, C, D, z, bias, True, None, out, last)
        outs[who] = (out.clone(), last.clone())
    for _ in range(3):
        for who in times:
            use(who)
            out, last = torch.empty_like(u), torch.empty(batch, dim, 16, device="cuda")
            times[who].append(triton.testing.do_bench(
                lambda: ssc.selective_scan_fwd_cuda(config, u, delta, A, B, C, D, z, bias, True, None, out, last),
                warmup=25, rep=200))
    same = all(torch.equal(a, b) for a, b in zip(outs["old"], outs["new"]))
    print(f"batch={batch} dim={dim} L={length} {name} (z): old {min(times['old']):.4f}  new {min(times['new']):.4f} ms"
          f"  bitwise equal {same}", flush=True)
    if length == 2047 and name == "tuned":
        gain = min(times["old"]) - min(times["new"]) if same else -1
use("new")
print(f"gain {gain:.4f}")
