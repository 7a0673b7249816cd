"""GPU profiles: every file loads, aliases map device names to keys, ceilings are sane."""
import json

import pytest

from kernelgen import hardware


def test_all_required_profiles_present():
    assert {"h100", "h200", "a100", "l40s", "rtx4090"} <= set(hardware.load_profiles())


@pytest.mark.parametrize("device_name, key", [
    ("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H200", "h200"), ("NVIDIA A100-SXM4-80GB", "a100"),
    ("NVIDIA L40S", "l40s"), ("NVIDIA GeForce RTX 4090", "rtx4090")])
def test_aliases(device_name, key):
    assert hardware.profile_for_device_name(device_name).key == key


def test_h100_pcie_is_not_the_sxm_profile():
    assert hardware.profile_for_device_name("NVIDIA H100 PCIe") is None


def test_h100_measured_ceilings():
    h100 = hardware.profile("h100")
    # kernelgen calibrate on the lent H100 measured ~3.0 TB/s copy and ~0.7-0.75 PFLOP/s bf16 GEMM.
    assert h100.bandwidth_gbs == h100.measured["copy_gbs"] and abs(h100.bandwidth_gbs - 3000) < 60
    assert h100.tflops("bf16") == h100.measured["bf16_tflops"] and 650 <= h100.tflops("bf16") <= 800
    assert h100.sms == 132 and h100.compute_capability == (9, 0)


def test_datasheet_fallback():
    a100 = hardware.profile("a100")
    assert a100.bandwidth_gbs == a100.datasheet["bandwidth_gbs"] and a100.tflops("bf16") == 312


def test_bad_profile_names_the_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"schema": "kernelgen.profile/1", "key": "x"}))
    with pytest.raises(ValueError, match="x.json"):
        hardware._profile_from_json(path)
