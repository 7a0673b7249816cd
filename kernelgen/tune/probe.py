"""Time hand-picked configs of one template side by side: each is verified, then timed, in the
trial worker (a crashing config costs its row only). The tool for "is variant X worth a place in
the search space?" before a full study.

    python3 -m kernelgen.tune.probe --template selective_scan.fwd --shape batch=8,dim=2048,L=4096,N=16 \
        --flags plain --configs '[{"scan": "tile"}, {"block_d": 16}]'

Each config given is merged over the template's default for the shape (so a row names only what
it changes); the default itself is always the first row. ``--kernels`` adds, under each row, every
GPU kernel's share of the launch and the registers / spills / shared memory it compiled to.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from kernelgen import hardware
from kernelgen.templates import get_template
from kernelgen.tune.arguments import parse_shape, template_arguments  # noqa: F401 (parse_shape: scripts)
from kernelgen.tune.breakdown import format_split
from kernelgen.tune.pool import TrialWorker


def probe(template_name: str, shape: dict[str, int], dtype: str, flags: str,
          overrides: list[dict], timeout_s: float = 180.0, kernels: bool = False) -> list[dict]:
    """One reply per config (default first): config, ok, ms, reason, errors (and with ``kernels``
    the per-kernel split, see :mod:`kernelgen.tune.breakdown`)."""
    template = get_template(template_name)
    gpu = hardware.detect_gpu()
    if gpu is None:
        raise SystemExit(hardware.no_gpu_message("probe", "Run it on the GPU you tune for."))
    default = template.default_for(shape, gpu.profile, flags)
    configs = [default] + [{**default, **o} for o in overrides]
    rows = []
    with TrialWorker(timeout_s=timeout_s) as worker:
        for seed, config in enumerate(configs):
            reply = worker.run({"module": type(template).__module__, "template": template.name,
                                "shape": shape, "dtype": dtype, "flags": flags, "config": config,
                                "device": "cuda:0", "seed": 1000 + seed, "kernels": kernels})
            row = {"config": config, "ok": reply["ok"], "ms": reply["ms"], "reason": reply.get("reason"),
                   "errors": reply.get("errors")}
            if kernels:
                row["kernels"] = reply.get("kernels") or {}
            rows.append(row)
            ms = f"{row['ms']:.4f}" if row["ms"] is not None else "-"
            print(f"{ms:>9} ms  {'ok  ' if row['ok'] else 'FAIL'}  {json.dumps(config, sort_keys=True)}"
                  f"{'  ' + str(row['reason']) if row['reason'] else ''}", flush=True)
            if row.get("kernels"):
                print(format_split(row["kernels"]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--template", required=True)
    parser.add_argument("--shape", required=True)
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--flags", default="plain", help="'plain' for the variant without flags")
    parser.add_argument("--configs", default="[]", help="JSON list of partial configs, or @file.json")
    parser.add_argument("--json", default=None, help="append the rows to this JSON-lines file")
    parser.add_argument("--kernels", action="store_true",
                        help="also each GPU kernel's time and registers/spills/shared memory per config")
    args = parser.parse_args(argv)
    template, shape, flags, overrides = template_arguments(parser, args)
    if hardware.detect_gpu() is None:
        from rich.console import Console
        Console(stderr=True).print(hardware.no_gpu_message("probe", "Run it on the GPU you tune for."))
        return 2
    print(f"== {template.name} {shape} {args.dtype} flags={flags or 'plain'}", flush=True)
    rows = probe(template.name, shape, args.dtype, flags, overrides, kernels=args.kernels)
    if args.json:
        with open(args.json, "a") as handle:
            for row in rows:
                handle.write(json.dumps({"template": args.template, "shape": shape, "dtype": args.dtype,
                                         "flags": flags, **row}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
