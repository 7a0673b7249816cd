"""The channel forward's steps per sub-chunk (kItems, 8 in the shipped source) at 16 and 32: more
independent exps in one unrolled body at ~2 warps per scheduler (round 206). Each variant is the
shipped source with that one constant changed, launched through the op with the shipped configs;
checked against the float64 reference at a ragged shape, then timed interleaved at issue 3's shape."""
import tempfile
import warnings
from pathlib import Path

import torch
import triton

import kernelgen
from kernelgen import cuda_jit
from kernelgen.reference.selective_scan import selective_scan_ref
from kernelgen.templates import selective_scan_cuda as ssc

warnings.simplefilter("ignore")
text = Path(ssc.SOURCE.path).read_text()
line = "constexpr int kItems = 8;"
assert line in text
variants = {}
for items in (8, 16, 32):
    path = Path(tempfile.mkdtemp()) / "selective_scan.cu"
    path.write_text(text.replace(line, f"constexpr int kItems = {items};"))
    variants[items] = cuda_jit.CudaSource(path)


def inputs(batch, dim, length, z, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)
    return dict(u=r(batch, dim, length).bfloat16(), delta=(r(batch, dim, length) * 0.5).bfloat16(),
                A=-torch.rand(dim, 16, device="cuda", generator=g) * 2, B=r(batch, 16, length).bfloat16(),
                C=r(batch, 16, length).bfloat16(), D=r(dim), z=r(batch, dim, length).bfloat16() if z else None,
                delta_bias=torch.rand(dim, device="cuda", generator=g))


small = inputs(2, 96, 1000, True, seed=1)
ref = selective_scan_ref(**{k: (v.double() if v is not None else None) for k, v in small.items()},
                         delta_softplus=True)
ref = ref[0] if isinstance(ref, tuple) else ref
for items, source in variants.items():
    ssc.SOURCE = source
    y = kernelgen.selective_scan(**small, delta_softplus=True)
    err = ((y.double() - ref).abs().max() / ref.abs().max()).item()
    print(f"items {items}: max err / max |ref| {err:.2e}", flush=True)

for z in (False, True):
    big = inputs(8, 2048, 4096, z)
    outs = {}
    for items, source in variants.items():
        ssc.SOURCE = source
        outs[items] = kernelgen.selective_scan(**big, delta_softplus=True).float()
    print(f"z={z}: max |y - y(items 8)|: " + ", ".join(f"{i}: {(o - outs[8]).abs().max().item():.2e}"
                                                       for i, o in outs.items()), flush=True)
    times = {items: [] for items in variants}
    for _ in range(3):
        for items, source in variants.items():
            ssc.SOURCE = source
            times[items].append(triton.testing.do_bench(
                lambda: kernelgen.selective_scan(**big, delta_softplus=True), warmup=25, rep=200))
    print(f"z={z}: " + "  ".join(f"items {i}: {min(t):.4f} ({', '.join(f'{x:.4f}' for x in t)})"
                                 for i, t in times.items()), flush=True)
