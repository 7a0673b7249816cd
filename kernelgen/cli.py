"""The kernelgen command: tune, show, bench, profile, calibrate, info."""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kernelgen.tune.arguments import at_least_one

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130     # 128 + SIGINT, as a shell reports Ctrl-C


def parse_shapes(spec: str | None, template) -> list[dict[str, int]]:
    """'standard' (the template's workload), 'quick', or 'B=8,T=4096,D=2048;B=2,T=65536,D=2048'."""
    if spec in (None, "standard"):
        return [dict(s) for s in template.workload]
    if spec == "quick":
        return [dict(s) for s in (template.quick_workload or template.workload[:1])]
    shapes = []
    for part in spec.split(";"):
        try:
            shape = {k.strip(): int(v) for k, v in (item.split("=") for item in part.split(",") if item.strip())}
        except ValueError:
            raise SystemExit(f"--shapes: cannot read {part!r}; write e.g. 'B=8,T=4096,D=2048;B=2,T=65536,D=2048'")
        empty = [f"{k}={v}" for k, v in shape.items() if v < 1]
        if empty:
            raise SystemExit(f"--shapes: {', '.join(empty)} in {part.strip()!r}; every size must be at least 1")
        if set(shape) >= set(template.dims):
            shapes.append({d: shape[d] for d in template.dims})
    return shapes


def _warm_paths(spec: str | None) -> list[Path]:
    """--warm-from: each comma-separated item a GPU key (its file in tuned/) or a path."""
    from kernelgen.paths import tuned_file
    paths = []
    for item in (spec or "").split(","):
        item = item.strip()
        if item:
            as_path = Path(item)
            paths.append(as_path if as_path.suffix == ".json" or as_path.exists() else tuned_file(item))
    return paths


def _select_templates(op: str | None, kernels: str | None):
    from kernelgen.templates import all_templates
    chosen = [t for t in all_templates().values() if op in (None, "all", t.op)]
    if kernels and kernels != "all":
        wanted = set(kernels.split(","))
        chosen = [t for t in chosen if t.kernel in wanted]
    return chosen


# --- info ---------------------------------------------------------------------------------------

def cmd_info(args, console: Console) -> int:
    from kernelgen import hardware
    gpu = hardware.detect_gpu()
    if gpu is None:
        console.print("[yellow]No CUDA GPU detected[/] (torch.cuda.is_available() is False). "
                      "Kernels run on CUDA GPUs; tests run on the CPU under TRITON_INTERPRET=1.")
    else:
        console.print(f"GPU: [bold]{gpu.name}[/]  key=[bold]{gpu.key}[/]  sm_{gpu.compute_capability[0]}"
                      f"{gpu.compute_capability[1]}  {gpu.sms} SMs  {gpu.memory_gb:.1f} GiB")
        if gpu.profile is None:
            console.print("[yellow]No profile in profiles/ matches this GPU[/]: rooflines and constraints use "
                          "conservative defaults. Add profiles/<key>.json to describe it.")
        _print_tuned_sources(gpu, console)
    table = Table(title="GPU profiles (profiles/)")
    for column in ("key", "name", "SMs", "smem/block", "L2 MB", "bf16 TFLOP/s", "fp32 TFLOP/s", "HBM GB/s",
                   "measured copy GB/s", "measured bf16 TFLOP/s"):
        table.add_column(column, justify="right" if column not in ("key", "name") else "left")
    for p in hardware.load_profiles().values():
        mark = " *" if gpu and gpu.profile and gpu.profile.key == p.key else ""
        table.add_row(p.key + mark, p.name, str(p.sms), f"{p.shared_memory_per_block // 1024} KB",
                      f"{p.l2_bytes / 2**20:.0f}", f"{p.datasheet['bf16_tflops']:g}", f"{p.datasheet['fp32_tflops']:g}",
                      f"{p.datasheet['bandwidth_gbs']:g}", str(p.measured.get("copy_gbs", "-")),
                      str(p.measured.get("bf16_tflops", "-")))
    console.print(table)
    for problem in hardware.unreadable_profiles():
        console.print(f"[red]{escape(problem)}[/]; left out")
    import torch
    import triton
    console.print(f"torch {torch.__version__}, triton {triton.__version__}, CUDA {torch.version.cuda}")
    return 0


