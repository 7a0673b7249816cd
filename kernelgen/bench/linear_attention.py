"""Bench cases for linear_attention: kernelgen vs flash-linear-attention and PyTorch SDPA.

Peers: fla's ``chunk_simple_gla`` (g / g_gamma decay), ``chunk_linear_attn`` (no decay, run with
normalize=False to match) and ``parallel_based`` (taylor2), plus torch SDPA full causal softmax
attention for scale. Inputs are bf16 [B, T, H, K]; g = logsigmoid(randn + 4) (decays near 1, as
in trained gated models). Forward is one call; fwd+bwd is one call plus ``torch.autograd.grad``
of every differentiable input for a random upstream gradient.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from kernelgen.bench import BenchCase, optional_import, template_work

# (mode, decay, feature_map, normalize, B, T, H, K, V, target_ms from the issue or None)
CASES = [
    ("fwd", "g", None, False, 8, 4096, 16, 128, 128, 0.25),
    ("fwd+bwd", "g", None, False, 8, 4096, 16, 128, 128, 0.9),
    ("fwd", "g", None, False, 1, 65536, 16, 128, 128, 0.9),
    ("fwd+bwd", "g", None, False, 1, 65536, 16, 128, 128, None),
    ("fwd+bwd", "none", None, False, 8, 4096, 16, 128, 128, 0.9),
    ("fwd", "none", None, False, 8, 4096, 16, 128, 128, None),
    ("fwd", "g_gamma", None, False, 8, 4096, 16, 128, 128, None),
    ("fwd+bwd", "g_gamma", None, False, 8, 4096, 16, 128, 128, None),
    ("fwd", "none", "taylor2", False, 8, 4096, 16, 16, 128, 0.6),
    ("fwd", "none", "taylor2", True, 8, 4096, 16, 16, 128, 0.6),
    ("fwd+bwd", "none", "taylor2", False, 8, 4096, 16, 16, 128, None),
]
QUICK = {0, 1, 4, 8}
SDPA_MAX_T = 16384    # causal softmax attention is quadratic: 35 ms at T=65536, left out there


def _accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _peers(decay: str, feature: str | None, normalize: bool, fla_simple_gla, fla_linear_attn, fla_based):
    """name -> fn(q, k, v, g, g_gamma) returning the output tensor, and name -> why it is missing."""
    peers: dict[str, Callable] = {}
    skipped: dict[str, str] = {}
    if feature == "taylor2":
        if fla_based is None:
            skipped["fla parallel_based"] = "flash-linear-attention not installed"
        else:
            based = fla_based.parallel_based
            extra = {"head_first": False} if _accepts(based, "head_first") else {}
            peers["fla parallel_based"] = lambda q, k, v, g, gg: _first(based(q, k, v, use_norm=normalize, **extra))
    elif decay == "none":
        if fla_linear_attn is None:
            skipped["fla chunk_linear_attn"] = "flash-linear-attention not installed"
        else:
            lin = fla_linear_attn.chunk_linear_attn
            extra = {"head_first": False} if _accepts(lin, "head_first") else {}
            peers["fla chunk_linear_attn"] = lambda q, k, v, g, gg: lin(q, k, v, normalize=False, **extra)[0]
        if fla_simple_gla is not None:
            gla = fla_simple_gla.chunk_simple_gla
            peers["fla chunk_simple_gla"] = lambda q, k, v, g, gg: gla(q, k, v)[0]
    else:
        if fla_simple_gla is None:
            skipped["fla chunk_simple_gla"] = "flash-linear-attention not installed"
        else:
            gla = fla_simple_gla.chunk_simple_gla
            if decay == "g":
                peers["fla chunk_simple_gla"] = lambda q, k, v, g, gg: gla(q, k, v, g=g)[0]
            elif _accepts(gla, "g_gamma"):
                peers["fla chunk_simple_gla"] = lambda q, k, v, g, gg: gla(q, k, v, g_gamma=gg)[0]
            else:
                skipped["fla chunk_simple_gla"] = "this fla version has no g_gamma"
    return peers, skipped


def _make(mode, decay, feature, normalize, B, T, H, K, V, peers) -> Callable[[], dict[str, Callable[[], Any]]]:
    def make() -> dict[str, Callable[[], Any]]:
        import torch
        import torch.nn.functional as F

        import kernelgen
        gen = torch.Generator(device="cuda").manual_seed(0)

        def randn(*size):
            return torch.randn(*size, device="cuda", generator=gen)

        q, k, v = (randn(B, T, H, d).to(torch.bfloat16) for d in (K, K, V))
        g = F.logsigmoid(randn(B, T, H) + 4.0) if decay == "g" else None
        g_gamma = (torch.log1p(-torch.pow(2.0, -5.0 - torch.arange(H, device="cuda") / max(H - 1, 1) * 4))
                   if decay == "g_gamma" else None)

        def ours(q, k, v, g, gg):
            return kernelgen.linear_attention(q, k, v, g=g, g_gamma=gg, feature_map=feature, normalize=normalize)[0]

        def sdpa(q, k, v, g, gg):
            return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                  is_causal=True).transpose(1, 2)

        fns = {"kernelgen": ours, **peers}
        if T <= SDPA_MAX_T and K == V:
            fns["torch sdpa causal (softmax)"] = sdpa
        if mode == "fwd":
            return {name: (lambda fn=fn: fn(q, k, v, g, g_gamma)) for name, fn in fns.items()}
        leaves = [x.requires_grad_() for x in (q, k, v)]
        if g is not None:
            leaves.append(g.requires_grad_())
        do = randn(B, T, H, V).to(torch.bfloat16)

        def fwd_bwd(fn):
            o = fn(q, k, v, g, g_gamma)
            return torch.autograd.grad(o, leaves if fn is not sdpa else leaves[:3], do)
        return {name: (lambda fn=fn: fwd_bwd(fn)) for name, fn in fns.items()}
    return make


def cases(quick: bool) -> list[BenchCase]:
    from kernelgen.templates import linear_attention as tmpl
    fla_simple_gla = optional_import("fla.ops.simple_gla")
    fla_linear_attn = optional_import("fla.ops.linear_attn")
    fla_based = optional_import("fla.ops.based")
    out = []
    for index, (mode, decay, feature, normalize, B, T, H, K, V, target) in enumerate(CASES):
        if quick and index not in QUICK:
            continue
        peers, skipped = _peers(decay, feature, normalize, fla_simple_gla, fla_linear_attn, fla_based)
        if T > SDPA_MAX_T:
            skipped["torch sdpa causal (softmax)"] = f"T={T}: quadratic softmax attention left out above T={SDPA_MAX_T}"
        elif K != V:
            skipped["torch sdpa causal (softmax)"] = f"K={K} != V={V}: no flash-attention SDPA kernel for it"
        fwd_t, bwd_t = tmpl.templates_for(feature)
        flags = tmpl.make_flags(decay, feature, normalize)
        shape = {"B": B, "T": T, "H": H, "K": K, "V": V, "F": tmpl.feature_rows(feature, K)}
        flops, nbytes = template_work(fwd_t, bwd_t, shape, "bf16", flags, with_backward=mode != "fwd")
        label = {"B": B, "T": T, "H": H, "K": K, "V": V}
        note = f"flags {flags}"
        if decay == "none" and not feature:
            note += "; fla chunk_linear_attn with normalize=False"

        out.append(BenchCase(
            op="linear_attention", mode=mode, shape=label, dtype="bf16", flops=flops, bytes=nbytes,
            make=_make(mode, decay, feature, normalize, B, T, H, K, V, peers), target_ms=target,
            skipped=skipped, note=note))
    return out
