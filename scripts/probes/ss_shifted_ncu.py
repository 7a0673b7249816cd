"""ncu target (session 23): the channel forward at the target config on rows aligned (L 4096), on
u/delta views 3 elements into their buffers (L 4096, out aligned), and at L 4093 (all rows
unaligned): one launch each between cudaProfilerStart/Stop, after a warm-up launch."""
import torch

from kernelgen.templates import selective_scan_cuda as ssc

config = {"layout": "channel", "threads": 128, "occupancy": 8, "split": 2, "chunk": 64, "poly": 0, "steps": 16}
g = torch.Generator(device="cuda").manual_seed(0)


def case(length, offset):
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)

    def view(t):
        buffer = torch.empty(t.numel() + offset, dtype=t.dtype, device="cuda")
        buffer[offset:].copy_(t.flatten())
        return buffer[offset:].view(t.shape)
    u, delta = view(r(8, 2048, length).bfloat16()), view((r(8, 2048, length) * 0.5).bfloat16())
    B, C = r(8, 16, length).bfloat16(), r(8, 16, length).bfloat16()
    A, D, bias = -torch.rand(2048, 16, device="cuda", generator=g) * 2, r(2048), r(2048) * 0.1
    out = torch.empty_like(u, memory_format=torch.contiguous_format)
    return lambda: ssc.selective_scan_fwd_cuda(config, u, delta, A, B, C, D, None, bias, True, None, out, None)


runs = [case(4096, 0), case(4096, 3), case(4093, 0)]
for run in runs:
    run()
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStart()
for run in runs:
    run()
    torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStop()
