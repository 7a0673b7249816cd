"""The forward at shapes with fewer than 8192 channels (the warp layout's, e.g. a prefill at batch 1)
at L a multiple of 8 against L % 8 != 0 (session 23: the warp layout still loads unaligned rows by
element). Prints the config each ran."""
import warnings

import torch
import triton

import kernelgen
from kernelgen.dispatch import config_for
from kernelgen.templates import selective_scan as ss

warnings.simplefilter("ignore")
g = torch.Generator(device="cuda").manual_seed(0)
for batch, dim, lengths in ((2, 1536, (2048, 2047)), (1, 5120, (1024, 1000)), (1, 2048, (4096, 4093))):
    for length in lengths:
        r = lambda *s: torch.randn(*s, device="cuda", generator=g)
        x = dict(u=r(batch, dim, length).bfloat16(), delta=(r(batch, dim, length) * 0.5).bfloat16(),
                 A=-torch.rand(dim, 16, device="cuda", generator=g), B=r(batch, 16, length).bfloat16(),
                 C=r(batch, 16, length).bfloat16(), D=r(dim), delta_bias=r(dim) * 0.1)
        f = lambda: kernelgen.selective_scan(**x, delta_softplus=True)
        t = min(triton.testing.do_bench(f, warmup=25, rep=200) for _ in range(2))
        config = config_for(ss.FWD, ss.FWD.shape_of(batch=batch, dim=dim, L=length, N=16), torch.bfloat16, "", "cuda")
        print(f"batch={batch} dim={dim} L={length}: {t:.4f} ms  {config}", flush=True)