def _print_tuned_sources(gpu, console: Console) -> None:
    """Which tuned file the ops read on this GPU, and what they borrow when it has none."""
    from kernelgen import dispatch
    from kernelgen.paths import tuned_file
    own, borrowed, problem = dispatch.tuned_sources(gpu)
    problem = escape(problem or "")
    keys = ", ".join(key for key, _ in borrowed)
    if own is not None:
        skipped = len(own[1].skipped)
        console.print(f"Tuned configs: {tuned_file(gpu.key)} ({len(own[1].entries)} entries"
                      + (f"; {skipped} malformed ones skipped, `kernelgen show` lists them)" if skipped else ")")
                      + (f"; entries it lacks are borrowed from {keys}" if borrowed else ""))
    elif borrowed:
        console.print(f"[yellow]Tuned configs: {problem}[/]; the ops borrow those of {keys} (same compute "
                      f"capability). `kernelgen tune --gpu {gpu.key} --warm-from {borrowed[0][0]}` tunes them here.")
    else:
        console.print(f"[yellow]Tuned configs: {problem}[/]; the ops run heuristic defaults. "
                      f"`kernelgen tune --gpu {gpu.key}` tunes them here.")


# --- tune ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Within the block, SIGTERM raises KeyboardInterrupt (main thread only; elsewhere a no-op)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:          # not the main thread: signals cannot be installed
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


MAX_TIMEOUT_S = 86400.0   # a trial's limit: a day (a study dates its interrupted trials by twice it)


