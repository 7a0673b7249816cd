"""Bench cases for linear_scan: kernelgen vs flash-linear-attention's hgrn ops and a PyTorch loop.

Inputs are bf16, gates are log-sigmoids (decays in (0, 1)); forward is one call, fwd+bwd one call
plus ``torch.autograd.grad`` of (x, g) for a random upstream gradient (no .grad accumulation).
"""
from __future__ import annotations

from typing import Any, Callable

from kernelgen.bench import BenchCase, optional_import

# (B, T, D, target_ms from the issue or None)
FORWARD = [(8, 4096, 2048, 0.18), (2, 65536, 2048, 0.68), (4, 2048, 1024, None)]
FORWARD_BACKWARD = [(8, 4096, 2048, 0.50), (2, 65536, 2048, None)]
TORCH_LOOP_MAX_T = 4096   # one tiny kernel per step and op: ~0.1 ms a step, too slow beyond this


def torch_linear_scan_loop(x, g, initial_state=None):
    """The plain PyTorch baseline: the recurrence one time step at a time, fp32 state."""
    import torch
    h = (initial_state.float() if initial_state is not None
         else torch.zeros(x.shape[0], x.shape[2], device=x.device, dtype=torch.float32))
    outs = []
    for t in range(x.shape[1]):
        h = torch.exp(g[:, t].float()) * h + x[:, t].float()
        outs.append(h)
    return torch.stack(outs, dim=1).to(x.dtype), h


def _bytes(batch: int, steps: int, width: int, mode: str, itemsize: int = 2) -> float:
    # Forward: read x, g; write o. Backward: read g, o, do; write dx, dg.
    units = 3 if mode == "fwd" else 3 + 5
    return float(units * itemsize * batch * steps * width)


def _make(batch: int, steps: int, width: int, mode: str, fla_hgrn) -> Callable[[], dict[str, Callable[[], Any]]]:
    def make() -> dict[str, Callable[[], Any]]:
        import torch

        import kernelgen
        gen = torch.Generator(device="cuda").manual_seed(0)
        x = torch.randn(batch, steps, width, device="cuda", generator=gen).to(torch.bfloat16)
        g = torch.nn.functional.logsigmoid(
            torch.randn(batch, steps, width, device="cuda", generator=gen) + 1.0).to(torch.bfloat16)
        scans: dict[str, Callable] = {"kernelgen": kernelgen.linear_scan}
        if fla_hgrn is not None:
            scans["fla chunk_hgrn"] = fla_hgrn.chunk_hgrn
            scans["fla fused_recurrent_hgrn"] = fla_hgrn.fused_recurrent_hgrn
        if steps <= TORCH_LOOP_MAX_T:
            scans["torch loop"] = torch_linear_scan_loop
        if mode == "fwd":
            return {name: (lambda scan=scan: scan(x, g)) for name, scan in scans.items()}
        x.requires_grad_()
        g.requires_grad_()
        do = torch.randn(batch, steps, width, device="cuda", generator=gen).to(torch.bfloat16)

        def fwd_bwd(scan):
            o, _ = scan(x, g)
            return torch.autograd.grad(o, (x, g), do)
        return {name: (lambda scan=scan: fwd_bwd(scan)) for name, scan in scans.items()}
    return make


def cases(quick: bool) -> list[BenchCase]:
    fla_hgrn = optional_import("fla.ops.hgrn")
    skipped_fla = ({} if fla_hgrn is not None else
                   {"fla chunk_hgrn": "flash-linear-attention not installed",
                    "fla fused_recurrent_hgrn": "flash-linear-attention not installed"})
    out = []
    for mode, shapes in (("fwd", FORWARD), ("fwd+bwd", FORWARD_BACKWARD)):
        for batch, steps, width, target in (shapes[:1] if quick else shapes):
            skipped = dict(skipped_fla)
            if steps > TORCH_LOOP_MAX_T:
                skipped["torch loop"] = f"T={steps}: one kernel per step, far too slow (run at T <= {TORCH_LOOP_MAX_T})"
            elements = batch * steps * width
            out.append(BenchCase(
                op="linear_scan", mode=mode, shape={"B": batch, "T": steps, "D": width}, dtype="bf16",
                flops=float((3 if mode == "fwd" else 10) * elements), bytes=_bytes(batch, steps, width, mode),
                make=_make(batch, steps, width, mode, fla_hgrn), target_ms=target, skipped=skipped,
                note="x, g bf16, log-sigmoid gates; no initial/final state"))
    return out
