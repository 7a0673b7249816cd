"""kernelgen.aot: a template's real kernels compiled for sm_90 on a machine without a GPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_aot(tmp_path, *args):
    # A fresh process: the interpreter (TRITON_INTERPRET=1 in this test session) decides at import
    # time whether kernels compile, so the tool must start without it.
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = tmp_path / "aot.json"
    done = subprocess.run([sys.executable, "-m", "kernelgen.aot", *args, "--json", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def test_compiles_a_template_for_the_h100_without_a_gpu(tmp_path):
    rows, printed = _run_aot(tmp_path, "--template", "linear_scan.fwd", "--shape", "B=1,T=64,D=64",
                             "--configs", '[{"block_d": 128}]', "--dump", str(tmp_path / "dump"))
    assert len(rows) == 2 and rows[0]["reason"] is None
    kernel = rows[0]["kernels"][0]
    assert kernel["kernel"] == "linear_scan_kernel"
    assert 0 < kernel["registers"] <= 255 and kernel["local_bytes"] == 0
    assert kernel["sass_instructions"] > 0 and kernel["opcodes"].get("MUFU", 0) > 0   # exp of the gate
    assert (tmp_path / "dump" / "config0" / "linear_scan_kernel.sass").stat().st_size > 0
    assert "linear_scan_kernel: warps" in printed
    assert rows[0]["arch"] == 90 and rows[0]["triton"] in printed.splitlines()[0]   # whose allocation it is


def test_a_config_the_template_rejects_is_reported_not_compiled(tmp_path):
    rows, _ = _run_aot(tmp_path, "--template", "linear_scan.fwd", "--shape", "B=1,T=64,D=64",
                       "--configs", '[{"block_t": 64, "block_d": 1024, "num_warps": 1}]')
    assert rows[1]["reason"] and rows[1]["kernels"] == []


def test_kernels_that_only_make_the_inputs_are_not_reported(tmp_path):
    # The backward template runs a forward to make its checkpoints; only the backward is reported.
    rows, _ = _run_aot(tmp_path, "--template", "selective_scan.bwd", "--shape", "batch=1,dim=8,L=64,N=4")
    assert rows[0]["reason"] is None
    assert [k["kernel"] for k in rows[0]["kernels"]] == ["_selective_scan_bwd_kernel"]


@pytest.mark.parametrize("argv, expected", [
    (["--template", "nope", "--shape", "B=1"], "--template nope: no such template"),
    (["--template", "linear_scan.fwd", "--shape", "B=x"], "--shape B=x: write e.g. B=64,T=64,D=64"),
    (["--template", "linear_scan.fwd", "--shape", "B=1"], "linear_scan.fwd needs B,T,D, each at least 1"),
    (["--template", "linear_scan.fwd", "--shape", "B=1,T=64,D=64", "--arch", "7"], "argument --arch: invalid choice"),
    (["--template", "linear_scan.fwd", "--shape", "B=1,T=64,D=64", "--flags", "z"], "--flags z: not a variant"),
    (["--template", "linear_scan.fwd", "--shape", "B=1,T=64,D=64", "--configs", "[1]"], "expected a JSON list"),
])
def test_a_bad_argument_is_a_usage_error_naming_it(argv, expected):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-m", "kernelgen.aot", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and expected in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]


def test_a_kernel_launched_again_is_dumped_beside_the_first(tmp_path):
    rows, _ = _run_aot(tmp_path, "--template", "linear_attention.bwd", "--shape", "B=1,T=64,H=1,K=16,V=16,F=16",
                       "--flags", "g", "--dump", str(tmp_path / "dump"))
    launches = [k["kernel"] for k in rows[0]["kernels"]].count("_fwd_kernel")
    assert launches >= 2
    dumped = {p.name for p in (tmp_path / "dump" / "config0").glob("_fwd_kernel*.sass")}
    assert dumped == {"_fwd_kernel.sass"} | {f"_fwd_kernel.{i}.sass" for i in range(2, launches + 1)}
