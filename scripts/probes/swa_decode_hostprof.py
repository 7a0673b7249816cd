"""Host time of one sliding-window decode step (the op, its launcher, SDPA for scale): wall time per
call over 2000 asynchronous calls, then a cProfile of the op's calls by cumulative time."""
import cProfile
import pstats
import time

import torch

import kernelgen
from kernelgen.ops.sliding_window_attention import _config
from kernelgen.templates.sliding_window_attention import DECODE, swa_decode

B, HQ, H, D, W = 8, 32, 8, 128, 4096
q = torch.randn(B, 1, HQ, D, device="cuda", dtype=torch.bfloat16)
k_cache = torch.randn(B, 2 * W, H, D, device="cuda", dtype=torch.bfloat16)
v_cache = torch.randn_like(k_cache)
lengths = torch.full((B,), 2 * W, device="cuda", dtype=torch.int32)
op = lambda: kernelgen.sliding_window_attention_decode(q, k_cache, v_cache, lengths, W)  # noqa: E731
config = _config(DECODE, DECODE.shape_of(B=B, HQ=HQ, H=H, D=D, W=W), q.dtype, q.device)
q3 = q.reshape(B, HQ, D)
launcher = lambda: swa_decode(q3, k_cache, v_cache, lengths, W, D ** -0.5, config)  # noqa: E731
qt = q.transpose(1, 2)
kt, vt = k_cache[:, W:].transpose(1, 2), v_cache[:, W:].transpose(1, 2)
sdpa = lambda: torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, enable_gqa=True)  # noqa: E731
for name, fn in (("op", op), ("launcher", launcher), ("sdpa", sdpa)):
    for _ in range(200):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(2000):
        fn()
    host = (time.perf_counter() - start) / 2000 * 1e6
    torch.cuda.synchronize()
    print(f"{name:9s} host {host:7.1f} us a call")
profile = cProfile.Profile()
profile.enable()
for _ in range(2000):
    op()
profile.disable()
torch.cuda.synchronize()
pstats.Stats(profile).sort_stats("cumtime").print_stats(25)
