"""Compile a template's kernels for a GPU that is not here, and report what the compiler made of
them: registers, local memory (spills), shared memory, layout conversions in the TTGIR, and the
SASS instruction mix of each kernel. No GPU, no timing: the tool for "why is this config slow"
and "does this edit spill" between GPU sessions.

    python3 -m kernelgen.aot --template selective_scan.fwd --shape batch=1,dim=64,L=64,N=16 \
        --flags plain --configs '[{"block_d": 32}]' [--arch 90] [--dump DIR]

The template's own launcher runs with CPU tensors; every Triton launch is turned into a compile
for ``sm_<arch>`` (nothing executes, outputs stay unwritten). Sizes only matter where they pick
code paths, so small shapes compile the same kernels as the real ones.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

# The interpreter would run the kernels instead of compiling them.
os.environ.pop("TRITON_INTERPRET", None)

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.runtime import driver  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

# Compute capabilities the tool compiles for (others crash LLVM, which ends the process).
ARCHES = (80, 86, 89, 90)

# SASS opcodes grouped by the unit or cost they stand for.
OPCODE_GROUPS = {
    "MUFU": "special function (exp2, lg2, rcp)",
    "SHFL": "warp shuffle",
    "BAR": "block barrier",
    "LDS": "shared load", "STS": "shared store", "LDSM": "shared matrix load",
    "LDG": "global load", "STG": "global store", "LDL": "local (spill) load", "STL": "local (spill) store",
    "HMMA": "tensor core (mma.sync)", "HGMMA": "tensor core (wgmma)",
    "FFMA": "fp32 fma", "FMUL": "fp32 mul", "FADD": "fp32 add", "FSEL": "fp32 select",
}


def _fake_driver(arch: int):
    """A CUDA driver that reports ``sm_<arch>`` and never touches libcuda."""
    from triton.backends.nvidia.driver import CudaDriver

    class OfflineCudaDriver(CudaDriver):
        def __init__(self):  # noqa: D401 - the parent would load libcuda
            pass

        def get_current_target(self):
            return GPUTarget("cuda", arch, 32)

        def get_current_device(self):
            return 0

        def get_current_stream(self, device=None):
            return 0

        def get_active_torch_device(self):
            return torch.device("cpu")

        @staticmethod
        def is_active():
            return True

    return OfflineCudaDriver()


class _Capture:
    """Within the block every ``kernel[grid](...)`` compiles (warmup) and records the kernel."""

    def __init__(self, arch: int):
        self.arch = arch
        self.kernels: list[tuple[str, Any]] = []

    def __enter__(self):
        self._saved_run = JITFunction.run
        self._saved_driver = driver._active
        driver.set_active(_fake_driver(self.arch))
        captured = self.kernels
        original = self._saved_run

        def run(jit_self, *args, grid, warmup=False, **kwargs):
            kernel = original(jit_self, *args, grid=grid, warmup=True, **kwargs)
            captured.append((jit_self.fn.__name__, kernel))
            return kernel

        JITFunction.run = run
        return self

    def __exit__(self, *exc):
        JITFunction.run = self._saved_run
        driver._active = self._saved_driver   # reset_active() would look for a real GPU
        return False


def _tool(name: str) -> str:
    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def kernel_report(name: str, kernel, dump: Path | None = None, file_stem: str | None = None) -> dict[str, Any]:
    asm = kernel.asm
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / f"{name}.cubin"
        cubin.write_bytes(asm["cubin"])
        usage = subprocess.run([_tool("cuobjdump"), "-res-usage", str(cubin)], capture_output=True, text=True).stdout
        sass = subprocess.run([_tool("cuobjdump"), "-sass", str(cubin)], capture_output=True, text=True).stdout
    resources = {key.lower(): int(value) for key, value in re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", usage)}
    opcodes = collections.Counter()
    for line in sass.splitlines():
        match = re.match(r"\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", line)
        if match:
            opcodes[match.group(1).split(".")[0]] += 1
    ttgir = asm.get("ttgir", "")
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        stem = file_stem or name
        (dump / f"{stem}.ttgir").write_text(ttgir)
        (dump / f"{stem}.ptx").write_text(asm.get("ptx", ""))
        (dump / f"{stem}.sass").write_text(sass)
    return {
        "kernel": name,
        "num_warps": kernel.metadata.num_warps,
        "num_stages": getattr(kernel.metadata, "num_stages", None),
        "shared_bytes": kernel.metadata.shared,
        "registers": resources.get("reg"),
        "local_bytes": resources.get("local", 0) + resources.get("stack", 0),
        "convert_layouts": ttgir.count("ttg.convert_layout"),
        "sass_instructions": sum(opcodes.values()),
        "opcodes": {op: opcodes[op] for op in OPCODE_GROUPS if opcodes[op]},
    }


def inspect(template_name: str, shape: dict[str, int], dtype: str, flags: str, overrides: list[dict],
            arch: int = 90, dump: Path | None = None) -> list[dict]:
    """Per config (default first): its kernels' compile reports, or the reason it could not run."""
    from kernelgen.templates import get_template

    template = get_template(template_name)
    default = template.default_for(shape, None, flags)
    rows = []
    for index, config in enumerate([default] + [{**default, **o} for o in overrides]):
        config = template.canonical(config)
        try:
            reason = template.check_config(config, shape, None)
        except Exception as error:  # noqa: BLE001 - a mistyped value: report it, go on with the next config
            reason = f"its check raised {type(error).__name__}: {error}"
        row: dict[str, Any] = {"config": config, "reason": reason, "kernels": [], "triton": triton.__version__,
                               "arch": arch}
        if reason is None:
            generator = torch.Generator().manual_seed(index)
            with _Capture(arch):   # inputs some templates make with kernels (a backward's forward): not reported
                inputs = template.make_inputs(shape, dtype, flags, "cpu", generator)
                outputs = template.allocate_outputs(inputs, shape, dtype, flags)
            with _Capture(arch) as capture:
                try:
                    template.launch(config, inputs, outputs, shape, flags)
                except Exception as error:  # noqa: BLE001 - report, go on with the next config
                    cause = f" (caused by {error.__cause__!r})" if error.__cause__ is not None else ""
                    row["reason"] = f"{type(error).__name__}: {str(error)[-800:]}{cause}"
            seen: collections.Counter = collections.Counter()
            for name, kernel in capture.kernels:
                sub = dump / f"config{index}" if dump is not None else None
                seen[name] += 1   # a kernel launched again (a backward's passes) is dumped beside, not over, the first
                row["kernels"].append(kernel_report(name, kernel, sub, f"{name}.{seen[name]}" if seen[name] > 1 else name))
        rows.append(row)
    return rows


