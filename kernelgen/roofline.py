"""The roofline: how close a kernel run is to the GPU's compute and memory ceilings.

A kernel doing ``flops`` floating-point operations while moving at least ``bytes`` through
device memory cannot finish faster than ``max(flops / peak_flops, bytes / bandwidth)``; the
larger of the two time floors names the **bound** (memory or compute). Arithmetic intensity is
``flops / bytes``; the **ridge point** ``peak_flops / bandwidth`` is the intensity where the two
roofs meet: below it a kernel is memory bound, above it compute bound.

Two roofs are judged against: the datasheet's and the effective one (the ceilings
``kernelgen calibrate`` measured, each falling back to the datasheet where nothing was measured).
"% of peak" is the achieved fraction of the attainable performance at the kernel's intensity,
``floor_time / time``, which for a memory-bound kernel is achieved GB/s over the bandwidth roof
and for a compute-bound kernel achieved TFLOP/s over the compute roof.

This module is pure arithmetic and presentation (rows, rich table, JSON, CSV, PNG plot); running
kernels lives in kernelgen.profile, Nsight Compute in kernelgen.ncu.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

from kernelgen.hardware import GPUProfile

REPORT_SCHEMA = "kernelgen.roofline/1"
# |model bytes - measured DRAM bytes| / measured above this is flagged (issue 7's target).
MODEL_ERROR_TARGET_PCT = 15.0


# --- ceilings -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Roof:
    """One roofline: a compute ceiling (TFLOP/s) and a memory ceiling (GB/s)."""
    tflops: float
    gbs: float

    @property
    def ridge(self) -> float:
        """Intensity (FLOP/byte) where the roofs meet: peak_flops / bandwidth."""
        return self.tflops * 1e12 / (self.gbs * 1e9)

    def attainable_tflops(self, intensity: float) -> float:
        """The roof's height at ``intensity``: min(peak, intensity x bandwidth)."""
        return min(self.tflops, intensity * self.gbs / 1e3)

    def floors_ms(self, flops: float, nbytes: float) -> tuple[float, float]:
        """(compute, memory) time floors in ms."""
        return flops / (self.tflops * 1e12) * 1e3, nbytes / (self.gbs * 1e9) * 1e3

    def floor_ms(self, flops: float, nbytes: float) -> float:
        return max(self.floors_ms(flops, nbytes))

    def bound(self, flops: float, nbytes: float) -> str:
        """'memory' or 'compute': whichever time floor is larger (ties go to memory)."""
        compute_ms, memory_ms = self.floors_ms(flops, nbytes)
        return "compute" if compute_ms > memory_ms else "memory"


def compute_key(dtype: str, tensor_cores: bool = True) -> str:
    """Profile key of the compute ceiling a kernel is judged against.

    Matrix work (``tl.dot``) runs on tensor cores: bf16/fp16 at their rate, fp32 as TF32.
    Element-wise and scan work (a template with ``tensor_cores = False``) runs on the fp32 CUDA
    cores whatever the storage dtype, since every kernel accumulates in fp32.
    """
    if not tensor_cores:
        return "fp32_tflops"
    return {"bf16": "bf16_tflops", "fp16": "fp16_tflops", "fp32": "tf32_tflops"}.get(dtype, "bf16_tflops")


@dataclass(frozen=True)
class Ceilings:
    """The roofs one (GPU, dtype, compute unit) is judged against."""
    gpu: str                   # profile key
    compute_key: str           # "bf16_tflops", "fp32_tflops", ...
    datasheet: Roof
    effective: Roof            # measured where known, else datasheet
    measured_compute: bool     # effective.tflops came from kernelgen calibrate
    measured_memory: bool      # effective.gbs came from kernelgen calibrate


def ceilings_for(gpu: GPUProfile, dtype: str, tensor_cores: bool = True) -> Ceilings:
    key = compute_key(dtype, tensor_cores)
    datasheet_tflops = float(gpu.datasheet.get(key) or gpu.datasheet["bf16_tflops"])
    datasheet = Roof(tflops=datasheet_tflops, gbs=float(gpu.datasheet["bandwidth_gbs"]))
    measured_tflops = _positive(gpu.measured.get(key))
    measured_gbs = _positive(gpu.measured.get("copy_gbs"))
    effective = Roof(tflops=measured_tflops or datasheet.tflops, gbs=measured_gbs or datasheet.gbs)
    return Ceilings(gpu=gpu.key, compute_key=key, datasheet=datasheet, effective=effective,
                    measured_compute=measured_tflops is not None, measured_memory=measured_gbs is not None)


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


