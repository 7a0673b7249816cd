"""loglinear_attention fwd+bwd at the issue's shapes with and without save_blocks: do_bench medians
and the peak memory of one fwd+bwd (session 14). python3 scripts/probes/ll_save_blocks.py"""
import torch
import triton.testing

import kernelgen

for B, T, K, L in ((8, 4096, 128, 13), (8, 4096, 64, 13)):
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(B, T, 16, K, device="cuda", dtype=torch.bfloat16, generator=gen) for _ in range(3))
    g = torch.nn.functional.logsigmoid(torch.randn(B, T, 16, device="cuda", generator=gen) + 4.0)
    lam = torch.rand(B, T, 16, L, device="cuda", generator=gen) + 0.5
    inputs = [x.requires_grad_() for x in (q, k, v, g, lam)]
    do = torch.randn_like(v)
    for save in (False, True):
        def run():
            o, _ = kernelgen.loglinear_attention(*inputs, save_blocks=save)
            return torch.autograd.grad(o, inputs, do)
        run()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run()
        peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
        ms = triton.testing.do_bench(run, warmup=25, rep=200)
        print(f"B={B} T={T} K=V={K} save_blocks={save}: fwd+bwd {ms:.4f} ms, peak +{peak:.0f} MiB", flush=True)