def _print(rows: list[dict]) -> None:
    if rows:   # register allocation differs between Triton releases: say whose it is
        print(f"# compiled by Triton {rows[0]['triton']} for sm_{rows[0]['arch']}")
    for row in rows:
        print(json.dumps(row["config"], sort_keys=True))
        if row["reason"]:
            print(f"    not compiled: {row['reason']}")
        for k in row["kernels"]:
            ops = " ".join(f"{op}={n}" for op, n in k["opcodes"].items())
            print(f"    {k['kernel']}: warps {k['num_warps']} regs {k['registers']} local {k['local_bytes']}B "
                  f"smem {k['shared_bytes']}B cvt {k['convert_layouts']} sass {k['sass_instructions']}  {ops}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--template", required=True)
    parser.add_argument("--shape", required=True, help="k=v,... (small sizes compile the same kernels)")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--flags", default="plain", help="'plain' for the variant without flags")
    parser.add_argument("--configs", default="[]", help="JSON list of partial configs merged over the default")
    parser.add_argument("--arch", type=int, default=90, choices=ARCHES,
                        help="compute capability as one number (90 = H100)")
    parser.add_argument("--dump", type=Path, default=None, help="write each kernel's TTGIR, PTX and SASS here")
    parser.add_argument("--json", default=None, help="write the rows to this file")
    args = parser.parse_args(argv)
    from kernelgen.tune.arguments import template_arguments
    template, shape, flags, overrides = template_arguments(parser, args)
    if args.dump is not None and args.dump.exists() and not args.dump.is_dir():
        parser.error(f"--dump {args.dump}: a file is there; name a folder")
    if args.json and (Path(args.json).is_dir() or not Path(args.json).parent.is_dir()):
        parser.error(f"--json {args.json}: name a file in an existing folder")
    rows = inspect(template.name, shape, args.dtype, flags, overrides, args.arch, args.dump)
    _print(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
