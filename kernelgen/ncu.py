"""Nsight Compute: measured DRAM bytes and tensor-pipe activity of one template launch.

``measure`` runs a child python process under ``ncu`` that builds the template's inputs, launches
it once to compile and warm up, then launches it once more between ``cudaProfilerStart`` and
``cudaProfilerStop`` (``ncu --profile-from-start off``), so only the kernels of that one launch are
measured. Caches are flushed before each kernel (ncu's default ``--cache-control all``), so the
DRAM bytes are a cold-cache launch's, which is what the byte model counts. The clocks are left as
they are (``--clock-control none``).

The child runs as ``python -m kernelgen.ncu child '<json>'``.
"""
from __future__ import annotations

import csv
import glob
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

DRAM_METRICS = ("dram__bytes_read.sum", "dram__bytes_write.sum")
TIME_METRIC = "gpu__time_duration.sum"
# mma.sync (Ampere-style HMMA) and, on Hopper, warpgroup MMA (GMMA) run on different pipes.
HMMA_METRIC = "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active"
GMMA_METRIC = "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active"

NCU_HINT = ("Nsight Compute (ncu) was not found: put it on PATH, or set KERNELGEN_NCU to its path "
            "(it ships with the CUDA toolkit, e.g. /usr/local/cuda/bin/ncu or /opt/nvidia/nsight-compute/<ver>/ncu)")

_UNIT_SCALE = {
    "byte": 1.0, "bytes": 1.0, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "Tbyte": 1e12,
    "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "Kibyte": 2.0**10, "Mibyte": 2.0**20, "Gibyte": 2.0**30,
    "KiB": 2.0**10, "MiB": 2.0**20, "GiB": 2.0**30,
    "nsecond": 1e-9, "usecond": 1e-6, "msecond": 1e-3, "second": 1.0, "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0,
}


def find_ncu() -> str | None:
    """Path of the ncu executable: $KERNELGEN_NCU, PATH, then the usual install folders."""
    override = os.environ.get("KERNELGEN_NCU")
    if override:
        return override if os.path.isfile(override) and os.access(override, os.X_OK) else None
    found = shutil.which("ncu")
    if found:
        return found
    candidates = ["/usr/local/cuda/bin/ncu", *sorted(glob.glob("/usr/local/cuda-*/bin/ncu"), reverse=True),
                  *sorted(glob.glob("/opt/nvidia/nsight-compute/*/ncu"), reverse=True)]
    return next((c for c in candidates if os.path.isfile(c) and os.access(c, os.X_OK)), None)


def metrics_for(compute_capability: tuple[int, int] | None) -> list[str]:
    """The metrics to collect; the GMMA pipe exists only on Hopper (sm_90) and later."""
    metrics = [*DRAM_METRICS, TIME_METRIC, HMMA_METRIC]
    if compute_capability is not None and compute_capability >= (9, 0):
        metrics.append(GMMA_METRIC)
    return metrics


# --- parsing --------------------------------------------------------------------------------------
@dataclass
class KernelMetrics:
    """One profiled kernel: metric name -> value in base units (bytes, seconds, %)."""
    id: str
    name: str
    metrics: dict[str, float] = field(default_factory=dict)


def parse_value(text: str, unit: str) -> float | None:
    """'1,234.5' in 'Kbyte' -> 1234500.0; 'n/a' -> None."""
    cleaned = text.strip().replace(",", "")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value * _UNIT_SCALE.get(unit.strip(), 1.0)


def parse_csv(text: str) -> list[KernelMetrics]:
    """Kernels in ncu's ``--csv`` details output (one line per kernel and metric), in launch order.

    Lines before the header (``==PROF==`` notices, the program's own output) are skipped.
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines)
                  if line.startswith('"') and '"Metric Name"' in line and '"Metric Value"' in line), None)
    if start is None:
        return []
    body = [line for line in lines[start:] if line.startswith('"')]
    reader = csv.DictReader(io.StringIO("\n".join(body)))
    kernels: dict[str, KernelMetrics] = {}
    for record in reader:
        name = record.get("Metric Name")
        if not name:
            continue
        kernel_id = record.get("ID", str(len(kernels)))
        kernel = kernels.setdefault(kernel_id, KernelMetrics(id=kernel_id, name=record.get("Kernel Name", "")))
        value = parse_value(record.get("Metric Value", ""), record.get("Metric Unit", ""))
        if value is not None:
            kernel.metrics[name] = value
    return list(kernels.values())


@dataclass
class Measurement:
    """One launch's totals over all its kernels."""
    dram_bytes: float | None
    tensor_pct: float | None      # time-weighted mean over kernels of the busier tensor pipe
    kernels: int
    gpu_ms: float | None
    kernel_names: list[str] = field(default_factory=list)


