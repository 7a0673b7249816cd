"""Rows that are not 16-byte aligned (L % 8 != 0 in bf16) take the forward's element-by-element
loads and stores, each behind its own `i < valid` branch (round 213: L=4093 1.146 ms against 0.454
at 4096). Round 214: (C) a whole sub-chunk's elements loaded and stored without the per-element
branches; (A) round 213's branchless softplus (softplus hard-wired, the bench case); and both.
Outputs compared with the shipped kernel's, then timed interleaved."""
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
RAW = '''        } else {
#pragma unroll
            for (int w = 0; w < kWords; ++w) words[w] = 0u;
#pragma unroll
            for (int i = 0; i < kItems; ++i) {
                if (i < valid) {'''
assert base.count(RAW) == 1
RAW_C = '''        } else if (valid >= kItems) {
#pragma unroll
            for (int w = 0; w < kWords; ++w) words[w] = 0u;
#pragma unroll
            for (int i = 0; i < kItems; ++i) {
                unsigned int bits = 0u;
                if (sizeof(S) == 2) bits = (unsigned int)*reinterpret_cast<const unsigned short*>(ptr + i);
                else bits = *reinterpret_cast<const unsigned int*>(ptr + i);
                words[i * (int)sizeof(S) / 4] |= sizeof(S) == 2 ? bits << (16 * (i % 2)) : bits;
            }
''' + RAW
STORE = '''        } else {
#pragma unroll
            for (int i = 0; i < kItems; ++i)
                if (i < valid) ptr[i] = T::from_float(in[i]);
        }'''
assert base.count(STORE) == 1
STORE_C = '''        } else if (valid >= kItems) {
#pragma unroll
            for (int i = 0; i < kItems; ++i) ptr[i] = T::from_float(in[i]);
''' + STORE
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
STEP_A = '''        float step[kItems], step_u[kItems];
        kg_per_channel<kSplit>(dt, step, part, [&](float x) { return kg_softplus(x + io.bias); });
#pragma unroll
        for (int i = 0; i < kItems; ++i) step[i] = i < valid ? step[i] : 0.f;
'''
texts = {"shipped": base, "A": base.replace(STEP, STEP_A), "C": base.replace(RAW, RAW_C).replace(STORE, STORE_C)}
texts["A+C"] = texts["C"].replace(STEP, STEP_A)
variants = {}
for name, text in texts.items():
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


for z, length in ((False, 4096), (False, 4093), (True, 4093), (False, 4094)):
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
        f"{n}: {min(t):.4f} (|dy| {(outs[n] - outs['shipped']).abs().max().item():.0e})" for n, t in times.items()),
        flush=True)
