"""Where one launch's time goes: each GPU kernel's mean time over a few profiled launches, with
the registers, spills (Triton's n_spills) and shared memory Triton compiled it with.

A template launch is often a pipeline (a block pass, then outputs; a backward of five kernels), and a
config knob moves one kernel while the total hides it. ``kernelgen.tune.probe --kernels`` prints
this per config; the trial worker computes it when a request asks for ``"kernels"``.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import torch

from kernelgen import launch


def _triton_kernels() -> dict[str, list[Any]]:
    """The Triton kernels (``JITFunction``) of every loaded template module, by function name (a
    list: several templates name a kernel ``_fwd_kernel``, and the profiler only sees the name)."""
    try:
        from triton.runtime.jit import JITFunction
    except ImportError:   # pragma: no cover - a partial Triton
        return {}
    found = {}
    for name, module in list(sys.modules.items()):
        if module is None or not (name.startswith("kernelgen.templates") or name.startswith("templates")):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, JITFunction):
                same_name = found.setdefault(value.fn.__name__, [])
                if not any(value is known for known in same_name):   # (helpers imported elsewhere)
                    same_name.append(value)
    return found


def _forget_compiled(kernels: dict[str, list[Any]]) -> None:
    """Drop the in-memory compiled variants (the next launch reloads its own from Triton's disk
    cache), so what is read afterwards belongs to this config alone."""
    launch.clear()
    for same_name in kernels.values():
        for kernel in same_name:
            for cache in getattr(kernel, "device_caches", {}).values():
                cache[0].clear()


def _compiled_stats(kernel: Any) -> list[dict[str, int]]:
    rows = []
    for cache in getattr(kernel, "device_caches", {}).values():
        for compiled in cache[0].values():
            rows.append({"regs": int(compiled.n_regs), "spills": int(compiled.n_spills),
                         "smem": int(compiled.metadata.shared)})
    return rows


def kernel_split(fn: Callable[[], object], device: torch.device | str, repeats: int = 10) -> dict[str, dict]:
    """{kernel name: {"ms": mean per launch of ``fn``, "launches": per call, "compiled": [{regs,
    spills, smem}, ...]}} for the CUDA kernels ``fn`` runs; {} off the GPU (the interpreter has
    neither CUDA events nor compiled kernels)."""
    if torch.device(device).type != "cuda":
        return {}
    from torch.profiler import ProfilerActivity, profile
    kernels = _triton_kernels()
    _forget_compiled(kernels)
    fn()
    torch.cuda.synchronize()
    compiled = {name: [row for kernel in same_name for row in _compiled_stats(kernel)]
                for name, same_name in kernels.items()}
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            fn()
        torch.cuda.synchronize()
    out: dict[str, dict] = {}
    for event in prof.events():
        if event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        row = out.setdefault(event.name, {"ms": 0.0, "launches": 0.0, "compiled": compiled.get(event.name) or []})
        row["ms"] += event.device_time / 1e3 / repeats
        row["launches"] += 1 / repeats
    for row in out.values():
        row["ms"] = round(row["ms"], 4)
        row["launches"] = round(row["launches"], 2)
    return dict(sorted(out.items(), key=lambda item: -item[1]["ms"]))


def format_split(split: dict[str, dict]) -> str:
    """One line per kernel: time, launches per call, and how it compiled."""
    lines = []
    for name, row in split.items():
        built = ", ".join(f"{c['regs']} regs {c['spills']} spilled {c['smem'] // 1024} KB smem"
                          for c in row["compiled"])
        lines.append(f"    {row['ms']:8.4f} ms  x{row['launches']:g}  {name}" + (f"  ({built})" if built else ""))
    return "\n".join(lines)