# --- report rows --------------------------------------------------------------------------------
@dataclass
class Row:
    """One (template, shape, dtype, flags) measurement and where it sits under the roofs."""
    template: str
    op: str
    kernel: str
    shape: dict[str, int]
    dtype: str
    flags: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    ms: float | None = None              # do_bench median
    flops: float | None = None           # template.flops
    bytes: float | None = None           # template.bytes: the memory floor
    tflops: float | None = None          # achieved
    gbs: float | None = None             # achieved, model bytes / time
    intensity: float | None = None       # flops / bytes
    bound: str | None = None             # "memory" | "compute" under the effective roof
    pct_datasheet: float | None = None   # % of the datasheet roof at this intensity
    pct_measured: float | None = None    # % of the measured ceiling of the binding resource
    compute_key: str | None = None
    roof_tflops: float | None = None     # effective roofs this row was judged against
    roof_gbs: float | None = None
    datasheet_tflops: float | None = None
    datasheet_gbs: float | None = None
    note: str = ""
    error: str | None = None             # why it was not measured
    # --ncu
    dram_bytes: float | None = None      # DRAM bytes read + written, all kernels of one launch
    model_error_pct: float | None = None  # (model bytes - DRAM bytes) / DRAM bytes
    tensor_pct: float | None = None      # tensor pipe active, % of peak (time-weighted over kernels)
    ncu_kernels: int | None = None
    ncu_error: str | None = None

    @property
    def label(self) -> str:
        """'linear_scan.fwd B=8 T=4096 D=2048' (+ ' [flags]')."""
        text = f"{self.template} {shape_label(self.shape)}"
        return f"{text} [{self.flags}]" if self.flags else text

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Row":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def shape_label(shape: Mapping[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in shape.items())


def measured_row(*, template: str, op: str, kernel: str, shape: Mapping[str, int], dtype: str,
                 flags: str, config: Mapping[str, Any], ms: float, flops: float, nbytes: float,
                 ceilings: Ceilings | None, note: str = "") -> Row:
    """A row from a time and the analytic model; ``ceilings`` None (an unprofiled GPU) leaves
    the bound and the percentages empty."""
    seconds = ms / 1e3
    row = Row(template=template, op=op, kernel=kernel, shape=dict(shape), dtype=dtype, flags=flags,
              config=dict(config), ms=ms, flops=float(flops), bytes=float(nbytes), note=note,
              tflops=flops / seconds / 1e12, gbs=nbytes / seconds / 1e9,
              intensity=flops / nbytes if nbytes > 0 else math.inf)
    if ceilings is None:
        return row
    effective, datasheet = ceilings.effective, ceilings.datasheet
    row.compute_key = ceilings.compute_key
    row.roof_tflops, row.roof_gbs = effective.tflops, effective.gbs
    row.datasheet_tflops, row.datasheet_gbs = datasheet.tflops, datasheet.gbs
    row.bound = effective.bound(flops, nbytes)
    row.pct_datasheet = 100.0 * datasheet.floor_ms(flops, nbytes) / ms
    binding_measured = ceilings.measured_memory if row.bound == "memory" else ceilings.measured_compute
    if binding_measured:
        row.pct_measured = 100.0 * effective.floor_ms(flops, nbytes) / ms
    return row


def attach_ncu(row: Row, dram_bytes: float | None, tensor_pct: float | None, kernels: int | None,
               error: str | None = None) -> Row:
    """Record Nsight Compute's measurement and the byte model's error against it."""
    row.dram_bytes, row.tensor_pct, row.ncu_kernels, row.ncu_error = dram_bytes, tensor_pct, kernels, error
    if dram_bytes and row.bytes is not None:
        row.model_error_pct = model_error_pct(row.bytes, dram_bytes)
    return row


