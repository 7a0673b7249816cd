"""loglinear_attention (bf16) forward and backward per config variant at the issue's shapes: the
whole pass (do_bench median) and each kernel's share (torch.profiler, mean of 10 calls), with the
compiled registers/spills/shared memory of the output, dq/dk and dv kernels. Checks every
variant's outputs against the default's. Run once per template file to compare two versions."""
import json
import sys
import torch, triton
from torch.profiler import ProfilerActivity, profile
from kernelgen.templates import loglinear_attention as tmpl
from ll_out import backward_case, stats

SHAPES = [dict(B=8, T=4096, H=16, K=128, V=128, L=13), dict(B=8, T=4096, H=16, K=64, V=64, L=13),
          dict(B=2, T=16384, H=16, K=64, V=64, L=15)]
FWD = [{}, {"num_stages": 2}]
BWD = [{}, {"num_stages": 1}, {"num_stages": 3}]
# --fwd='[{...}, ...]' / --bwd='[...]': only these forward / backward variants (each after the default)
given = {}
for arg in list(sys.argv[1:]):
    if arg.startswith(("--fwd=", "--bwd=")):
        sys.argv.remove(arg)
        given[arg[2:5]] = [{}] + json.loads(arg[6:])
if given:
    FWD, BWD = given.get("fwd", []), given.get("bwd", [])
if "--defaults" in sys.argv:    # only the default configs (the baseline run)
    sys.argv.remove("--defaults")
    FWD, BWD = FWD[:1], BWD[:1]
KERNELS = ("_fwd_output_kernel", "_bwd_dqk_kernel", "_bwd_dv_kernel")


def kernel_split(fn):
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            fn()
        torch.cuda.synchronize()
    out = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA and e.name.startswith("_"):
            name = e.name.replace("_kernel", "")[1:]
            out[name] = round(out.get(name, 0.0) + e.device_time / 10 / 1000, 3)
    return out


def rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-6)).item()


for si in map(int, sys.argv[1:] or ["0", "1"]):
    shape = SHAPES[si]
    (q, k, v, g, lam, do), scale, fc, bc = backward_case(shape)
    B, T = q.shape[:2]
    print(f"== {shape}", flush=True)
    want = None
    for var in FWD:
        c = {**fc, **var}
        plan = tmpl.make_plan(B, T, int(c["chunk"]), None, None, q.device)
        fn = lambda: tmpl.forward(q, k, v, g, lam, scale, c, plan)  # noqa: E731
        for name in KERNELS:
            stats(getattr(tmpl, name))
        o = fn()[0]
        want = o if want is None else want
        regs = stats(tmpl._fwd_output_kernel)
        ms = triton.testing.do_bench(fn, warmup=10, rep=100)
        print(f"  fwd {json.dumps(var)}: {ms:.3f} ms {kernel_split(fn)} out regs {regs} diff {rel(o, want):.1e}",
              flush=True)
    want = None
    for var in BWD:
        c = {**bc, **var}
        plan = tmpl.make_plan(B, T, int(c["chunk"]), None, None, q.device)
        fn = lambda: tmpl.backward(q, k, v, g, lam, do, scale, c, plan)  # noqa: E731
        for name in KERNELS:
            stats(getattr(tmpl, name))
        got = fn()
        want = got if want is None else want
        regs = {n[5:-7]: stats(getattr(tmpl, n)) for n in KERNELS[1:]}
        ms = triton.testing.do_bench(fn, warmup=5, rep=60)
        diff = max(rel(a, b) for a, b in zip(got, want))
        print(f"  bwd {json.dumps(var)}: {ms:.3f} ms {kernel_split(fn)} regs {regs} diff {diff:.1e}", flush=True)
