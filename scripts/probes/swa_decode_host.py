"""The sliding-window decode step at the bench's shape: the op eager, the op replayed from a CUDA
graph, and the kernel alone (do_bench medians), to split device time from host time."""
import torch
import triton

import kernelgen
from kernelgen.ops.sliding_window_attention import _config
from kernelgen.templates.sliding_window_attention import DECODE, swa_decode

B, HQ, H, D, W = 8, 32, 8, 128, 4096
q = torch.randn(B, 1, HQ, D, device="cuda", dtype=torch.bfloat16)
k_cache = torch.randn(B, 2 * W, H, D, device="cuda", dtype=torch.bfloat16)
v_cache = torch.randn_like(k_cache)
lengths = torch.full((B,), 2 * W, device="cuda", dtype=torch.int32)
op = lambda: kernelgen.sliding_window_attention_decode(q, k_cache, v_cache, lengths, W)  # noqa: E731
op()
shape = DECODE.shape_of(B=B, HQ=HQ, H=H, D=D, W=W)
config = _config(DECODE, shape, q.dtype, q.device)
q3 = q.reshape(B, HQ, D)
kernel = lambda: swa_decode(q3, k_cache, v_cache, lengths, W, D ** -0.5, config)  # noqa: E731
stream = torch.cuda.Stream()
with torch.cuda.stream(stream):
    op()
torch.cuda.synchronize()
graph = torch.cuda.CUDAGraph()
with torch.cuda.graph(graph):
    op()
print("config", config)
for name, fn in (("op eager", op), ("op graph", graph.replay), ("launcher", kernel)):
    print(f"{name:10s} {triton.testing.do_bench(fn, warmup=50, rep=300):.4f} ms")
qt = q.transpose(1, 2)
kt, vt = k_cache[:, W:].transpose(1, 2), v_cache[:, W:].transpose(1, 2)
sdpa = lambda: torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, enable_gqa=True)  # noqa: E731
print(f"sdpa       {triton.testing.do_bench(sdpa, warmup=50, rep=300):.4f} ms")
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
    for _ in range(20):
        op()
    torch.cuda.synchronize()
for event in prof.key_averages():
    if event.device_type == torch.autograd.DeviceType.CUDA:
        print(f"kernel {event.key[:60]:60s} {event.device_time / 1000:.4f} ms x{event.count}")
