"""The channel forward on rows that are not aligned, for compute-sanitizer memcheck (run with
PYTORCH_NO_CUDA_MEMORY_CACHING=1 so each tensor is its own allocation and a read past the last
row is caught): odd L, views at an offset, L a multiple of the sub-chunk, shorter than one."""
import torch

import kernelgen
from kernelgen.templates import selective_scan_cuda as ssc

g = torch.Generator(device="cuda").manual_seed(0)
for dtype in (torch.bfloat16, torch.float32):
    for length, offset in ((133, 0), (128, 3), (9, 1), (4093, 0), (64, 5)):
        for config in ({"split": 2, "steps": 16}, {"split": 4, "steps": 16}, {"split": 1, "steps": 32}):
            config = {"layout": "channel", "threads": 64, "chunk": 64, "poly": 0, "occupancy": 8, **config}
            r = lambda *s: torch.randn(*s, device="cuda", generator=g)
            raw = {k: r(2 * 6 * length + offset).to(dtype) for k in ("u", "delta", "z")}
            raw["delta"] = (raw["delta"].abs() * 0.1).to(dtype)
            u, delta, z = (t[offset:].view(2, 6, length) for t in raw.values())
            out = torch.empty(2 * 6 * length + offset, dtype=dtype, device="cuda")[offset:].view(2, 6, length)
            B, C = r(2, 2, 16, length), r(2, 2, 16, length)
            A, D = -torch.rand(6, 16, device="cuda", generator=g), r(6)
            ssc.selective_scan_fwd_cuda(config, u, delta, A, B, C, D, z, None, True, None, out, None)
            torch.cuda.synchronize()
            # against the op on fresh (aligned) copies, whatever backend it picks
            ref = kernelgen.selective_scan(u.clone(), delta.clone(), A, B, C, D, z.clone(), delta_softplus=True)
            err = (out.float() - ref.float()).abs().max().item()
            print(f"{str(dtype)[6:]} L={length} offset={offset} {config['split']}/{config['steps']}: |y - op| {err:.1e}",
                  flush=True)
