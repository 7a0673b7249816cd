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


H200 = hardware.DetectedGPU("NVIDIA H200", "h200", (9, 0), 132, 139.8, hardware.profile("h200"))
A100 = hardware.DetectedGPU("NVIDIA A100-SXM4-80GB", "a100", (8, 0), 108, 79.2, hardware.profile("a100"))


def on_gpu(monkeypatch, gpu):
    monkeypatch.setattr(dispatch, "current_gpu", lambda device: gpu)
    dispatch.reset()


def test_a_gpu_without_its_own_file_borrows_one_of_its_architecture(tuned, monkeypatch):
    """An H200 (sm_90, no tuned/h200.json) runs the H100's tuned configs, and says so once."""
    tuned([entry(1000, 32), entry(1_000_000, 128)])
    on_gpu(monkeypatch, H200)
    with pytest.warns(dispatch.TuningWarning, match=r"tuned on NVIDIA H100 80GB HBM3 \('h100', the same compute "
                                                    r"capability 9.0\): no tuned file for GPU 'h200'.*--warm-from h100"):
        assert lookup(2000)["block"] == 32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lookup(400_000)["block"] == 128   # the nearest bucket, as with its own file; no second warning


def test_borrowing_also_covers_an_entry_missing_from_the_own_file(tuned, monkeypatch):
    tuned([entry(1000, 32)])
    store.merge_write(Path(dispatch.tuned_dir()) / "h200.json", {**H200.identity(), "key": "h200"},
                      [store.Entry(op="fake_scale_shift", kernel="fwd", dtype="fp16", flags="", shape={"N": 1000},
                                   config={"block": 64, "variant": "a"}, ms=1.0,
                                   template_hash=SCALE_SHIFT.source_hash(), triton=triton.__version__)], {}, {})
    on_gpu(monkeypatch, H200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lookup(dtype="fp16")["block"] == 64           # its own entry first
    with pytest.warns(dispatch.TuningWarning, match="tuned on .*no tuned entry for fake_scale_shift.fwd dtype=fp32"):
        assert lookup()["block"] == 32


def test_no_borrowing_across_architectures_or_when_turned_off(tuned, monkeypatch):
    tuned([entry(1000, 32)])
    on_gpu(monkeypatch, A100)                                 # sm_80: the H100's configs are not its own kind
    with pytest.warns(dispatch.TuningWarning, match="runs its heuristic default config: no tuned file for GPU 'a100'"):
        assert lookup() == DEFAULT
    monkeypatch.setenv("KERNELGEN_BORROW_TUNED", "0")
    on_gpu(monkeypatch, H200)
    with pytest.warns(dispatch.TuningWarning, match="heuristic default config: no tuned file for GPU 'h200'"):
        assert lookup() == DEFAULT


def test_a_borrowed_config_must_fit_this_gpu(tuned, monkeypatch):
    tuned([entry(1000, 8192)])                                 # does not fit N=1000 on any GPU
    on_gpu(monkeypatch, H200)
    with pytest.warns(dispatch.TuningWarning, match="heuristic default config: no tuned file for GPU 'h200'"):
        assert lookup() == DEFAULT


def test_shape_knobs_follow_the_call_shape(tuned):
    """A knob that sizes the launch (linear attention's split_len) comes from the heuristic at the
    call's shape when the entry was tuned at another shape; the entry's own shape keeps it."""
    from kernelgen.templates import get_template
    bwd = get_template("linear_attention.bwd")
    target = {"B": 8, "T": 4096, "H": 16, "K": 128, "V": 128, "F": 128}
    config = {**bwd.default_for(target, H100.profile, "g"), "split_len": 0, "x_early": 0}
    tuned([store.Entry(op="linear_attention", kernel="bwd", dtype="bf16", flags="g", shape=target, config=config,
                       ms=1.0, template_hash=bwd.source_hash(), triton=triton.__version__)])
    long = {**target, "B": 1, "T": 65536}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dispatch.config_for(bwd, target, "bf16", "g", device="cuda") == config
        got = dispatch.config_for(bwd, long, "bf16", "g", device="cuda")
    expected_split = bwd.default_for(long, H100.profile, "g")["split_len"]
    assert expected_split > 0
    assert got == {**config, "split_len": expected_split}      # the tuned knobs stay (x_early 0)
    assert bwd.shape_knobs == ("split_len",) and get_template("linear_attention.fwd").shape_knobs == ("split_len",)
