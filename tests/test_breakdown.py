"""The per-kernel split of a launch (kernelgen.tune.breakdown): its formatting, the compiled-kernel
stats it reads, and the worker/probe plumbing on the CPU (where it is empty: no CUDA events)."""
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from kernelgen.tune import breakdown
from kernelgen.tune.worker import run_trial

sys.path.insert(0, str(Path(__file__).parent))
from tune_fixtures import SCALE_SHIFT  # noqa: E402


def _compiled(regs, spills, smem):
    return SimpleNamespace(n_regs=regs, n_spills=spills, metadata=SimpleNamespace(shared=smem))


def test_compiled_stats_are_read_and_forgotten():
    kernel = SimpleNamespace(device_caches={0: ({"a": _compiled(128, 0, 49152), "b": _compiled(255, 12, 1024)},)})
    assert breakdown._compiled_stats(kernel) == [{"regs": 128, "spills": 0, "smem": 49152},
                                                {"regs": 255, "spills": 12, "smem": 1024}]
    breakdown._forget_compiled({"k": [kernel]})
    assert breakdown._compiled_stats(kernel) == []


def test_format_split_names_each_kernel_with_how_it_compiled():
    text = breakdown.format_split({
        "_out_kernel": {"ms": 0.4421, "launches": 1.0, "compiled": [{"regs": 209, "spills": 0, "smem": 50176}]},
        "_cumsum_kernel": {"ms": 0.02, "launches": 2.0, "compiled": []}})
    first, second = text.splitlines()
    assert "0.4421 ms" in first and "_out_kernel" in first and "209 regs 0 spilled 49 KB smem" in first
    assert "x2" in second and "_cumsum_kernel" in second and "regs" not in second


def test_no_split_off_the_gpu():
    assert breakdown.kernel_split(lambda: torch.zeros(4), "cpu") == {}


def test_the_worker_returns_the_split_when_asked(device):
    trial = {"module": "tune_fixtures", "template": SCALE_SHIFT.name, "shape": {"N": 100}, "dtype": "fp32",
             "flags": "", "config": SCALE_SHIFT.default_config({"N": 100}), "device": device, "seed": 0}
    reply = run_trial({**trial, "kernels": True})
    assert reply["ok"], reply
    if device == "cpu":
        assert reply["kernels"] == {}          # no CUDA events: the split is empty
    else:
        assert isinstance(reply["kernels"], dict)
    reply = run_trial(trial)
    assert reply["ok"] and "kernels" not in reply


def test_template_kernels_are_found_by_name():
    """Outside the interpreter (a subprocess: these tests run under it) the template modules'
    JITFunctions are found under the names the profiler reports, every one of a shared name."""
    import os
    import subprocess
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = ("import kernelgen.templates.loglinear_attention, kernelgen.templates.sliding_window_attention\n"
            "import kernelgen.templates.linear_attention\n"
            "from kernelgen.tune.breakdown import _triton_kernels\n"
            "found = _triton_kernels()\n"
            "assert '_fwd_output_kernel' in found and '_block_suffix_kernel' in found, sorted(found)\n"
            "assert all(hasattr(k, 'device_caches') for same in found.values() for k in same)\n"
            "assert len(found['_fwd_kernel']) >= 2\n")   # two templates' kernels share the name
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


@pytest.mark.parametrize("argv, expected", [
    (["--template", "nope", "--shape", "N=1"], "--template nope: no such template; known: "),
    (["--template", "linear_scan.fwd", "--shape", "B8"], "--shape B8: write e.g. B=64,T=64,D=64"),
    (["--template", "linear_scan.fwd", "--shape", "B=1,T=8"], "linear_scan.fwd needs B,T,D, each at least 1"),
    (["--template", "linear_scan.fwd", "--shape", "B=1,T=8,D=8", "--dtype", "fp64"], "--dtype fp64: unknown"),
    (["--template", "linear_scan.fwd", "--shape", "B=1,T=8,D=8", "--flags", "g"], "--flags g: not a variant"),
    (["--template", "linear_scan.fwd", "--shape", "B=1,T=8,D=8", "--configs", "[x"], "--configs: cannot read"),
    (["--template", "linear_scan.fwd", "--shape", "B=1,T=8,D=8", "--configs", "{}"], "expected a JSON list"),
])
def test_probe_names_the_bad_argument(capsys, argv, expected):
    """`python3 -m kernelgen.tune.probe` answers a bad argument with a usage error naming it, not a traceback."""
    from kernelgen.tune import probe
    with pytest.raises(SystemExit) as raised:
        probe.main(argv)
    assert raised.value.code == 2 and expected in capsys.readouterr().err
