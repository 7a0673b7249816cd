"""`kernelgen calibrate`: measure the GPU's real ceilings once and store them in its profile.

Datasheet peaks are not reachable in practice (an H100 SXM copies at about 3.0 of its 3.35 TB/s
and multiplies bf16 matrices at about 750-800 of its 989 TFLOP/s), so the roofline judges
kernels against what this GPU actually reaches:

- ``copy_gbs``:    a 1 GiB device-to-device copy, counting bytes read + written, over the time
- ``bf16_tflops``, ``fp16_tflops``: torch.matmul of random 8192x8192 matrices (cuBLAS, tensor cores)
- ``tf32_tflops``: the same in fp32 with TF32 allowed (tensor cores)
- ``fp32_tflops``: the same in fp32 with TF32 off (the CUDA-core fp32 ceiling)

Every number is a do_bench median (L2 flushed between runs). They are merged into
``profiles/<gpu>.json`` under ``measured`` with the date and toolchain, next to the datasheet.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import warnings
from typing import Any, Callable

from kernelgen.profile import Timer, median_ms

COPY_BYTES = 1 << 30
GEMM_SIZE = 8192
# measured key -> the datasheet key it is compared with
DATASHEET_KEY = {"copy_gbs": "bandwidth_gbs", "bf16_tflops": "bf16_tflops", "fp16_tflops": "fp16_tflops",
                 "tf32_tflops": "tf32_tflops", "fp32_tflops": "fp32_tflops"}


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpu", metavar="KEY",
                        help="profile key this GPU must be (e.g. h100); refuses to run on another GPU")
    parser.add_argument("--no-save", action="store_true", help="measure and print, but leave profiles/ alone")


def measure_copy_gbs(device, nbytes: int = COPY_BYTES, timer: Timer = median_ms) -> float:
    """Device-to-device copy bandwidth, bytes read + written per second, in GB/s."""
    import torch
    source = torch.randn(nbytes // 4, device=device, dtype=torch.float32)
    target = torch.empty_like(source)
    ms = timer(lambda: target.copy_(source))
    return 2 * source.numel() * source.element_size() / (ms / 1e3) / 1e9


def measure_gemm_tflops(device, dtype: str, size: int = GEMM_SIZE, tf32: bool = False,
                        timer: Timer = median_ms) -> float:
    """torch.matmul of random [size, size] matrices, in TFLOP/s (2·size³ per product)."""
    import torch

    from kernelgen.template import DTYPES
    torch_dtype = DTYPES[dtype]
    a = torch.randn(size, size, device=device, dtype=torch_dtype)
    b = torch.randn(size, size, device=device, dtype=torch_dtype)
    out = torch.empty(size, size, device=device, dtype=torch_dtype)
    with warnings.catch_warnings():   # newer torch warns that this API is being replaced
        warnings.simplefilter("ignore")
        previous = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
        try:
            ms = timer(lambda: torch.matmul(a, b, out=out))
        finally:
            torch.set_float32_matmul_precision(previous)
    return 2.0 * size**3 / (ms / 1e3) / 1e12


def calibrate(device, timer: Timer = median_ms,
              progress: Callable[[str, float], None] | None = None) -> dict[str, float]:
    """Every ceiling, rounded to 0.1: copy_gbs, bf16_tflops, fp16_tflops, tf32_tflops, fp32_tflops."""
    steps: list[tuple[str, Callable[[], float]]] = [
        ("copy_gbs", lambda: measure_copy_gbs(device, timer=timer)),
        ("bf16_tflops", lambda: measure_gemm_tflops(device, "bf16", timer=timer)),
        ("fp16_tflops", lambda: measure_gemm_tflops(device, "fp16", timer=timer)),
        ("tf32_tflops", lambda: measure_gemm_tflops(device, "fp32", tf32=True, timer=timer)),
        ("fp32_tflops", lambda: measure_gemm_tflops(device, "fp32", tf32=False, timer=timer)),
    ]
    results = {}
    for key, measure in steps:
        results[key] = round(measure(), 1)
        if progress:
            progress(key, results[key])
    return results


def calibrate_command(args: argparse.Namespace, console) -> int:
    """`kernelgen calibrate`; 0 when measured (and saved unless --no-save), 2 without a usable GPU."""
    import torch
    if not torch.cuda.is_available():
        from kernelgen.hardware import no_gpu_message
        console.print(no_gpu_message("calibrate", "Run it on the GPU whose ceilings you want measured."))
        return 2
    from kernelgen import hardware
    gpu = hardware.detect_gpu()
    assert gpu is not None
    wanted = getattr(args, "gpu", None)
    if wanted and wanted != gpu.key:
        console.print(f"[red]kernelgen calibrate:[/red] --gpu {wanted} was asked for, but this GPU is "
                      f"'{gpu.name}' (profile key '{gpu.key}')")
        return 2

    device = torch.device("cuda", torch.cuda.current_device())
    console.print(f"Calibrating {gpu.name}: 1 GiB copy, {GEMM_SIZE}³ GEMMs (bf16, fp16, fp32 with and without TF32)")
    results = calibrate(device, progress=lambda key, value: console.print(f"  {key}: {value}", highlight=False))
    console.print(_table(results, gpu.profile))

    if getattr(args, "no_save", False):
        console.print("--no-save: profiles/ left unchanged")
        return 0
    if gpu.profile is None:
        console.print(f"[yellow]No profile for '{gpu.name}' in profiles/, so nothing was saved: add "
                      f"profiles/{gpu.key}.json with its datasheet peaks (copy profiles/h100.json) and run "
                      "kernelgen calibrate again.[/yellow]")
        return 1
    import triton
    measured: dict[str, Any] = {
        **results,
        "calibrated_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device_name": gpu.name,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "note": (f"kernelgen calibrate: device-to-device copy of {COPY_BYTES >> 30} GiB (bytes read + written) "
                 f"and torch.matmul {GEMM_SIZE}^3 on random inputs; do_bench medians"),
    }
    path = hardware.save_measured(gpu.profile.key, measured)
    console.print(f"saved to {path}")
    return 0


def _table(results: dict[str, float], profile) -> Any:
    from rich.table import Table
    table = Table(title="Measured ceilings", title_justify="left")
    for name in ("ceiling", "measured", "datasheet", "% of datasheet"):
        table.add_column(name, justify="left" if name == "ceiling" else "right")
    for key, value in results.items():
        datasheet = profile.datasheet.get(DATASHEET_KEY[key]) if profile else None
        share = f"{100 * value / datasheet:.0f}" if datasheet else "—"
        table.add_row(key, f"{value:.1f}", f"{datasheet:.1f}" if datasheet else "—", share)
    return table


def main(argv: list[str] | None = None) -> int:
    """``python -m kernelgen.calibrate ...``: the same as ``kernelgen calibrate ...``."""
    from rich.console import Console
    parser = argparse.ArgumentParser(prog="kernelgen calibrate", description=__doc__.splitlines()[0])
    add_calibrate_arguments(parser)
    return calibrate_command(parser.parse_args(argv), Console())


if __name__ == "__main__":
    raise SystemExit(main())