def model_error_pct(model_bytes: float, measured_bytes: float) -> float:
    """Signed error of the byte model against measured DRAM traffic, in % of the measurement."""
    return 100.0 * (model_bytes - measured_bytes) / measured_bytes


# --- terminal table -----------------------------------------------------------------------------
def _fmt(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return format(value, spec)


def rows_table(rows: Iterable[Row], title: str = "Roofline"):
    """A rich Table of the rows; Nsight Compute columns appear when any row has them."""
    from rich.markup import escape
    from rich.table import Table

    rows = list(rows)
    with_ncu = any(r.dram_bytes is not None or r.ncu_error for r in rows)
    table = Table(title=title, title_justify="left")
    for name, justify in [("op", "left"), ("kernel", "left"), ("shape", "left"), ("dtype", "left"),
                          ("ms", "right"), ("TFLOP/s", "right"), ("GB/s", "right"), ("FLOP/B", "right"),
                          ("bound", "left"), ("% peak", "right"), ("% meas.", "right")]:
        table.add_column(name, justify=justify, no_wrap=name != "shape")
    if with_ncu:
        for name in ("model MB", "DRAM MB", "err %", "tensor %"):
            table.add_column(name, justify="right")
    for row in rows:
        shape = escape(shape_label(row.shape) + (f" [{row.flags}]" if row.flags else ""))
        if row.error:
            cells = [row.op, row.kernel, shape, row.dtype, "—", "—", "—", "—",
                     "[red]error[/red]", "—", "—"]
            table.add_row(*cells, *(["—"] * 4 if with_ncu else []))
            continue
        bound = {"memory": "[cyan]memory[/cyan]", "compute": "[magenta]compute[/magenta]"}.get(row.bound or "", "—")
        cells = [row.op, row.kernel, shape, row.dtype, _fmt(row.ms, ".4f"), _fmt(row.tflops, ".1f"),
                 _fmt(row.gbs, ".0f"), _fmt(row.intensity, ".2f"), bound,
                 _fmt(row.pct_datasheet, ".0f"), _fmt(row.pct_measured, ".0f")]
        if with_ncu:
            error = _fmt(row.model_error_pct, "+.1f")
            if row.model_error_pct is not None and abs(row.model_error_pct) > MODEL_ERROR_TARGET_PCT:
                error = f"[yellow]{error}[/yellow]"
            cells += [_fmt(row.bytes / 1e6 if row.bytes is not None else None, ".1f"),
                      _fmt(row.dram_bytes / 1e6 if row.dram_bytes is not None else None, ".1f"),
                      error if row.ncu_error is None else "[red]ncu failed[/red]", _fmt(row.tensor_pct, ".0f")]
        table.add_row(*cells)
    return table


# --- files ------------------------------------------------------------------------------------
def write_json(path: str | Path, rows: Iterable[Row], meta: Mapping[str, Any] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"schema": REPORT_SCHEMA, **(meta or {}), "rows": [r.to_json() for r in rows]}
    path.write_text(json.dumps(_finite(data), indent=2, allow_nan=False, default=str) + "\n")
    return path


def _finite(value: Any) -> Any:
    """The same data with inf/NaN as null, so the file is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def read_json(path: str | Path) -> tuple[list[Row], dict[str, Any]]:
    """(rows, meta) of a report written by write_json."""
    data = json.loads(Path(path).read_text())
    if data.get("schema") != REPORT_SCHEMA:
        raise ValueError(f"{path} is not a roofline report (schema {data.get('schema')!r}, "
                         f"expected {REPORT_SCHEMA!r})")
    rows = [Row.from_json(r) for r in data.pop("rows")]
    return rows, data


CSV_COLUMNS = ("template", "op", "kernel", "shape", "dtype", "flags", "ms", "flops", "bytes", "tflops", "gbs",
               "intensity", "bound", "pct_datasheet", "pct_measured", "compute_key", "roof_tflops", "roof_gbs",
               "datasheet_tflops", "datasheet_gbs", "dram_bytes", "model_error_pct", "tensor_pct", "config",
               "note", "error", "ncu_error")


def write_csv(path: str | Path, rows: Iterable[Row]) -> Path:
    """One line per row; shape as 'B=8 T=4096 D=2048', config as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            data = row.to_json()
            data["shape"] = shape_label(row.shape)
            data["config"] = json.dumps(row.config, sort_keys=True)
            writer.writerow({k: "" if data.get(k) is None else data[k] for k in CSV_COLUMNS})
    return path


def write_markdown(path: str | Path, rows: Iterable[Row], title: str = "Roofline", preamble: str = "") -> Path:
    """The terminal table as a GitHub markdown table (for docs/)."""
    rows = list(rows)
    with_ncu = any(r.dram_bytes is not None for r in rows)
    header = ["op", "kernel", "shape", "dtype", "ms", "TFLOP/s", "GB/s", "FLOP/B", "bound", "% peak", "% meas."]
    if with_ncu:
        header += ["model MB", "DRAM MB", "err %", "tensor %"]
    lines = [f"## {title}", "", *([preamble, ""] if preamble else []),
             "| " + " | ".join(header) + " |", "|" + "|".join("---" if i < 4 or i == 8 else "---:"
                                                           for i in range(len(header))) + "|"]
    for row in rows:
        shape = shape_label(row.shape) + (f" [{row.flags}]" if row.flags else "")
        if row.error:
            cells = [row.op, row.kernel, shape, row.dtype] + ["—"] * 4 + ["error"] + ["—"] * (len(header) - 9)
        else:
            cells = [row.op, row.kernel, shape, row.dtype, _fmt(row.ms, ".4f"), _fmt(row.tflops, ".1f"),
                     _fmt(row.gbs, ".0f"), _fmt(row.intensity, ".2f"), row.bound or "—",
                     _fmt(row.pct_datasheet, ".0f"), _fmt(row.pct_measured, ".0f")]
            if with_ncu:
                cells += [_fmt(row.bytes / 1e6 if row.bytes is not None else None, ".1f"),
                          _fmt(row.dram_bytes / 1e6 if row.dram_bytes is not None else None, ".1f"),
                          _fmt(row.model_error_pct, "+.1f"), _fmt(row.tensor_pct, ".0f")]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    failed = [r for r in rows if r.error]
    if failed:
        lines += ["", "Not measured:", ""] + [f"- `{r.label}`: {r.error}" for r in failed]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


# --- plot -------------------------------------------------------------------------------------
_MARKERS = {"fwd": "o", "bwd": "s", "step": "^", "decode": "v"}
# Label positions tried in turn (points from the marker) until one overlaps nothing placed so far.
_LABEL_OFFSETS = ((6, 3), (6, -10), (-6, 3), (-6, -10), (6, 11), (-6, 11), (6, -18), (-6, -18),
                  (0, 18), (0, -26), (14, 20), (-14, 20), (14, -28), (-14, -28))


def plot_roofline(rows: Iterable[Row], path: str | Path, title: str = "Roofline") -> Path:
    """Write a log-log roofline PNG: each compute roof met by the memory roof at its ridge point
    (solid: the effective, measured ceilings; dashed: the datasheet's), one labelled point per row
    (colour: op, marker: kernel)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
    except ImportError as error:  # pragma: no cover - matplotlib is a test dependency
        raise RuntimeError("--plot needs matplotlib: pip install matplotlib (or kernelgen[plot])") from error

    points = [r for r in rows if r.error is None and r.tflops and r.intensity
              and math.isfinite(r.intensity) and r.intensity > 0]
    roofs: dict[str, tuple[Roof, Roof]] = {}
    for r in points:
        if r.compute_key and r.roof_tflops and r.datasheet_tflops:
            roofs.setdefault(r.compute_key, (Roof(r.roof_tflops, r.roof_gbs),
                                             Roof(r.datasheet_tflops, r.datasheet_gbs)))

    intensities = [r.intensity for r in points] + [roof.ridge for pair in roofs.values() for roof in pair]
    x_lo = min(intensities, default=0.1) / 4
    x_hi = max(intensities, default=100.0) * 4
    xs = [x_lo * (x_hi / x_lo) ** (i / 399) for i in range(400)]
    y_values = [r.tflops for r in points] + [roof.tflops for pair in roofs.values() for roof in pair]

    figure = Figure(figsize=(11, 7.5), dpi=130)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlim(x_lo, x_hi)
    axes.set_ylim(max(min(y_values, default=1.0) / 4, 1e-6), max(y_values, default=1000.0) * 2)

    roof_colors = ["black", "dimgray", "saddlebrown"]
    for index, (key, (effective, datasheet)) in enumerate(sorted(roofs.items())):
        color = roof_colors[index % len(roof_colors)]
        name = key.replace("_tflops", "")
        axes.plot(xs, [effective.attainable_tflops(x) for x in xs], color=color, linewidth=2,
                  label=f"{name} roof: {effective.tflops:.0f} TFLOP/s, {effective.gbs:.0f} GB/s")
        if datasheet != effective:
            axes.plot(xs, [datasheet.attainable_tflops(x) for x in xs], color=color, linewidth=1,
                      linestyle="--", alpha=0.6,
                      label=f"{name} datasheet: {datasheet.tflops:.0f} TFLOP/s, {datasheet.gbs:.0f} GB/s")
        axes.plot([effective.ridge], [effective.tflops], marker="D", color=color, markersize=7, linestyle="none",
                  label=f"{name} ridge point: {effective.ridge:.0f} FLOP/B")

    ops = sorted({r.op for r in points})
    color_of = dict(zip(ops, _colors(len(ops))))
    for r in points:
        axes.plot([r.intensity], [r.tflops], linestyle="none", marker=_MARKERS.get(r.kernel, "P"),
                  color=color_of[r.op], markersize=6, markeredgecolor="black", markeredgewidth=0.4)

    # Labels go where they overlap no marker and no label already placed.
    renderer = canvas.get_renderer()
    area = axes.get_window_extent(renderer)
    taken = [_marker_box(axes, r.intensity, r.tflops) for r in points]
    for r in points:
        text = f"{r.kernel} {shape_label(r.shape)}" + (f" [{r.flags}]" if r.flags else "")
        best, best_clashes = None, None
        for dx, dy in _LABEL_OFFSETS:
            align = "left" if dx > 0 else "right" if dx < 0 else "center"
            note = axes.annotate(text, (r.intensity, r.tflops), textcoords="offset points", xytext=(dx, dy),
                                 fontsize=6, color=color_of[r.op], ha=align,
                                 arrowprops=None if abs(dy) < 12 else dict(arrowstyle="-", color=color_of[r.op],
                                                                           linewidth=0.4, alpha=0.6))
            box = note.get_window_extent(renderer)
            clashes = sum(box.overlaps(other) for other in taken) + (0 if _inside(box, area) else 100)
            if best_clashes is None or clashes < best_clashes:
                if best is not None:
                    best[0].remove()
                best, best_clashes = (note, box), clashes
            else:
                note.remove()
            if clashes == 0:
                break
        taken.append(best[1])

    handles, labels = axes.get_legend_handles_labels()
    for op in ops:
        handles.append(Line2D([], [], linestyle="none", marker="o", color=color_of[op], markeredgecolor="black",
                              markeredgewidth=0.4))
        labels.append(op)
    for kernel in sorted({r.kernel for r in points}):
        handles.append(Line2D([], [], linestyle="none", marker=_MARKERS.get(kernel, "P"), color="lightgray",
                              markeredgecolor="black", markeredgewidth=0.4))
        labels.append(kernel)
    axes.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    axes.set_xlabel("arithmetic intensity (FLOP / byte of device memory)")
    axes.set_ylabel("achieved TFLOP/s")
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    axes.grid(True, which="minor", alpha=0.1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight")
    return path


def _marker_box(axes, x: float, y: float, half: float = 5.0):
    from matplotlib.transforms import Bbox
    px, py = axes.transData.transform((x, y))
    return Bbox.from_extents(px - half, py - half, px + half, py + half)


def _inside(box, area) -> bool:
    return box.x0 >= area.x0 and box.x1 <= area.x1 and box.y0 >= area.y0 and box.y1 <= area.y1


def _colors(count: int) -> list:
    from matplotlib import colormaps
    palette = colormaps["tab10"] if count <= 10 else colormaps["tab20"]
    return [palette(i % palette.N) for i in range(count)]
