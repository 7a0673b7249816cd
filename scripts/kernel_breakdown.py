"""Where does an op's time go? Per-kernel CUDA time of kernelgen's bench cases (torch.profiler).

    python3 scripts/kernel_breakdown.py [--op linear_attention] [--mode fwd+bwd] [--full]

Runs each matching bench case's "kernelgen" provider a few times under the profiler and prints the
kernels by total device time, with the host-side wall time per call next to the device sum (the
difference is launch overhead and gaps).
"""
from __future__ import annotations

import argparse
import time

import torch

from kernelgen.bench.runner import collect_cases


def breakdown(case, repeats: int = 5) -> None:
    providers = case.make()
    run = providers["kernelgen"]
    for _ in range(3):
        run()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    torch.cuda.synchronize()
    wall_ms = (time.perf_counter() - start) * 1e3 / repeats
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            run()
        torch.cuda.synchronize()
    rows = {}
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            total, count = rows.get(event.name, (0.0, 0))
            rows[event.name] = (total + event.device_time, count + 1)
    device_ms = sum(total for total, _ in rows.values()) / 1e3 / repeats
    print(f"\n== {case.op} {case.mode} {case.label} {case.dtype}: wall {wall_ms:.3f} ms/call, "
          f"device sum {device_ms:.3f} ms/call")
    for name, (total, count) in sorted(rows.items(), key=lambda item: -item[1][0])[:12]:
        print(f"  {total / 1e3 / repeats:8.3f} ms  x{count // repeats:<3d} {name[:110]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--op", default="all")
    parser.add_argument("--mode", default=None, help="only cases of this mode (fwd, fwd+bwd, ...)")
    parser.add_argument("--full", action="store_true", help="every case, not the quick set")
    args = parser.parse_args()
    for case in collect_cases(args.op, quick=not args.full):
        if args.mode and case.mode != args.mode:
            continue
        try:
            breakdown(case)
        except Exception as error:   # noqa: BLE001 - report and go on to the next case
            print(f"\n== {case.op} {case.mode} {case.label}: {type(error).__name__}: {error}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
