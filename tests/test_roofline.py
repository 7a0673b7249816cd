"""Roofline arithmetic, classification, report files and the plot (CPU only, hand-computed numbers)."""
import csv
import json
import math

import pytest

from kernelgen import roofline
from kernelgen.hardware import GPUProfile
from kernelgen.roofline import Roof, Row

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_gpu(measured=None) -> GPUProfile:
    """A GPU with round numbers: 1000 TFLOP/s bf16, 100 fp32, 500 tf32, 2000 GB/s -> ridge 500 FLOP/B."""
    return GPUProfile(key="fake", name="Fake GPU", aliases=(), compute_capability=(9, 0), sms=100,
                      memory_gb=80, shared_memory_per_block=228 * 1024, registers_per_sm=65536,
                      l2_bytes=50 << 20,
                      datasheet={"bf16_tflops": 1000.0, "fp16_tflops": 1000.0, "tf32_tflops": 500.0,
                                 "fp32_tflops": 100.0, "bandwidth_gbs": 2000.0},
                      measured=dict(measured or {}))


def test_ridge_is_peak_flops_over_bandwidth():
    roof = Roof(tflops=1000.0, gbs=2000.0)
    assert roof.ridge == pytest.approx(1000e12 / 2000e9) == pytest.approx(500.0)
    assert roof.attainable_tflops(100.0) == pytest.approx(200.0)     # 100 FLOP/B x 2 TB/s
    assert roof.attainable_tflops(1e4) == pytest.approx(1000.0)      # flat compute roof


def test_classification_memory_below_ridge_compute_above():
    roof = Roof(tflops=1000.0, gbs=2000.0)
    assert roof.bound(flops=1e9, nbytes=1e8) == "memory"        # intensity 10
    assert roof.bound(flops=1e12, nbytes=1e8) == "compute"      # intensity 10000
    assert roof.bound(flops=499e8, nbytes=1e8) == "memory"      # just below the ridge
    assert roof.bound(flops=501e8, nbytes=1e8) == "compute"     # just above
    compute_ms, memory_ms = roof.floors_ms(flops=1e12, nbytes=2e9)
    assert compute_ms == pytest.approx(1.0) and memory_ms == pytest.approx(1.0)
    assert roof.bound(flops=1e12, nbytes=2e9) == "memory"       # a tie counts as memory bound


def test_compute_key_follows_dtype_and_unit():
    assert roofline.compute_key("bf16") == "bf16_tflops"
    assert roofline.compute_key("fp16") == "fp16_tflops"
    assert roofline.compute_key("fp32") == "tf32_tflops"
    assert roofline.compute_key("bf16", tensor_cores=False) == "fp32_tflops"


def test_ceilings_prefer_measured_and_say_which():
    ceilings = roofline.ceilings_for(fake_gpu({"copy_gbs": 1600.0, "note": "text is ignored"}), "bf16")
    assert ceilings.datasheet == Roof(1000.0, 2000.0)
    assert ceilings.effective == Roof(1000.0, 1600.0)
    assert ceilings.measured_memory and not ceilings.measured_compute
    scalar = roofline.ceilings_for(fake_gpu({"fp32_tflops": 80.0}), "bf16", tensor_cores=False)
    assert scalar.compute_key == "fp32_tflops" and scalar.effective == Roof(80.0, 2000.0)
    assert scalar.effective.ridge == pytest.approx(40.0)


def test_memory_bound_row_by_hand():
    ceilings = roofline.ceilings_for(fake_gpu({"copy_gbs": 1600.0}), "bf16")
    # 8e8 bytes and 8e8 FLOPs (intensity 1) in 1 ms: 800 GB/s, 0.8 TFLOP/s.
    row = roofline.measured_row(template="x.fwd", op="x", kernel="fwd", shape={"N": 4}, dtype="bf16", flags="",
                                config={"BLOCK": 64}, ms=1.0, flops=8e8, nbytes=8e8, ceilings=ceilings)
    assert row.tflops == pytest.approx(0.8)
    assert row.gbs == pytest.approx(800.0)
    assert row.intensity == pytest.approx(1.0)
    assert row.bound == "memory"
    assert row.pct_datasheet == pytest.approx(40.0)    # 800 / 2000 GB/s
    assert row.pct_measured == pytest.approx(50.0)     # 800 / 1600 GB/s
    assert (row.roof_tflops, row.roof_gbs, row.datasheet_gbs) == (1000.0, 1600.0, 2000.0)


def test_compute_bound_row_without_measured_compute_has_no_measured_pct():
    ceilings = roofline.ceilings_for(fake_gpu({"copy_gbs": 1600.0}), "bf16")
    # 5e11 FLOPs over 1e8 bytes (intensity 5000) in 1 ms: 500 TFLOP/s of 1000.
    row = roofline.measured_row(template="x.fwd", op="x", kernel="fwd", shape={"N": 4}, dtype="bf16", flags="",
                                config={}, ms=1.0, flops=5e11, nbytes=1e8, ceilings=ceilings)
    assert row.bound == "compute"
    assert row.pct_datasheet == pytest.approx(50.0)
    assert row.pct_measured is None


