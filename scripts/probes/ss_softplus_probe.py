"""The channel forward's softplus (round 213): (A) without the branches around it (softplus always,
the ragged mask always), (B) also computed for the next sub-chunk at the end of this one, in the
state loop's basic block, so its exp/log chain overlaps the states. Both are the shipped source
with text replaced, softplus hard-wired (the bench case); outputs compared with the shipped
kernel's, then timed interleaved at issue 3's shape."""
import tempfile
import warnings
from pathlib import Path

import torch
import triton

import kernelgen
from kernelgen import cuda_jit
from kernelgen.templates import selective_scan_cuda as ssc

warnings.simplefilter("ignore")
base = Path(ssc.SOURCE.path).read_text()
STEP = '''        float step[kItems], step_u[kItems];
        if (delta_softplus) {
            kg_per_channel<kSplit>(dt, step, part, [&](float x) { return kg_softplus(x + io.bias); });
        } else {
#pragma unroll
            for (int i = 0; i < kItems; ++i) step[i] = dt[i] + io.bias;
        }
        if (valid < kItems) {                            // the last, partial sub-chunk only
#pragma unroll
            for (int i = 0; i < kItems; ++i) step[i] = i < valid ? step[i] : 0.f;   // past L: decay 1, input 0
        }
'''
assert STEP in base
A = base.replace(STEP, '''        float step[kItems], step_u[kItems];
        kg_per_channel<kSplit>(dt, step, part, [&](float x) { return kg_softplus(x + io.bias); });
#pragma unroll
        for (int i = 0; i < kItems; ++i) step[i] = i < valid ? step[i] : 0.f;
''')
LOOP = '''    int ckpt_countdown = 0;                      // steps to the next checkpoint (a multiple of 8)
#pragma unroll 1
    for (int t0 = 0; t0 < L; t0 += kItems) {'''
assert LOOP in base
END = '''            y[i] = y0 + y1;                              // this thread's states' share of y_t
        }
'''
assert END in base
B = base.replace(LOOP, '''    float step_pipe[kItems];
    {
        float first[kItems];
#pragma unroll
        for (int i = 0; i < kItems; ++i) first[i] = Raw::get(dt_next, i);
        kg_per_channel<kSplit>(first, step_pipe, part, [&](float x) { return kg_softplus(x + io.bias); });
    }
''' + LOOP).replace(STEP, '''        float step[kItems], step_u[kItems];
#pragma unroll
        for (int i = 0; i < kItems; ++i) step[i] = i < valid ? step_pipe[i] : 0.f;
''').replace(END, END + '''        {
            float next[kItems];   // the next sub-chunk's (stale past L: computed, unused)
#pragma unroll
            for (int i = 0; i < kItems; ++i) next[i] = Raw::get(dt_next, i);
            kg_per_channel<kSplit>(next, step_pipe, part, [&](float x) { return kg_softplus(x + io.bias); });
        }
''')
variants = {}
for name, text in (("shipped", base), ("A branchless", A), ("B pipelined", B)):
    path = Path(tempfile.mkdtemp()) / "selective_scan.cu"
    path.write_text(text)
    variants[name] = cuda_jit.CudaSource(path)


def inputs(batch, dim, length, z, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)
    return dict(u=r(batch, dim, length).bfloat16(), delta=(r(batch, dim, length) * 0.5).bfloat16(),
                A=-torch.rand(dim, 16, device="cuda", generator=g) * 2, B=r(batch, 16, length).bfloat16(),
                C=r(batch, 16, length).bfloat16(), D=r(dim), z=r(batch, dim, length).bfloat16() if z else None,
                delta_bias=torch.rand(dim, device="cuda", generator=g))


for z, length in ((False, 4096), (True, 4096), (False, 4093)):
    big = inputs(8, 2048, length, z)
    outs, times = {}, {name: [] for name in variants}
    for name, source in variants.items():
        ssc.SOURCE = source
        outs[name] = kernelgen.selective_scan(**big, delta_softplus=True).float()
    for _ in range(3):
        for name, source in variants.items():
            ssc.SOURCE = source
            times[name].append(triton.testing.do_bench(
                lambda: kernelgen.selective_scan(**big, delta_softplus=True), warmup=25, rep=200))
    print(f"z={z} L={length}: " + "  ".join(
        f"{n}: {min(t):.4f} (max |dy| {(outs[n] - outs['shipped']).abs().max().item():.1e})" for n, t in times.items()),
        flush=True)
