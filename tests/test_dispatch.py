"""Dispatch: tuned config found, nearest bucket, constraints re-checked, stale/foreign/missing warn once."""
import sys
import warnings
from pathlib import Path

import pytest
import triton

from kernelgen import dispatch, hardware, store

sys.path.insert(0, str(Path(__file__).parent))
from tune_fixtures import SCALE_SHIFT  # noqa: E402

H100 = hardware.DetectedGPU("NVIDIA H100 80GB HBM3", "h100", (9, 0), 132, 79.1, hardware.profile("h100"))
DEFAULT = SCALE_SHIFT.default_config({"N": 1})


@pytest.fixture
def tuned(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELGEN_TUNED_DIR", str(tmp_path))
    monkeypatch.setattr(dispatch, "current_gpu", lambda device: H100)
    dispatch.reset()

    def write(entries, gpu_key="h100", file_key="h100"):
        store.merge_write(tmp_path / f"{file_key}.json", {**H100.identity(), "key": gpu_key}, entries, {}, {})
        dispatch.reset()
    return write


def entry(N, block, template_hash=None, triton_version=None):
    return store.Entry(op="fake_scale_shift", kernel="fwd", dtype="fp32", flags="", shape={"N": N},
                       config={"block": block, "variant": "a"}, ms=1.0,
                       template_hash=template_hash or SCALE_SHIFT.source_hash(),
                       triton=triton_version or triton.__version__)


def lookup(N=1000, dtype="fp32"):
    return dispatch.config_for(SCALE_SHIFT, {"N": N}, dtype, device="cuda")


def test_nearest_tuned_entry(tuned):
    tuned([entry(1000, 32), entry(1_000_000, 128)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lookup(2000)["block"] == 32
        assert lookup(400_000)["block"] == 128


def test_missing_file_warns_once_and_uses_default(tuned):
    with pytest.warns(dispatch.TuningWarning, match="no tuned file for GPU 'h100'"):
        assert lookup() == DEFAULT
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lookup(N=5000) == DEFAULT       # same template/dtype: no second warning


def test_stale_template_hash_warns(tuned):
    tuned([entry(1000, 32, template_hash="0000")])
    with pytest.warns(dispatch.TuningWarning, match="changed since it was tuned"):
        assert lookup() == DEFAULT


def test_other_triton_version_warns(tuned):
    tuned([entry(1000, 32, triton_version="2.1.0")])
    with pytest.warns(dispatch.TuningWarning, match="Triton 2.1.0"):
        assert lookup() == DEFAULT


def test_foreign_gpu_file_warns(tuned):
    tuned([entry(1000, 32)], gpu_key="a100", file_key="h100")
    with pytest.warns(dispatch.TuningWarning, match="tuned for GPU 'a100'"):
        assert lookup() == DEFAULT


def test_corrupt_file_warns(tuned, tmp_path):
    (tmp_path / "h100.json").write_text("{oops")
    with pytest.warns(dispatch.TuningWarning, match="not valid JSON"):
        assert lookup() == DEFAULT


def test_config_that_does_not_fit_the_shape_falls_back(tuned):
    tuned([entry(1000, 8192)])
    with pytest.warns(dispatch.TuningWarning, match="does not fit"):
        assert lookup() == DEFAULT


def test_value_outside_the_space_falls_back(tuned):
    """A hand-edited entry (block 48: no trial could have run it) is refused before any launch."""
    tuned([entry(1000, 48)])
    with pytest.warns(dispatch.TuningWarning, match="block=48 is not one of the template's values"):
        assert lookup() == DEFAULT


def test_no_file_read_after_first_call(tuned, monkeypatch):
    tuned([entry(1000, 32)])
    assert lookup()["block"] == 32

    def boom(*args, **kwargs):
        raise AssertionError("dispatch read a file on a repeated call")
    monkeypatch.setattr(store, "load", boom)
    monkeypatch.setattr(SCALE_SHIFT, "source_files", boom)
    assert lookup()["block"] == 32


def test_cpu_tensors_use_the_default_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dispatch.config_for(SCALE_SHIFT, {"N": 10}, "fp32", device="cpu") == DEFAULT