def summarize(kernels: list[KernelMetrics]) -> Measurement:
    dram = [sum(k.metrics.get(m, 0.0) for m in DRAM_METRICS) for k in kernels
            if any(m in k.metrics for m in DRAM_METRICS)]
    times = [k.metrics.get(TIME_METRIC) for k in kernels]
    tensor = [max((k.metrics[m] for m in (HMMA_METRIC, GMMA_METRIC) if m in k.metrics), default=None)
              for k in kernels]
    weighted = [(pct, t if t else 1.0) for pct, t in zip(tensor, times) if pct is not None]
    tensor_pct = (sum(p * w for p, w in weighted) / sum(w for _, w in weighted)) if weighted else None
    known_times = [t for t in times if t is not None]
    return Measurement(dram_bytes=sum(dram) if dram else None, tensor_pct=tensor_pct, kernels=len(kernels),
                       gpu_ms=sum(known_times) * 1e3 if known_times else None,
                       kernel_names=[k.name for k in kernels])


# --- running --------------------------------------------------------------------------------------
class NcuError(RuntimeError):
    """ncu ran but gave no usable measurement (the message holds the tail of its output)."""


def command(ncu: str, metrics: list[str], log_file: str, child_spec: Mapping[str, Any]) -> list[str]:
    return [ncu, "--clock-control", "none", "--target-processes", "all", "--profile-from-start", "off",
            "--csv", "--print-units", "base", "--metrics", ",".join(metrics), "--log-file", log_file,
            sys.executable, "-m", "kernelgen.ncu", "child", json.dumps(dict(child_spec))]


def measure(ncu: str, template: str, shape: Mapping[str, int], dtype: str, flags: str,
            compute_capability: tuple[int, int] | None = None, timeout_s: float = 300.0) -> Measurement:
    """Run one launch of ``template`` under ncu; raises NcuError with ncu's own words on failure."""
    spec = {"template": template, "shape": dict(shape), "dtype": dtype, "flags": flags}
    metrics = metrics_for(compute_capability)
    env = {**os.environ, "LC_ALL": "C"}   # no locale digit grouping in the CSV
    # The repository root must be importable by the child even when kernelgen is not installed.
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory(prefix="kernelgen-ncu-") as tmp:
        log_file = os.path.join(tmp, "ncu.csv")
        for attempt in range(2):
            try:
                done = subprocess.run(command(ncu, metrics, log_file, spec), capture_output=True, text=True,
                                      timeout=timeout_s, env=env)
            except subprocess.TimeoutExpired as error:
                raise NcuError(f"ncu did not finish in {timeout_s:.0f} s") from error
            text = Path(log_file).read_text(errors="replace") if os.path.exists(log_file) else ""
            kernels = parse_csv(text) or parse_csv(done.stdout)
            if done.returncode == 0 and kernels:
                return summarize(kernels)
            said = "\n".join(part for part in (text, done.stdout, done.stderr) if part)
            # A metric this GPU's ncu does not know fails the whole run: retry once without the
            # tensor-pipe metrics (the ones that differ between architectures).
            tensor = [m for m in metrics if m in (HMMA_METRIC, GMMA_METRIC)]
            named = [m for m in tensor if m in said]
            unknown = named or (tensor if "metric" in said.lower() else [])
            if attempt == 0 and unknown and done.returncode != 0:
                metrics = [m for m in metrics if m not in unknown]
                continue
            tail = "\n".join(said.strip().splitlines()[-8:])
            if done.returncode == 0:
                raise NcuError(f"ncu profiled no kernel of {template} (is the launch empty?): {tail}")
            raise NcuError(f"ncu exited with {done.returncode}: {tail}")
    raise NcuError("unreachable")  # pragma: no cover


def _child(spec_json: str) -> int:
    """Inside ncu: build inputs, warm up (compile), then profile exactly one launch."""
    import torch

    from kernelgen import dispatch, templates
    from kernelgen.profile import dispatch_shape
    from kernelgen.template import DTYPES

    spec = json.loads(spec_json)
    template = templates.get_template(spec["template"])
    shape, dtype, flags = spec["shape"], spec["dtype"], spec["flags"]
    device = torch.device("cuda", torch.cuda.current_device())
    generator = torch.Generator(device="cpu").manual_seed(0)   # the Template contract: a CPU generator
    inputs = template.make_inputs(shape, dtype, flags, device, generator)
    outputs = template.allocate_outputs(inputs, shape, dtype, flags)
    config = dispatch.config_for(template, dispatch_shape(template, shape), DTYPES[dtype], flags, device)
    template.launch(config, inputs, outputs, shape, flags)
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    template.launch(config, inputs, outputs, shape, flags)
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "child":
        sys.exit(_child(sys.argv[2]))
    print("usage: python -m kernelgen.ncu child '<json spec>' (run by kernelgen profile --ncu)", file=sys.stderr)
    sys.exit(2)
