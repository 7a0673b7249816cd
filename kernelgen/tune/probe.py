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
from kernelgen.tune.breakdown import format_split
from kernelgen.tune.pool import TrialWorker


def parse_shape(text: str) -> dict[str, int]:
    return {k.strip(): int(v) for k, v in (item.split("=") for item in text.split(","))}


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


def _checked_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """(template, shape, flags, configs) from the command line, or a usage error naming the argument."""
    from kernelgen.template import DTYPES
    from kernelgen.templates import all_templates
    known = all_templates()
    if args.template not in known:
        parser.error(f"--template {args.template}: no such template; known: {', '.join(sorted(known))}")
    template = known[args.template]
    try:
        shape = parse_shape(args.shape)
    except ValueError:
        parser.error(f"--shape {args.shape}: write e.g. {','.join(f'{d}=64' for d in template.dims)}")
    missing, small = [d for d in template.dims if d not in shape], [d for d, v in shape.items() if v < 1]
    if missing or small:
        parser.error(f"--shape {args.shape}: {template.name} needs {','.join(template.dims)}, each at least 1")
    shape = {d: shape[d] for d in template.dims}
    if args.dtype not in DTYPES:
        parser.error(f"--dtype {args.dtype}: unknown; known: {', '.join(DTYPES)}")
    flags = "" if args.flags == "plain" else args.flags
    if flags not in template.flags:
        parser.error(f"--flags {args.flags}: not a variant of {template.name}; accepted: "
                     f"{', '.join(f or 'plain' for f in template.flags)}")
    try:
        text = Path(args.configs[1:]).read_text() if args.configs.startswith("@") else args.configs
        configs = json.loads(text)
    except (OSError, ValueError) as error:
        parser.error(f"--configs: cannot read a JSON list of configs ({error})")
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        parser.error("--configs: expected a JSON list of objects, e.g. '[{\"num_warps\": 4}]'")
    return template, shape, flags, configs


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
    template, shape, flags, overrides = _checked_arguments(parser, args)
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