def _positive_seconds(text: str) -> float:
    """--timeout: seconds, more than 0 (at 0 every trial times out)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds; got {text!r}") from None
    if not 0 < value <= MAX_TIMEOUT_S:   # (NaN and inf too: the study's clock cannot hold them)
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_TIMEOUT_S:g} seconds; got {text}")
    return value


def cmd_tune(args, console: Console) -> int:
    from kernelgen import hardware, store
    from kernelgen.paths import tuned_file
    from kernelgen.tune.run import Job, Target, load_warm_files, output_problem, tune_jobs
    from kernelgen.tune.study import StorageError

    profiles = hardware.load_profiles()
    if args.gpu not in profiles:
        console.print(f"[red]--gpu {args.gpu}[/]: no such GPU profile; known: {', '.join(sorted(profiles))}")
        return EXIT_USAGE
    gpu = hardware.detect_gpu()
    if gpu is None:
        console.print(hardware.no_gpu_message("tune", f"Tune on a {profiles[args.gpu].name}. Nothing was tuned."))
        return EXIT_USAGE
    if gpu.key != args.gpu:
        console.print(f"[red]--gpu {args.gpu} does not match this machine's GPU[/]: found '{gpu.name}' "
                      f"(key {gpu.key}). Tune on a {profiles[args.gpu].name}, or pass --gpu {gpu.key}.")
        return EXIT_USAGE
    templates = _select_templates(args.op, args.kernel)
    of_op = _select_templates(args.op, None)
    if not templates and of_op:     # the op is known: the --kernel filter left nothing
        console.print(f"[red]--kernel {escape(args.kernel)}[/]: no such kernel of {args.op or 'any op'}; known: "
                      f"{', '.join(sorted({t.kernel for t in of_op}))}")
        return EXIT_USAGE
    if not templates:
        console.print(f"[red]--op {args.op}[/]: no template; known ops: "
                      f"{', '.join(sorted({t.op for t in _select_templates(None, None)}))}")
        return EXIT_USAGE
    if args.kernel and args.kernel != "all":
        unknown_kernels = set(args.kernel.split(",")) - {t.kernel for t in of_op}
        if unknown_kernels:
            console.print(f"[red]--kernel {escape(args.kernel)}[/]: no kernel {', '.join(sorted(unknown_kernels))} of "
                          f"{args.op or 'any op'}; known: {', '.join(sorted({t.kernel for t in of_op}))}")
            return EXIT_USAGE
    if args.shapes not in (None, "standard", "quick"):
        # each shape must reach some template (one spec serves ops of other dims, so each takes its own)
        for part in args.shapes.split(";"):
            try:
                taken = any(parse_shapes(part, t) for t in templates)
            except SystemExit as error:   # unreadable, or a size below 1
                console.print(f"[red]{escape(str(error))}[/]. Nothing was tuned.")
                return EXIT_USAGE
            if part.strip() and not taken:
                needs = "; ".join(f"{t.name} needs {','.join(t.dims)}" for t in templates)
                console.print(f"[red]--shapes {escape(part.strip())}[/]: no chosen template takes these sizes "
                              f"({escape(needs)}). Nothing was tuned.")
                return EXIT_USAGE
    from kernelgen.template import DTYPES
    dtypes = list(dict.fromkeys(args.dtype.split(",")))   # (once each: a repeat would tune twice)
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown:
        console.print(f"[red]--dtype {escape(args.dtype)}[/]: unknown {', '.join(unknown)}; known: {', '.join(DTYPES)}")
        return EXIT_USAGE
    wanted_flags = None if args.flags is None else set(args.flags.split(","))
    accepted = sorted({flags or "plain" for t in templates for flags in t.flags})
    if wanted_flags is not None and wanted_flags - set(accepted):
        console.print(f"[red]--flags {escape(args.flags)}[/]: {', '.join(sorted(wanted_flags - set(accepted)))} is "
                      f"not a variant of {', '.join(t.name for t in templates)}; accepted: {', '.join(accepted)}")
        return EXIT_USAGE
    jobs = [Job(t, shape, dtype, flags) for t in templates for shape in parse_shapes(args.shapes, t)
            for dtype in dtypes for flags in t.flags if wanted_flags is None or (flags or "plain") in wanted_flags]
    if not jobs:
        console.print("[red]Nothing to tune[/]: no template accepts those shapes/dtypes.")
        return EXIT_USAGE
    out = Path(args.out) if args.out else tuned_file(gpu.key)
    # checked before any study: a study of hours must not end in a file it cannot write
    problem = output_problem(out, gpu.key)
    if problem:
        console.print(f"[red]Cannot merge winners into {escape(str(out))}[/]: {escape(problem)}. Pass another "
                      f"--out, or fix or move the file aside. Nothing was tuned.")
        return EXIT_USAGE
    if args.warm_from is None:
        # What the ops run on this GPU until it has entries of its own (dispatch borrows them from a
        # GPU of the same compute capability): the new winners must beat them, so they are measured.
        from kernelgen import dispatch
        siblings = dispatch.same_architecture_files(gpu)
        warm_from = [tuned for _, tuned in siblings]
        if siblings:
            console.print(f"Warm start from {', '.join(key for key, _ in siblings)}: the configs the ops borrow on "
                          f"this GPU until it has its own (--warm-from none to leave them out)")
    elif args.warm_from.strip().lower() == "none":
        warm_from = []
    else:
        try:
            warm_from = load_warm_files(_warm_paths(args.warm_from))
        except store.StoreError as error:
            console.print(f"[red]{escape(str(error))}[/]. Nothing was tuned.")
            return EXIT_USAGE
    console.print(f"Tuning {len(jobs)} studies on {gpu.name} ({args.sampler}, {args.trials} trials each) -> {out}")

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[best]}"), TimeElapsedColumn(), console=console)
    tasks: dict = {}
    best: dict = {}

    def on_trial(job, number, config, reply):
        key = job.label
        if key not in tasks:
            tasks[key] = progress.add_task(escape(job.label), total=args.trials, best="")
        if reply.get("ok"):
            best[key] = min(best.get(key, float("inf")), reply["ms"])
        elif args.verbose:
            progress.console.print(f"  [dim]FAIL {escape(str(config))}: {escape(str(reply['reason']))}[/]")
        progress.update(tasks[key], advance=1, best=f"best {best[key]:.4f} ms" if key in best else "")

    failures = []
    unwritten = []      # studies with a winner that could not be merged into the file
    finished = []

    def on_job(job, result, error):
        if job.label not in tasks:
            tasks[job.label] = progress.add_task(escape(job.label), total=args.trials, best="")
        progress.update(tasks[job.label], completed=args.trials)
        if error:
            (unwritten if result is not None else failures).append((job, error))
        else:
            finished.append(job)

    try:
        # SIGTERM (`timeout`, a scheduler) unwinds like Ctrl-C, so the trial worker is shut down
        # instead of left running on the GPU
        with _sigterm_as_interrupt(), progress:
            results = tune_jobs(jobs, Target.for_gpu(gpu), out, n_trials=args.trials, sampler=args.sampler,
                                storage_url=args.storage, seed=args.seed, trial_timeout_s=args.timeout,
                                on_trial=on_trial, on_job=on_job, warm_from=warm_from)
    except KeyboardInterrupt:
        console.print(f"[yellow]Interrupted[/] after {len(finished)} of {len(jobs)} studies: their winners are in "
                      f"{out} (each is written when its study ends); the unfinished study's trials stay in "
                      f"the Optuna storage.")
        return EXIT_INTERRUPTED
    except StorageError as error:
        console.print(f"[red]{escape(str(error))}[/]. Nothing was tuned.")
        return EXIT_USAGE
    bandwidth = gpu.profile.bandwidth_gbs if gpu.profile else None
    table = Table(title=f"kernelgen tune — {gpu.name}")
    for column in ("template", "dtype", "shape", "winner", "ms", "GB/s", "% BW", "TFLOP/s", "default ms",
                   "speedup", "trials"):
        table.add_column(column, justify="left" if column in ("template", "shape", "winner", "dtype") else "right")
    for r in results:
        table.add_row(escape(r.template.name + (f" [{r.flags}]" if r.flags else "")), r.dtype,
                      " ".join(f"{k}={v}" for k, v in r.shape.items()),
                      " ".join(f"{k}={v}" for k, v in r.config.items()), f"{r.ms:.4f}", f"{r.gbps:.0f}",
                      f"{100 * r.gbps / bandwidth:.0f}%" if bandwidth else "-", f"{r.tflops:.1f}",
                      f"{r.default_ms:.4f}" if r.default_ms else "-",
                      f"{r.speedup:.2f}x" if r.speedup else "-", f"{r.trials} ({r.failed} failed)")
    console.print(table)
    for job, error in failures:
        console.print(f"[red]no winner[/] for {escape(job.label)}: {escape(str(error))}")
    for job, error in unwritten:
        console.print(f"[red]not written[/] for {escape(job.label)}: {escape(str(error))}")
    console.print(f"Wrote {len(results)} entries to {out}")
    return 0 if results and not unwritten else 1


# --- show ---------------------------------------------------------------------------------------

def cmd_show(args, console: Console) -> int:
    import triton
    from kernelgen import store
    from kernelgen.paths import tuned_dir
    from kernelgen.templates import all_templates

    folder = Path(args.dir) if args.dir else tuned_dir()
    if args.dir and not folder.is_dir():
        console.print(f"[red]--dir {escape(args.dir)}[/]: {'not a folder' if folder.exists() else 'no such folder'}")
        return 2
    files = sorted(folder.glob("*.json")) if not args.gpu else [folder / f"{args.gpu}.json"]
    if not files:
        console.print(f"No tuned files in {folder}.")
        return 0
    hashes = {name: t.source_hash() for name, t in all_templates().items()}
    unreadable = 0
    for path in files:
        try:
            tuned = store.load(path, warn=False)
        except store.StoreError as error:
            console.print(f"[red]{escape(str(error))}[/]")
            unreadable += 1
            continue
        tools = ", ".join(f"{k} {v}" for k, v in tuned.toolchain.items())
        table = Table(title=escape(f"{path.name}: {tuned.gpu.get('name')} ({tools})"))
        for column in ("template", "dtype", "flags", "shape", "config", "ms", "default ms", "GB/s", "trials", "status"):
            table.add_column(column)
        for e in sorted(tuned.entries, key=lambda e: e.key):
            current = hashes.get(e.template)
            status = "unknown template" if current is None else (
                store.stale_reason(e, current, triton.__version__) or "ok")
            # hand-edited values may hold rich markup ("[/]"): escaped, never interpreted
            table.add_row(escape(e.template), escape(e.dtype), escape(e.flags or "-"),
                          escape(" ".join(f"{k}={v}" for k, v in e.shape.items())),
                          escape(" ".join(f"{k}={v}" for k, v in e.config.items())), f"{e.ms:.4f}",
                          f"{e.default_ms:.4f}" if e.default_ms else "-", f"{e.gbps:.0f}" if e.gbps else "-",
                          str(e.trials), "[green]ok[/]" if status == "ok" else f"[yellow]stale: {escape(status)}[/]")
        console.print(table)
        for reason in tuned.skipped:
            console.print(f"[yellow]{escape(path.name)}: skipped {escape(reason)}[/]")
    return 1 if unreadable else 0


# --- bench / profile / calibrate -------------------------------------------------------------------

def cmd_bench(args, console: Console) -> int:
    from kernelgen.bench.runner import run_bench
    return run_bench(args, console)


def cmd_profile(args, console: Console) -> int:
    from kernelgen.profile import profile_command
    return profile_command(args, console)


def cmd_calibrate(args, console: Console) -> int:
    from kernelgen.calibrate import calibrate_command
    return calibrate_command(args, console)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kernelgen", description="Tuned kernels for sub-quadratic sequence models: tune them for your GPU, "
        "inspect stored configs, benchmark against peers, profile against the roofline.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", help="print the detected GPU and the known GPU profiles")
    info.set_defaults(run=cmd_info)

    tune = sub.add_parser("tune", help="tune templates on this GPU with Optuna and store the winners in tuned/",
                          description="Run one Optuna study per (template, shape, dtype, flags). Every trial is "
                          "compiled, verified against the float64 reference and timed in a worker subprocess; "
                          "winners are merged into tuned/<gpu>.json. Re-running resumes the studies.")
    tune.add_argument("--gpu", required=True, help="GPU key (h100, h200, a100, l40s, rtx4090); must match this machine")
    tune.add_argument("--op", default=None, help="op to tune (default: all), e.g. linear_scan")
    tune.add_argument("--kernel", default="all", help="fwd, bwd, ... or a comma list (default: all)")
    tune.add_argument("--shapes", default="standard",
                      help="'standard' (each template's workload), 'quick', or 'B=8,T=4096,D=2048;B=2,T=65536,D=2048'")
    tune.add_argument("--dtype", default="bf16", help="dtype(s) to tune, comma separated (default bf16)")
    tune.add_argument("--flags", default=None,
                      help="only these flag variants, comma separated ('plain' for the variant without flags; default: all)")
    # (at least 1: 0 trials would ship the default, measured once, as tuned)
    tune.add_argument("--trials", type=at_least_one(), default=24, help="measured trials per study (default 24)")
    tune.add_argument("--sampler", choices=("tpe", "grid"), default="tpe", help="TPE (default) or the full grid")
    tune.add_argument("--storage", default=None,
                      help="Optuna storage URL (sqlite:///f.db, postgresql://...) or journal file path; "
                      "default: a journal file in ~/.cache/kernelgen")
    tune.add_argument("--out", default=None, help="tuned file to merge winners into (default tuned/<gpu>.json)")
    tune.add_argument("--warm-from", default=None,
                      help="also measure, right after the default, the nearest winner stored in these tuned "
                           "files (GPU keys or paths, comma separated), e.g. --warm-from h100 on an H200; "
                           "default: the files of the same compute capability that the ops borrow from "
                           "while this GPU has no entries of its own; 'none' for no warm start")
    tune.add_argument("--timeout", type=_positive_seconds, default=120.0, help="seconds before a trial counts as hung")
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("-v", "--verbose", action="store_true", help="print every failed trial's reason")
    tune.set_defaults(run=cmd_tune)

    show = sub.add_parser("show", help="list the tuned configs stored per GPU, flagging stale ones")
    show.add_argument("--gpu", default=None, help="only this GPU's file")
    show.add_argument("--dir", default=None, help="tuned folder (default: KERNELGEN_TUNED_DIR or tuned/)")
    show.set_defaults(run=cmd_show)

    bench = sub.add_parser("bench", help="benchmark kernelgen against peer libraries on this GPU (same as bench.py)")
    from kernelgen.bench.runner import add_bench_arguments
    add_bench_arguments(bench)
    bench.set_defaults(run=cmd_bench)

    profile = sub.add_parser("profile", help="FLOP/s and bandwidth of every op against the GPU's roofline")
    calibrate = sub.add_parser("calibrate", help="measure this GPU's copy bandwidth and GEMM ceilings into its profile")
    try:
        from kernelgen.calibrate import add_calibrate_arguments
        from kernelgen.profile import add_profile_arguments
        add_profile_arguments(profile)
        add_calibrate_arguments(calibrate)
    except ImportError:   # the profiling module is optional at import time
        pass
    profile.set_defaults(run=cmd_profile)
    calibrate.set_defaults(run=cmd_calibrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Logs and pipes get wide tables rather than columns cut to 80 characters.
    console = Console() if sys.stdout.isatty() else Console(width=220)
    return int(args.run(args, console) or 0)


if __name__ == "__main__":
    sys.exit(main())
