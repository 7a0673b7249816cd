"""The channel forward's checkpoints as 16-byte vector stores (session 23) against ccf72e9's scalar
stores: the kernel at the target with and without checkpoints, interleaved three times, outputs and
checkpoints compared bitwise. Prints 'gain <ms>' last (old - new with checkpoints)."""
import math
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch
import triton

from kernelgen import cuda_jit
from kernelgen.templates import selective_scan as ss
from kernelgen.templates import selective_scan_cuda as ssc

warnings.simplefilter("ignore")
old_path = Path(tempfile.mkdtemp()) / "selective_scan.cu"
# (the GPU machine's copy of .git is stale: the old source travels as scripts/probes/_old_ss.cu, untracked)
carried = Path(__file__).with_name("_old_ss.cu")
old_path.write_text(carried.read_text() if carried.exists() else subprocess.run(
    ["git", "show", "ccf72e9:templates/selective_scan.cu"], capture_output=True, text=True, check=True).stdout)
sources = {"old": cuda_jit.CudaSource(old_path), "new": ssc.SOURCE}
config = {"layout": "channel", "threads": 128, "occupancy": 8, "split": 2, "chunk": 64, "poly": 0, "steps": 16}
g = torch.Generator(device="cuda").manual_seed(0)
r = lambda *s: torch.randn(*s, device="cuda", generator=g)
u, delta = r(8, 2048, 4096).bfloat16(), (r(8, 2048, 4096) * 0.5).bfloat16()
A, B, C, D, bias = -torch.rand(2048, 16, device="cuda", generator=g), r(8, 16, 4096).bfloat16(), \
    r(8, 16, 4096).bfloat16(), r(2048), r(2048) * 0.1
BC = ss.pack_bc(B[:, None], C[:, None], ssc.packed_states(16))
results, times = {}, {}
for name, source in sources.items():
    ssc.SOURCE = source
    out, last = torch.empty_like(u), torch.empty(8, 2048, 16, device="cuda")
    ckpt = torch.full((8, 2048, math.ceil(4096 / ss.CHECKPOINT_STEPS), 16), float("nan"), device="cuda")
    ssc.selective_scan_fwd_cuda(config, u, delta, A, B, C, D, None, bias, True, None, out, last, checkpoints=ckpt,
                                BC=BC)
    results[name] = (out.clone(), ckpt.clone())
for _ in range(3):
    for name, source in sources.items():
        ssc.SOURCE = source
        out, last = torch.empty_like(u), torch.empty(8, 2048, 16, device="cuda")
        ckpt = torch.empty(8, 2048, math.ceil(4096 / ss.CHECKPOINT_STEPS), 16, device="cuda")
        for kind, kw in (("plain", {}), ("ckpt", {"checkpoints": ckpt})):
            t = triton.testing.do_bench(lambda: ssc.selective_scan_fwd_cuda(
                config, u, delta, A, B, C, D, None, bias, True, None, out, last, BC=BC, **kw), warmup=25, rep=200)
            times.setdefault((name, kind), []).append(t)
ssc.SOURCE = sources["new"]
same = all(torch.equal(a, b) for a, b in zip(results["old"], results["new"]))
print("  ".join(f"{n} {k} {min(v):.4f}" for (n, k), v in times.items()), f"ms; bitwise equal {same}")
print(f"gain {min(times[('old', 'ckpt')]) - min(times[('new', 'ckpt')]):.4f}")
