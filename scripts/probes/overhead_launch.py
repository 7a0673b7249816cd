"""Where the host microseconds of linear_scan go on the GPU machine (tiny shape: GPU work ~5 us).

Times, per call: torch allocations, the template launcher through Triton's JITFunction.run, the
same kernel through its CompiledKernel's launcher directly, the op (no_grad, and fwd+bwd with
autograd.grad as bench.py runs it), an empty autograd.Function, fla's chunk_hgrn; then eager
do_bench of fwd+bwd at the target shape, and a cProfile of the op's fwd+bwd."""
import cProfile, io, pstats
import torch, triton
import kernelgen
import kernelgen.templates.linear_scan as ls
from kernelgen.dispatch import config_for
from scan_host import Nop, per_call, target_fwd_bwd


dev = "cuda"
x = torch.randn(1, 64, 64, device=dev, dtype=torch.bfloat16)
g = torch.nn.functional.logsigmoid(torch.randn_like(x))
o = torch.empty_like(x)
cfg = config_for(ls.FWD, {"B": 1, "T": 64, "D": 64}, x.dtype, "", x.device)
print("config", cfg)
rows = {}
rows["torch.empty fp32 [3,1,2,64]"] = per_call(lambda: torch.empty((3, 1, 2, 64), dtype=torch.float32, device=dev))
rows["torch.zeros int32 [5]"] = per_call(lambda: torch.zeros(5, dtype=torch.int32, device=dev))
rows["torch.empty_like(x)"] = per_call(lambda: torch.empty_like(x))
rows["torch.add (reference)"] = per_call(lambda: torch.add(x, g))
rows["launcher, cached launch (kernelgen.launch)"] = per_call(lambda: ls.linear_scan_fwd(cfg, x, g, None, o, None))
cached = ls.linear_scan_kernel.__dict__.pop("run")   # back to Triton's JITFunction.run
rows["launcher, Triton's JITFunction.run"] = per_call(lambda: ls.linear_scan_fwd(cfg, x, g, None, o, None))
ls.linear_scan_kernel.run = cached

# Capture the compiled kernel and its bound arguments from one launch, then launch it directly.
captured = {}
real_run = ls.linear_scan_kernel.run
def spy(*args, grid, warmup, **kwargs):
    kernel = real_run(*args, grid=grid, warmup=warmup, **kwargs)
    captured.update(kernel=kernel, args=args, kwargs=kwargs, grid=grid)
    return kernel
ls.linear_scan_kernel.run = spy
ls.linear_scan_fwd(cfg, x, g, None, o, None)
ls.linear_scan_kernel.run = real_run
ck = captured["kernel"]
params = ls.linear_scan_kernel.arg_names
kw = captured["kwargs"]
full = list(captured["args"]) + [kw[name] for name in params[len(captured["args"]):]]
grid = captured["grid"]
g0, g1, g2 = (tuple(grid) + (1, 1))[:3]
from triton.runtime.driver import driver
flags = full[params.index("flag_ptr")]   # the look-back ticket counter and flags: zeroed per launch
def direct():
    flags.zero_()
    stream = torch.cuda.current_stream().cuda_stream
    ck.run(g0, g1, g2, stream, ck.function, ck.packed_metadata, None, None, None, *full)
o.fill_(float("nan")); direct(); torch.cuda.synchronize()
ref = o.clone(); ls.linear_scan_fwd(cfg, x, g, None, o, None)
print("direct launch output matches:", torch.equal(ref, o))
rows["direct CompiledKernel.run (+ flags.zero_)"] = per_call(direct)
rows["flags.zero_ alone"] = per_call(flags.zero_)
def get_stream():
    return driver.active.get_current_stream(driver.active.get_current_device())
rows["driver get_current_device+stream"] = per_call(get_stream)
rows["torch.cuda.current_stream().cuda_stream"] = per_call(lambda: torch.cuda.current_stream().cuda_stream)
rows["op fwd (no_grad)"] = per_call(lambda: kernelgen.linear_scan(x, g))
xr, gr = x.clone().requires_grad_(), g.clone().requires_grad_()
do = torch.randn_like(x)
def fb():
    out, _ = kernelgen.linear_scan(xr, gr)
    return torch.autograd.grad(out, (xr, gr), do)
rows["op fwd+bwd (autograd.grad)"] = per_call(fb)
def nop():
    out = Nop.apply(xr, gr)
    return torch.autograd.grad(out, (xr, gr), do)
rows["empty autograd.Function fwd+bwd"] = per_call(nop)
try:
    from fla.ops.hgrn import chunk_hgrn
    def fla_fb():
        out, _ = chunk_hgrn(xr, gr)
        return torch.autograd.grad(out, (xr, gr), do)
    rows["fla chunk_hgrn fwd+bwd"] = per_call(fla_fb)
except Exception as error:
    print("fla:", error)
print("cached launches so far:", cached.hits)
for name, us in rows.items():
    print(f"{name:42s} {us:8.1f} us")

big = target_fwd_bwd(dev)
print(f"do_bench eager fwd+bwd B=8 T=4096 D=2048: {triton.testing.do_bench(big, rep=300):.4f} ms")
pr = cProfile.Profile(); pr.enable()
for _ in range(400):
    fb()
pr.disable()
s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(18); print(s.getvalue()[:4500])
