"""`kernelgen profile`: time every registered template on its shapes and place it under the roofs.

For each template (filtered by op and kernel), shape (the template's standard workload, or a
``--shapes`` spec) and flag variant: fresh random inputs, the config dispatch would pick
(tuned or heuristic default), one warm-up launch (compiles; every output must be written), then
the do_bench median. FLOPs and bytes come from the template's analytic model
(``Template.flops``/``Template.bytes``); kernelgen.roofline turns them into achieved TFLOP/s,
GB/s, intensity, bound and % of peak. A template that fails (compile error, not implemented,
out of memory) becomes a row with its error; the others still run.

With ``--ncu`` each measured row is also run once under Nsight Compute (kernelgen.ncu) for the
DRAM bytes it really moved, next to the model's bytes.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import math
from typing import Any, Callable, Iterable, Mapping

from kernelgen import roofline
from kernelgen.roofline import Row

Timer = Callable[[Callable[[], Any]], float]

# After one of these the CUDA context is gone: every later launch would fail the same way.
_FATAL_CUDA = ("illegal memory access", "device-side assert", "unspecified launch failure",
               "misaligned address", "illegal instruction")


# --- arguments ----------------------------------------------------------------------------------
def add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--op", default="all", help="op to profile (e.g. linear_scan), or 'all' (default)")
    parser.add_argument("--kernel", default="all",
                        help="kernel direction: fwd, bwd, step, ... or 'all' (default)")
    parser.add_argument("--shapes", default="standard",
                        help="'standard' (each template's workload, default), 'quick', or a spec like "
                             "'B=8,T=4096,D=2048' (several separated by ';')")
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"))
    parser.add_argument("--plot", metavar="FILE", help="write a roofline PNG")
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--csv", metavar="FILE", help="write the report as CSV")
    parser.add_argument("--markdown", metavar="FILE", help="write the table as markdown (for docs/)")
    parser.add_argument("--ncu", action="store_true",
                        help="also measure DRAM bytes and tensor-pipe activity with Nsight Compute")


def parse_shape_spec(spec: str) -> list[dict[str, int]]:
    """'B=8,T=4096,D=2048;B=1,T=512,D=64' -> [{'B': 8, ...}, {'B': 1, ...}]."""
    shapes = []
    for part in (p.strip() for p in spec.split(";")):
        if not part:
            continue
        shape: dict[str, int] = {}
        for item in (i.strip() for i in part.split(",")):
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or not name or not value.strip().isdigit():
                raise ValueError(f"--shapes must look like 'B=8,T=4096,D=2048'; got {item!r} in {spec!r}")
            shape[name] = int(value)
        shapes.append(shape)
    if not shapes:
        raise ValueError(f"--shapes must be 'standard', 'quick' or like 'B=8,T=4096,D=2048'; got {spec!r}")
    return shapes


def select_templates(op: str = "all", kernel: str = "all") -> list:
    """Registered templates of ``op`` (or all) and ``kernel`` (or all), in registry order."""
    from kernelgen import templates as registry

    found = list(registry.all_templates().values())
    if not found:
        raise LookupError("no templates are registered (templates/ has no family module yet)")
    if op != "all":
        ops = sorted({t.op for t in found})
        found = [t for t in found if t.op == op]
        if not found:
            raise LookupError(f"--op must be one of: all, {', '.join(ops)}; got {op!r}")
    if kernel != "all":
        kernels = sorted({t.kernel for t in found})
        found = [t for t in found if t.kernel == kernel]
        if not found:
            raise LookupError(f"--kernel must be one of: all, {', '.join(kernels)} (for --op {op}); got {kernel!r}")
    return found


def shapes_for(template, shapes: str | list[dict[str, int]]) -> list[tuple[dict[str, int], str | None]]:
    """(shape, why it cannot run) for each shape to profile ``template`` on."""
    if shapes == "standard":
        found = [dict(s) for s in template.workload]
        return [(s, None) for s in found] or [({}, "template has no standard workload")]
    if shapes == "quick":
        found = [dict(s) for s in (template.quick_workload or template.workload[:1])]
        return [(s, None) for s in found] or [({}, "template has no quick workload")]
    assert isinstance(shapes, list)
    needed = list(template.workload[0]) if template.workload else list(template.dims)
    out = []
    for spec in shapes:
        missing = [d for d in needed if d not in spec]
        if missing:
            out.append((dict(spec), f"shape spec lacks {', '.join(missing)} (needs {', '.join(needed)})"))
        else:
            out.append(({d: spec[d] for d in needed}, None))
    return out


# --- measuring ----------------------------------------------------------------------------------
def median_ms(fn: Callable[[], Any]) -> float:
    """do_bench median in ms (L2 flushed between runs); works on Triton 3.0 through 3.9."""
    from triton.testing import do_bench
    try:
        return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))
    except TypeError:   # a do_bench without return_mode
        return float(do_bench(fn, warmup=25, rep=100, quantiles=[0.5]))


def dispatch_shape(template, shape: Mapping[str, int]) -> dict[str, int]:
    """The shape an op passes to dispatch: only the template's bucket dims (all of it if one is missing)."""
    try:
        return template.shape_of(**shape)
    except KeyError:
        return dict(shape)


