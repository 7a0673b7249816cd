"""Log-linear attention vs flash-linear-attention's chunk_log_linear_attn, kernelgen's decayed
linear attention on the same gates (the method's cost floor) and PyTorch SDPA full causal attention.

kernelgen runs bf16 q/k/v with fp32 gates and level scales (what a model's projections produce);
fla runs all-bf16 inputs (with fp32 gates or level scales it fails to compile on triton 3.6).
"""
from __future__ import annotations

from typing import Any, Callable

from kernelgen.bench import BenchCase, optional_import, template_work

# (shape, forward target ms, forward+backward target ms); the K=V=64 targets are fla's / 5.
TARGETS = [
    ({"B": 8, "T": 4096, "H": 16, "K": 128, "V": 128, "L": 13}, 0.65, 2.5),
    ({"B": 8, "T": 4096, "H": 16, "K": 64, "V": 64, "L": 13}, 2.23 / 5, 7.94 / 5),
    ({"B": 2, "T": 16384, "H": 16, "K": 64, "V": 64, "L": 15}, 6.12 / 5, 18.6 / 5),
    ({"B": 1, "T": 131072, "H": 16, "K": 128, "V": 128, "L": 18}, None, None),   # must beat SDPA forward
]


def _inputs(shape: dict[str, int], grad: bool):
    import torch
    B, T, H, K, V, L = (shape[d] for d in ("B", "T", "H", "K", "V", "L"))
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k = (torch.randn(B, T, H, K, device="cuda", dtype=torch.bfloat16, generator=gen) for _ in range(2))
    v = torch.randn(B, T, H, V, device="cuda", dtype=torch.bfloat16, generator=gen)
    g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, device="cuda", generator=gen) + 4.0)
    lam = torch.rand(B, T, H, L, device="cuda", generator=gen) + 0.5
    tensors = [q, k, v, g, lam]
    if grad:
        for x in tensors:
            x.requires_grad_()
    return tensors


def _runner(fn: Callable[[], Any], inputs, grad: bool, do=None) -> Callable[[], Any]:
    """A zero-argument callable: the forward, or the forward plus the gradients of ``inputs``."""
    import torch
    if not grad:
        def run():
            with torch.no_grad():
                return fn()
        return run

    def run_fwd_bwd():
        out = fn()
        out = out[0] if isinstance(out, tuple) else out
        return torch.autograd.grad(out, inputs, do if do is not None else torch.ones_like(out))
    return run_fwd_bwd


def _fla_providers(q, k, v, g, lam, grad: bool, providers: dict, skipped: dict) -> None:
    fla = optional_import("fla.ops.log_linear_attn")
    if fla is None or not hasattr(fla, "chunk_log_linear_attn"):
        skipped["fla chunk_log_linear_attn"] = "fla (flash-linear-attention) not installed"
        return
    import torch
    args = [x.detach().to(torch.bfloat16).requires_grad_(grad) for x in (q, k, v, g, lam)]
    do = torch.randn_like(v)
    fn = _runner(lambda: fla.chunk_log_linear_attn(*args), [a for a in args], grad, do)
    try:
        fn()                               # compile once here so a failure is reported as such
        providers["fla chunk_log_linear_attn"] = fn
    except Exception as error:  # noqa: BLE001 - record why, keep the other providers
        first_line = (str(error).splitlines() or [""])[0][:100]
        skipped["fla chunk_log_linear_attn"] = f"{type(error).__name__}: {first_line}"
        if grad:   # fla's backward has asserted a single key head (G == 1); time that variant
            single = [args[0][:, :, :1].detach().requires_grad_(), args[1][:, :, :1].detach().requires_grad_()]
            fn1 = _runner(lambda: fla.chunk_log_linear_attn(*single, *args[2:]), single + args[2:], grad, do)
            try:
                fn1()
                providers["fla chunk_log_linear_attn (q,k 1 head)"] = fn1
            except Exception as error1:  # noqa: BLE001
                skipped["fla chunk_log_linear_attn (q,k 1 head)"] = f"{type(error1).__name__}: {str(error1)[:100]}"


def _make(shape: dict[str, int], grad: bool, case: BenchCase) -> Callable[[], dict[str, Callable[[], Any]]]:
    def make() -> dict[str, Callable[[], Any]]:
        import torch
        import kernelgen
        q, k, v, g, lam = _inputs(shape, grad)
        do = torch.randn_like(v)
        providers: dict[str, Callable[[], Any]] = {
            "kernelgen": _runner(lambda: kernelgen.loglinear_attention(q, k, v, g, lam), [q, k, v, g, lam], grad, do)}
        if grad:   # the backward reads the forward's blocks instead of rebuilding them (more memory)
            providers["kernelgen save_blocks"] = _runner(
                lambda: kernelgen.loglinear_attention(q, k, v, g, lam, save_blocks=True), [q, k, v, g, lam], grad, do)
        try:
            linear = kernelgen.linear_attention
            providers["kernelgen linear_attention (same g)"] = _runner(
                lambda: linear(q, k, v, g=g), [q, k, v, g], grad, do)
        except (ImportError, AttributeError) as error:
            case.skipped["kernelgen linear_attention (same g)"] = f"not importable: {error}"
        _fla_providers(q, k, v, g, lam, grad, providers, case.skipped)
        qt, kt, vt = (x.detach().transpose(1, 2).requires_grad_(grad) for x in (q, k, v))
        providers["torch SDPA causal"] = _runner(
            lambda: torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=True),
            [qt, kt, vt], grad, do.transpose(1, 2))
        return providers
    return make


def cases(quick: bool) -> list[BenchCase]:
    from kernelgen.templates.loglinear_attention import LogLinearBackward, LogLinearForward
    forward, backward = LogLinearForward(), LogLinearBackward()
    out = []
    targets = TARGETS[:1] if quick else TARGETS
    for shape, fwd_ms, fwd_bwd_ms in targets:
        modes = [("fwd", fwd_ms)] + ([("fwd+bwd", fwd_bwd_ms)] if shape["T"] <= 16384 else [])
        for mode, target in modes:
            grad = mode == "fwd+bwd"
            flops, nbytes = template_work(forward, backward, shape, "bf16", with_backward=grad)
            case = BenchCase(op="loglinear_attention", mode=mode, shape=dict(shape), dtype="bf16", flops=flops,
                             bytes=nbytes, make=lambda: {}, target_ms=target,
                             note="fp32 g and level_scales; T=131072 must beat SDPA" if target is None else
                             "fp32 g and level_scales")
            case.make = _make(shape, grad, case)
            out.append(case)
    return out
