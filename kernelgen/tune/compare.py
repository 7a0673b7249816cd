"""How fast does TPE find a good config? Run the full grid and a TPE study on one shape and count
the TPE trials needed to come within 3% of the grid's best.

    python3 -m kernelgen.tune.compare --template linear_scan.fwd --shape B=8,T=4096,D=2048 --trials 24
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from kernelgen import hardware
from kernelgen.templates import get_template
from kernelgen.tune.pool import TrialWorker
from kernelgen.tune.study import StudyRunner, open_storage

WITHIN = 0.03


def trials_to_reach(values_in_order: list[float | None], target_ms: float) -> int | None:
    """1-based index of the first trial at or under ``target_ms`` (None: never reached)."""
    for index, ms in enumerate(values_in_order, start=1):
        if ms is not None and ms <= target_ms:
            return index
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--template", required=True)
    parser.add_argument("--shape", required=True, help="e.g. B=8,T=4096,D=2048")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--seeds", type=int, default=3, help="TPE runs with different seeds")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    template = get_template(args.template)
    shape = {k: int(v) for k, v in (item.split("=") for item in args.shape.split(","))}
    gpu = hardware.detect_gpu()
    if gpu is None:
        print("No CUDA GPU found: the comparison times real kernels.")
        return 2
    folder = Path(tempfile.mkdtemp(prefix="kernelgen-compare-"))
    timings: dict[str, list[float | None]] = {}
    with TrialWorker() as worker:
        def run(sampler: str, seed: int) -> list[float | None]:
            order: list[float | None] = []
            runner = StudyRunner(template, shape, args.dtype, "", worker=worker,
                                 storage=open_storage(str(folder / f"{sampler}-{seed}.journal")),
                                 gpu_key=gpu.key, gpu=gpu.profile, seed=seed,
                                 on_trial=lambda n, c, reply: order.append(reply["ms"] if reply["ok"] else None))
            runner.search(args.trials, sampler)
            return order
        timings["grid"] = run("grid", 0)
        for seed in range(args.seeds):
            timings[f"tpe-{seed}"] = run("tpe", seed)
    grid_best = min(ms for ms in timings["grid"] if ms is not None)
    summary = {"template": template.name, "shape": shape, "dtype": args.dtype, "grid_size": len(timings["grid"]),
               "grid_best_ms": grid_best, "within": WITHIN,
               "tpe_trials_to_reach": {k: trials_to_reach(v, grid_best * (1 + WITHIN))
                                       for k, v in timings.items() if k.startswith("tpe")},
               "tpe_best_ms": {k: min((ms for ms in v if ms is not None), default=None)
                               for k, v in timings.items() if k.startswith("tpe")}}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({**summary, "timings": timings}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