def _error_text(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # Triton's compile errors put the source excerpt first and the reason last.
    text = " | ".join(lines[-3:]) if len(lines) > 3 else " | ".join(lines)
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def profile_case(template, shape: Mapping[str, int], dtype: str, flags: str, device,
                 ceilings: "roofline.Ceilings | None", timer: Timer = median_ms) -> Row:
    """Measure one (template, shape, dtype, flags); failures come back as a row with ``error`` set."""
    import torch

    from kernelgen import dispatch
    from kernelgen.template import DTYPES

    base = dict(template=template.name, op=template.op, kernel=template.kernel, shape=dict(shape),
                dtype=dtype, flags=flags)
    try:
        flops = float(template.flops(shape, dtype, flags))
        nbytes = float(template.bytes(shape, dtype, flags))
        if not (math.isfinite(flops) and math.isfinite(nbytes) and flops >= 0 and nbytes > 0):
            raise ValueError(f"model gave flops={flops}, bytes={nbytes}")
    except Exception as error:  # noqa: BLE001 - a broken model is reported, not fatal
        return Row(**base, error=f"FLOP/byte model: {_error_text(error)}")
    config: dict[str, Any] = {}
    try:
        generator = torch.Generator(device="cpu").manual_seed(0)   # the Template contract: a CPU generator
        inputs = template.make_inputs(shape, dtype, flags, device, generator)
        outputs = template.allocate_outputs(inputs, shape, dtype, flags)
        config = dict(dispatch.config_for(template, dispatch_shape(template, shape), DTYPES[dtype], flags, device))
        for tensor in outputs.values():
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
        template.launch(config, inputs, outputs, shape, flags)   # compiles
        unwritten = [name for name, t in outputs.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        ms = timer(lambda: template.launch(config, inputs, outputs, shape, flags))
    except Exception as error:  # noqa: BLE001 - one template's failure must not end the profile
        return Row(**base, config=config, flops=flops, bytes=nbytes, error=_error_text(error))
    finally:
        inputs = outputs = None  # noqa: F841 - free device memory before the next case
    note = f"non-finite values left in {', '.join(unwritten)}" if unwritten else ""
    return roofline.measured_row(**base, config=config, ms=ms, flops=flops, nbytes=nbytes, ceilings=ceilings,
                                 note=note)


def run_profile(templates: Iterable, shapes: str | list[dict[str, int]], dtype: str, device,
                gpu_profile=None, timer: Timer = median_ms,
                progress: Callable[[Row], None] | None = None) -> list[Row]:
    """Rows for every template x shape x flag variant (errors included), in order."""
    rows: list[Row] = []
    lost_context: str | None = None
    for template in templates:
        ceilings = None
        if gpu_profile is not None:
            ceilings = roofline.ceilings_for(gpu_profile, dtype, getattr(template, "tensor_cores", True))
        for shape, problem in shapes_for(template, shapes):
            for flags in template.flags:
                if problem or lost_context:
                    row = Row(template=template.name, op=template.op, kernel=template.kernel, shape=shape,
                              dtype=dtype, flags=flags, error=problem or lost_context)
                else:
                    row = profile_case(template, shape, dtype, flags, device, ceilings, timer)
                    if row.error and any(s in row.error for s in _FATAL_CUDA):
                        lost_context = f"not run: the CUDA context was lost in {row.label}"
                rows.append(row)
                if progress:
                    progress(row)
    return rows


def add_ncu_measurements(rows: list[Row], ncu_path: str, compute_capability=None,
                         progress: Callable[[Row], None] | None = None) -> list[Row]:
    """Run each measured row once under Nsight Compute and attach DRAM bytes and tensor activity."""
    from kernelgen import ncu

    succeeded, failed = 0, 0
    for row in rows:
        if row.error:
            continue
        if failed >= 2 and not succeeded:
            # ncu itself is unusable here (no counter access, profiler not loadable): stop paying for it.
            roofline.attach_ncu(row, None, None, None, error="not run: ncu failed on the first rows")
        else:
            try:
                found = ncu.measure(ncu_path, row.template, row.shape, row.dtype, row.flags, compute_capability)
                roofline.attach_ncu(row, found.dram_bytes, found.tensor_pct, found.kernels)
                succeeded += 1
            except ncu.NcuError as error:
                roofline.attach_ncu(row, None, None, None, error=str(error))
                failed += 1
        if progress:
            progress(row)
    return rows


# --- the command --------------------------------------------------------------------------------
def profile_command(args: argparse.Namespace, console) -> int:
    """`kernelgen profile`; 0 when at least one case was measured, 2 on a usage/environment error."""
    import torch
    from rich.markup import escape
    if not torch.cuda.is_available():
        from kernelgen.hardware import no_gpu_message
        console.print(no_gpu_message("profile", "Run it on a machine with an NVIDIA GPU."))
        return 2
    ncu_path = None
    if getattr(args, "ncu", False):
        from kernelgen.ncu import NCU_HINT, find_ncu
        ncu_path = find_ncu()
        if ncu_path is None:
            console.print(f"[red]--ncu:[/red] {NCU_HINT}")
            return 2
    try:
        shapes: str | list[dict[str, int]] = args.shapes if args.shapes in ("standard", "quick") \
            else parse_shape_spec(args.shapes)
        chosen = select_templates(args.op, getattr(args, "kernel", "all"))
    except (ValueError, LookupError) as error:
        console.print(f"[red]kernelgen profile:[/red] {escape(str(error.args[0] if error.args else error))}")
        return 2

    from kernelgen import hardware
    gpu = hardware.detect_gpu()
    assert gpu is not None
    if gpu.profile is None:
        console.print(f"[yellow]No profile for '{gpu.name}' in profiles/: times, TFLOP/s and GB/s only; "
                      f"add profiles/{gpu.key}.json (datasheet peaks) for the bound and % of peak.[/yellow]")
    device = torch.device("cuda", torch.cuda.current_device())

    def show(row: Row) -> None:
        if row.error:
            console.print(f"  [red]✗[/red] {escape(row.label)} {row.dtype}: {escape(row.error)}", highlight=False)
        else:
            console.print(f"  {escape(row.label)} {row.dtype}: {row.ms:.4f} ms, {row.tflops:.1f} TFLOP/s, "
                          f"{row.gbs:.0f} GB/s", highlight=False)

    console.print(f"Profiling {len(chosen)} template(s) on {gpu.name} ({args.dtype}):")
    rows = run_profile(chosen, shapes, args.dtype, device, gpu.profile, progress=show)
    if ncu_path and any(r.error is None for r in rows):
        console.print(f"Nsight Compute ({ncu_path}), one launch per row:")

        def show_ncu(row: Row) -> None:
            if row.ncu_error:
                console.print(f"  [red]✗[/red] {escape(row.label)}: {escape(row.ncu_error)}", highlight=False)
            elif row.dram_bytes is not None:
                console.print(f"  {escape(row.label)}: DRAM {row.dram_bytes / 1e6:.1f} MB vs model "
                              f"{row.bytes / 1e6:.1f} MB "
                              f"({row.model_error_pct:+.1f}%)", highlight=False)
        add_ncu_measurements(rows, ncu_path, gpu.compute_capability, progress=show_ncu)

    console.print(roofline.rows_table(rows, title=_title(gpu, args.dtype)))
    ceilings_text = _ceilings_text(gpu.profile, args.dtype, rows)
    console.print(ceilings_text, highlight=False)
    failed = [r for r in rows if r.error]
    if failed:
        console.print(f"[red]{len(failed)} of {len(rows)} case(s) not measured:[/red]")
        for row in failed:
            console.print(f"  {escape(row.label)}: {escape(row.error)}", highlight=False, soft_wrap=True)

    meta = _meta(gpu, args)
    try:
        if getattr(args, "json", None):
            console.print(f"wrote {roofline.write_json(args.json, rows, meta)}")
        if getattr(args, "csv", None):
            console.print(f"wrote {roofline.write_csv(args.csv, rows)}")
        if getattr(args, "markdown", None):
            written = roofline.write_markdown(args.markdown, rows, _title(gpu, args.dtype), ceilings_text)
            console.print(f"wrote {written}")
        if getattr(args, "plot", None):
            console.print(f"wrote {roofline.plot_roofline(rows, args.plot, title=_title(gpu, args.dtype))}")
    except (OSError, RuntimeError) as error:
        console.print(f"[red]kernelgen profile:[/red] could not write the report: {error}")
        return 1
    return 0 if len(failed) < len(rows) else 1


def _title(gpu, dtype: str) -> str:
    return f"kernelgen roofline: {gpu.name} ({gpu.key}), {dtype}"


def _ceilings_text(gpu_profile, dtype: str, rows: list[Row]) -> str:
    """One sentence per compute roof in use: the ceilings, where they came from, the ridge."""
    if gpu_profile is None:
        return ""
    keys = sorted({r.compute_key for r in rows if r.compute_key}) or [roofline.compute_key(dtype)]
    parts = []
    for key in keys:
        ceilings = roofline.ceilings_for(gpu_profile, dtype, tensor_cores=key != "fp32_tflops")
        effective, datasheet = ceilings.effective, ceilings.datasheet
        source = {True: "measured", False: "datasheet; not calibrated"}
        parts.append(f"Roof {key}: {effective.tflops:.0f} TFLOP/s ({source[ceilings.measured_compute]}), "
                     f"{effective.gbs:.0f} GB/s ({source[ceilings.measured_memory]}), "
                     f"ridge {effective.ridge:.0f} FLOP/B; datasheet {datasheet.tflops:.0f} TFLOP/s, "
                     f"{datasheet.gbs:.0f} GB/s.")
    parts.append("% peak: of the datasheet roof at the kernel's intensity; % meas.: of the measured ceiling "
                 "of the binding resource (— where that ceiling was not calibrated).")
    return " ".join(parts)


def _meta(gpu, args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import triton
    profile = gpu.profile
    return {
        "gpu": gpu.identity(),
        "datasheet": dict(profile.datasheet) if profile else None,
        "measured": dict(profile.measured) if profile else None,
        "toolchain": {"torch": torch.__version__, "triton": triton.__version__, "cuda": str(torch.version.cuda)},
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "args": {"op": args.op, "kernel": getattr(args, "kernel", "all"), "shapes": args.shapes,
                 "dtype": args.dtype, "ncu": bool(getattr(args, "ncu", False))},
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m kernelgen.profile ...``: the same as ``kernelgen profile ...``."""
    from rich.console import Console
    parser = argparse.ArgumentParser(prog="kernelgen profile", description=__doc__.splitlines()[0])
    add_profile_arguments(parser)
    return profile_command(parser.parse_args(argv), Console())


if __name__ == "__main__":
    raise SystemExit(main())
