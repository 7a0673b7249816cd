"""selective_scan as a drop-in for mamba-ssm's selective_scan_fn on the GPU, with the shipped tuned
configs active (the configs dispatch picks for small test shapes: CUDA backends included).

The cases and tolerances are those of mamba-ssm's own suites (torch.allclose with their rtol/atol),
the reference is kernelgen's float64 one: the main scan (seqlen 128..4096, groups 1/2, fp32 / fp16 /
bf16) and the packed-sequence form (cu_seqlens as the starts, seq_num 1..7). Prints one line per
failing comparison and a count.   python3 scripts/probes/ss_dropin_gpu.py
"""
import itertools

import torch

import kernelgen
from kernelgen.reference.selective_scan import selective_scan_ref

TOLERANCES = {torch.float32: (6e-4, 2e-3), torch.float16: (3e-3, 5e-3), torch.bfloat16: (3e-2, 5e-2)}
failures, checks = [], 0


def inputs(seqlen, groups, itype, dim=4, n_states=8, seed=0):
    torch.random.manual_seed(seed)
    dev = "cuda"
    bc_shape = (2, n_states, seqlen) if groups == 1 else (2, groups, n_states, seqlen)
    leaves = {
        "u": torch.randn(2, dim, seqlen, device=dev, dtype=itype),
        "delta": 0.5 * torch.rand(2, dim, seqlen, device=dev, dtype=itype),
        "A": -0.5 * torch.rand(dim, n_states, device=dev),
        "B": torch.randn(*bc_shape, device=dev, dtype=itype),
        "C": torch.randn(*bc_shape, device=dev, dtype=itype),
        "D": torch.randn(dim, device=dev),
        "z": torch.randn(2, dim, seqlen, device=dev, dtype=itype),
        "delta_bias": 0.5 * torch.rand(dim, device=dev),
    }
    return {k: v.requires_grad_() for k, v in leaves.items()}


def compare(tag, name, out, ref, rtol, atol):
    global checks
    checks += 1
    if not torch.allclose(out.double(), ref.to(out.dtype).double(), rtol=rtol, atol=atol):
        worst = ((out.double() - ref.double()).abs() / (atol + rtol * ref.double().abs())).max().item()
        failures.append(f"{tag} {name}: worst |diff| / tolerance {worst:.2f}")


def check(seqlen, groups, itype, cu_seqlens=None):
    tag = f"[L={seqlen} G={groups} {str(itype)[6:]} cu={None if cu_seqlens is None else len(cu_seqlens)}]"
    rtol, atol = TOLERANCES[itype]
    rtolw, atolw = max(1e-3, rtol), max(1e-3, atol)   # mamba-ssm: weights, with z
    leaves = inputs(seqlen, groups, itype)
    ref_leaves = {k: v.detach().double().requires_grad_() for k, v in leaves.items()}
    names = list(leaves)
    args = [leaves[k] for k in ("u", "delta", "A", "B", "C", "D")]
    ref_args = [ref_leaves[k] for k in ("u", "delta", "A", "B", "C", "D")]
    restarts = frozenset() if cu_seqlens is None else frozenset(cu_seqlens[1:-1].tolist())
    out, state = kernelgen.selective_scan(*args, z=leaves["z"], delta_bias=leaves["delta_bias"], delta_softplus=True,
                                          return_last_state=True, cu_seqlens=cu_seqlens)
    ref, ref_state = selective_scan_ref(*ref_args, z=ref_leaves["z"], delta_bias=ref_leaves["delta_bias"],
                                        delta_softplus=True, return_last_state=True, restarts=restarts)
    compare(tag, "out", out, ref, rtol, atol)
    compare(tag, "last_state", state, ref_state, rtol, atol)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [leaves[k] for k in names], g)
    ref_grads = torch.autograd.grad(ref, [ref_leaves[k] for k in names], g.double())
    scale = {"u": (2, 2), "delta": (5, 10), "A": (rtolw / rtol, 5 * atolw / atol), "B": (1, 1), "C": (1, 1),
             "D": (rtolw / rtol, atolw / atol), "z": (rtolw / rtol, atolw / atol),
             "delta_bias": (rtolw / rtol, atolw / atol)}
    for name, grad, grad_ref in zip(names, grads, ref_grads):
        r, a = scale[name]
        compare(tag, f"d{name}", grad, grad_ref, rtol * r, atol * a)


for seqlen, groups, itype in itertools.product((128, 1024, 4096), (1, 2), (torch.float32, torch.float16, torch.bfloat16)):
    check(seqlen, groups, itype)
for seqlen, seq_num, groups in itertools.product((128, 4096), (1, 2, 7), (1, 2)):
    starts = torch.arange(0, seqlen, seqlen / seq_num, dtype=torch.int64, device="cuda")
    check(seqlen, groups, torch.float32, cu_seqlens=starts)
print("\n".join(failures) or "no failures")
print(f"{checks - len(failures)} of {checks} comparisons within mamba-ssm's tolerances")
