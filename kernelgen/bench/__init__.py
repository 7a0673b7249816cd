"""Benchmark cases: kernelgen and the peers a user would pick instead, timed side by side.

Each family module here (``kernelgen/bench/<family>.py``) defines ``cases(quick: bool) ->
list[BenchCase]``; bench.py runs them all and prints one table. A provider that is not installed
(fla, mamba-ssm, CuPy) is simply left out of ``make()``'s result, with the reason in ``skipped``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

FAMILIES = ("linear_scan", "selective_scan", "linear_attention", "loglinear_attention",
            "sliding_window_attention")


@dataclass
class BenchCase:
    op: str                      # public op name, e.g. "linear_scan"
    mode: str                    # "fwd", "fwd+bwd", "step", ...
    shape: dict[str, int]        # printed as the case label
    dtype: str                   # "bf16", ...
    flops: float                 # real work of the kernelgen computation
    bytes: float                 # memory floor: fewest bytes that must cross device memory
    # Builds inputs on the GPU and returns provider name -> zero-argument callable that runs once.
    # "kernelgen" must be one of them; peers are named like "fla chunk_hgrn", "torch loop".
    make: Callable[[], dict[str, Callable[[], Any]]]
    target_ms: float | None = None   # the target for kernelgen, when it sets one
    skipped: dict[str, str] = field(default_factory=dict)   # provider -> why it did not run
    note: str = ""

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.shape.items())


def template_work(forward, backward, shape: dict[str, int], dtype: str, flags: str = "",
                  with_backward: bool = False) -> tuple[float, float]:
    """(FLOPs, bytes) of a case from its templates' models: the forward's, plus the backward's for
    a fwd+bwd case."""
    flops, nbytes = forward.flops(shape, dtype, flags), forward.bytes(shape, dtype, flags)
    if with_backward:
        flops += backward.flops(shape, dtype, flags)
        nbytes += backward.bytes(shape, dtype, flags)
    return flops, nbytes


def optional_import(module: str):
    """The module, or None when it is not installed (peers are optional)."""
    import importlib
    try:
        return importlib.import_module(module)
    except Exception:   # noqa: BLE001 - a broken peer install counts as absent, with the bench noting it
        return None
