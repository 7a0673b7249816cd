"""Where the op's time goes on unaligned rows (session 23): do_bench of the op and of the channel
kernel alone (BC packed outside) at L 4096, 4096 with u/delta views 3 elements in, and 4093; then
the op's CUDA kernels under torch.profiler at 4093."""
import warnings

import torch
import triton

import kernelgen
from kernelgen.templates import selective_scan as ss
from kernelgen.templates import selective_scan_cuda as ssc

warnings.simplefilter("ignore")
config = {"layout": "channel", "threads": 128, "occupancy": 8, "split": 2, "chunk": 64, "poly": 0, "steps": 16}
g = torch.Generator(device="cuda").manual_seed(0)


def case(length, offset):
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)

    def view(t):
        buffer = torch.empty(t.numel() + offset, dtype=t.dtype, device="cuda")
        buffer[offset:].copy_(t.flatten())
        return buffer[offset:].view(t.shape)
    x = dict(u=view(r(8, 2048, length).bfloat16()), delta=view((r(8, 2048, length) * 0.5).bfloat16()),
             A=-torch.rand(2048, 16, device="cuda", generator=g) * 2, B=r(8, 16, length).bfloat16(),
             C=r(8, 16, length).bfloat16(), D=r(2048), delta_bias=r(2048) * 0.1)
    out = torch.empty(8, 2048, length, device="cuda", dtype=torch.bfloat16)
    BC = ss.pack_bc(x["B"][:, None], x["C"][:, None], ssc.packed_states(16))
    kernel = lambda: ssc.selective_scan_fwd_cuda(config, x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], None,
                                                 x["delta_bias"], True, None, out, None, BC=BC)
    op = lambda: kernelgen.selective_scan(**x, delta_softplus=True)
    return kernel, op


for length, offset in ((4096, 0), (4096, 3), (4093, 0)):
    kernel, op = case(length, offset)
    kernel(), op()
    times = [triton.testing.do_bench(f, warmup=25, rep=200) for f in (kernel, op, kernel, op)]
    print(f"L={length} offset={offset}: kernel {min(times[0::2]):.4f}  op {min(times[1::2]):.4f} ms", flush=True)

kernel, op = case(4093, 0)
op()
torch.cuda.synchronize()
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
    for _ in range(5):
        op()
    torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=8, max_name_column_width=70))
