"""Command-line arguments checked the same way by every tool that takes them: the ones naming one
template's variant and configs (--template, --shape, --dtype, --flags, --configs; kernelgen.tune.probe,
kernelgen.aot) and whole-number counts (`kernelgen tune --trials`, `bench --rep`). A bad one is a
usage error naming it, never a traceback or a silent fallback."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def at_least_one(unit: str = ""):
    """An argparse type: a whole number, at least 1 (``unit`` is named in the message, e.g. " ms")."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number{unit and ' of' + unit}; got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be at least 1{unit}; got {value}")
        return value
    return parse


def parse_shape(text: str) -> dict[str, int]:
    """'B=8,T=4096,D=2048' -> {'B': 8, 'T': 4096, 'D': 2048} (ValueError when unreadable)."""
    return {k.strip(): int(v) for k, v in (item.split("=") for item in text.split(","))}


def template_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace):
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
