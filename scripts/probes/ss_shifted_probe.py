"""Rows that are not 16-byte aligned, read and written as shifted aligned vectors (session 23)
against the element loads and stores of HEAD fc96b62 (round 214: L = 4093 0.95 ms, aligned 0.435).
The old source has no `aligned` template flag, so its name expressions drop it. Outputs compared
with the old kernel's (the same arithmetic: expected bitwise equal), then timed interleaved."""
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch
import triton

import kernelgen
from kernelgen import cuda_jit
from kernelgen.templates import selective_scan_cuda as ssc

warnings.simplefilter("ignore")
old_text = subprocess.run(["git", "show", "fc96b62:templates/selective_scan.cu"], capture_output=True, text=True,
                          check=True).stdout
old_path = Path(tempfile.mkdtemp()) / "selective_scan.cu"
old_path.write_text(old_text)
new_source, old_source = ssc.SOURCE, cuda_jit.CudaSource(old_path)
new_expression = ssc.fwd_channel_name_expression


def old_expression(*args, **kwargs):
    text = new_expression(*args, **kwargs)
    return text.rsplit(",", 1)[0] + ">"      # no aligned flag


def use(name):
    ssc.SOURCE = new_source if name == "new" else old_source
    ssc.fwd_channel_name_expression = new_expression if name == "new" else old_expression


def inputs(batch, dim, length, z, offset=0, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)

    def shifted(t):   # the same values starting `offset` elements into a larger buffer
        if offset == 0:
            return t
        buffer = torch.empty(t.numel() + offset, dtype=t.dtype, device="cuda")
        view = buffer[offset:].view(t.shape)
        view.copy_(t)
        return view
    return dict(u=shifted(r(batch, dim, length).bfloat16()), delta=shifted((r(batch, dim, length) * 0.5).bfloat16()),
                A=-torch.rand(dim, 16, device="cuda", generator=g) * 2, B=r(batch, 16, length).bfloat16(),
                C=r(batch, 16, length).bfloat16(), D=r(dim),
                z=shifted(r(batch, dim, length).bfloat16()) if z else None,
                delta_bias=torch.rand(dim, device="cuda", generator=g))


import sys
CASES = ((False, 4096, 0), (False, 4093, 0), (True, 4093, 0), (False, 4094, 0), (False, 4095, 0), (False, 4096, 3))
for z, length, offset in CASES[:int(sys.argv[1])] if len(sys.argv) > 1 else CASES:
    big = inputs(8, 2048, length, z, offset)
    outs, times = {}, {"old": [], "new": []}
    for name in times:
        use(name)
        outs[name] = kernelgen.selective_scan(**big, delta_softplus=True).float()
    for _ in range(3):
        for name in times:
            use(name)
            times[name].append(triton.testing.do_bench(
                lambda: kernelgen.selective_scan(**big, delta_softplus=True), warmup=25, rep=200))
    same = torch.equal(outs["new"], outs["old"])
    print(f"z={int(z)} L={length} offset={offset}: old {min(times['old']):.4f}  new {min(times['new']):.4f} ms"
          f"  bitwise equal {same} (|dy| {(outs['new'] - outs['old']).abs().max().item():.1e})", flush=True)
use("new")
