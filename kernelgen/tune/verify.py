"""Verification of one config: fresh random inputs, NaN-poisoned outputs, float64 reference."""
from __future__ import annotations

import math

import torch

from kernelgen.template import Config, Shape, Template, Tensors


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out − ref‖ / ‖ref‖ in float64; inf when ``out`` has NaN/inf (an unwritten element)."""
    out64 = out.detach().to(torch.float64)
    ref64 = ref.detach().to(device=out64.device, dtype=torch.float64)
    if out64.shape != ref64.shape:
        return math.inf
    if not bool(torch.isfinite(out64).all()):
        return math.inf
    return float((out64 - ref64).norm() / ref64.norm().clamp_min(1e-30))


def verify(template: Template, config: Config, shape: Shape, dtype: str, flags: str,
           device: torch.device | str, seed: int) -> tuple[dict[str, float], str | None, Tensors]:
    """Run ``config`` once on fresh inputs; returns (error per output, failure reason or None, inputs).

    Outputs are filled with NaN first, so an element the kernel never writes fails the check.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    inputs = template.make_inputs(shape, dtype, flags, device, generator)
    outputs = template.allocate_outputs(inputs, shape, dtype, flags)
    for buffer in outputs.values():
        if buffer.is_floating_point():
            buffer.fill_(float("nan"))
    template.launch(config, inputs, outputs, shape, flags)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    reference = template.reference(inputs, shape, flags)
    errors, reason = {}, None
    for name, expected in reference.items():
        if name not in outputs:
            reason = f"launch declared no output {name!r}"
            break
        errors[name] = relative_error(outputs[name], expected)
        limit = template.tolerance(dtype, name)
        if not errors[name] <= limit:
            reason = reason or f"wrong result: {name} relative error {errors[name]:.2e} > {limit:.1e}"
    return errors, reason, inputs