def test_row_without_profile_keeps_rates_only():
    row = roofline.measured_row(template="x.fwd", op="x", kernel="fwd", shape={"N": 4}, dtype="bf16", flags="",
                                config={}, ms=2.0, flops=2e9, nbytes=4e9, ceilings=None)
    assert row.tflops == pytest.approx(1.0) and row.gbs == pytest.approx(2000.0)
    assert row.bound is None and row.pct_datasheet is None


def test_model_error_against_ncu():
    row = Row(template="x.fwd", op="x", kernel="fwd", shape={}, dtype="bf16", bytes=110e6)
    roofline.attach_ncu(row, dram_bytes=100e6, tensor_pct=12.5, kernels=2)
    assert row.model_error_pct == pytest.approx(10.0)
    assert roofline.model_error_pct(90.0, 100.0) == pytest.approx(-10.0)


def _rows():
    ceilings = roofline.ceilings_for(fake_gpu({"copy_gbs": 1600.0, "bf16_tflops": 800.0}), "bf16")
    scalar = roofline.ceilings_for(fake_gpu(), "bf16", tensor_cores=False)
    return [
        roofline.measured_row(template="scan.fwd", op="scan", kernel="fwd", shape={"B": 8, "T": 4096}, dtype="bf16",
                              flags="", config={"BLOCK": 128}, ms=0.05, flops=3e7, nbytes=6e7, ceilings=scalar),
        roofline.measured_row(template="attn.fwd", op="attn", kernel="fwd", shape={"B": 2, "T": 8192}, dtype="bf16",
                              flags="causal", config={}, ms=2.0, flops=8e11, nbytes=2e8, ceilings=ceilings),
        roofline.measured_row(template="attn.bwd", op="attn", kernel="bwd", shape={"B": 2, "T": 8192}, dtype="bf16",
                              flags="", config={}, ms=5.0, flops=2e12, nbytes=5e8, ceilings=ceilings),
        Row(template="broken.fwd", op="broken", kernel="fwd", shape={"N": 1}, dtype="bf16", error="boom"),
    ]


def test_plot_writes_a_png(tmp_path):
    path = roofline.plot_roofline(_rows(), tmp_path / "sub" / "roofline.png", title="test")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000


def test_plot_with_no_measured_rows_still_writes_a_png(tmp_path):
    rows = [Row(template="broken.fwd", op="broken", kernel="fwd", shape={}, dtype="bf16", error="boom"),
            roofline.measured_row(template="x.fwd", op="x", kernel="fwd", shape={"N": 1}, dtype="bf16", flags="",
                                  config={}, ms=1.0, flops=1e9, nbytes=1e9, ceilings=None)]
    path = roofline.plot_roofline(rows, tmp_path / "r.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_json_round_trip(tmp_path):
    rows = _rows()
    path = roofline.write_json(tmp_path / "r.json", rows, {"gpu": {"key": "fake"}})
    data = json.loads(path.read_text())
    assert data["schema"] == roofline.REPORT_SCHEMA and data["gpu"] == {"key": "fake"}
    again, meta = roofline.read_json(path)
    assert [r.to_json() for r in again] == [r.to_json() for r in rows]
    assert meta["gpu"]["key"] == "fake"


def test_json_of_a_zero_byte_row_is_valid(tmp_path):
    row = Row(template="x.fwd", op="x", kernel="fwd", shape={}, dtype="bf16", intensity=math.inf)
    text = roofline.write_json(tmp_path / "r.json", [row]).read_text()
    assert "Infinity" not in text and json.loads(text)["rows"][0]["intensity"] is None


def test_csv_one_line_per_row(tmp_path):
    path = roofline.write_csv(tmp_path / "r.csv", _rows())
    lines = list(csv.DictReader(path.open()))
    assert len(lines) == 4
    assert lines[0]["shape"] == "B=8 T=4096" and lines[0]["bound"] == "memory"
    assert json.loads(lines[0]["config"]) == {"BLOCK": 128}
    assert lines[3]["error"] == "boom" and lines[3]["ms"] == ""


def test_table_renders_rows_errors_and_ncu_columns():
    from rich.console import Console
    rows = _rows()
    roofline.attach_ncu(rows[0], dram_bytes=5e7, tensor_pct=0.0, kernels=1)   # model +20%: flagged
    console = Console(record=True, width=250)
    console.print(roofline.rows_table(rows, title="t"))
    text = console.export_text()
    for expected in ("scan", "attn", "B=8 T=4096", "memory", "compute", "error", "DRAM MB", "+20.0", "[causal]"):
        assert expected in text, expected
