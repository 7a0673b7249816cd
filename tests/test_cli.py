"""The kernelgen command without a GPU: clear messages, exit codes, tables; tune's GPU check."""
import sys
from pathlib import Path

import pytest

from kernelgen import cli, hardware, store

sys.path.insert(0, str(Path(__file__).parent))
from tune_fixtures import SCALE_SHIFT  # noqa: E402


def run(capsys, *argv):
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for command in ("tune", "show", "bench", "info", "profile", "calibrate"):
        assert command in out


def test_info_without_gpu(capsys, monkeypatch):
    monkeypatch.setattr(hardware, "detect_gpu", lambda index=0: None)
    code, out = run(capsys, "info")
    assert code == 0 and "No CUDA GPU detected" in out and "h100" in out


def test_tune_without_gpu_says_so(capsys, monkeypatch):
    monkeypatch.setattr(hardware, "detect_gpu", lambda index=0: None)
    code, out = run(capsys, "tune", "--gpu", "h100", "--op", "linear_scan")
    assert code == 2 and "No CUDA GPU found" in out


def test_tune_refuses_a_gpu_that_is_not_this_one(capsys, monkeypatch):
    h100 = hardware.DetectedGPU("NVIDIA H100 80GB HBM3", "h100", (9, 0), 132, 79.1, hardware.profile("h100"))
    monkeypatch.setattr(hardware, "detect_gpu", lambda index=0: h100)
    code, out = run(capsys, "tune", "--gpu", "a100")
    assert code == 2 and "does not match" in out and "NVIDIA H100 80GB HBM3" in out


def test_tune_unknown_gpu_key(capsys):
    code, out = run(capsys, "tune", "--gpu", "tpu9")
    assert code == 2 and "known: a100, h100" in out


def test_bench_without_gpu(capsys, monkeypatch):
    monkeypatch.setattr(hardware, "detect_gpu", lambda index=0: None)
    code, out = run(capsys, "bench", "--quick")
    assert code == 2 and "No CUDA GPU found" in out


@pytest.mark.parametrize("argv, expected", [
    (["--op", "nope"], "--op nope --mode all: no bench case; ops: linear_attention, linear_scan"),
    (["--op", "linear_scan", "--mode", "nope"], "no bench case; ops: "),
    (["--op", "linear_scan", "--json", "."], "--json .: . is a folder; name a file in it. Nothing was run."),
    (["--op", "linear_scan", "--json", "no/such/dir/x.json"], "its folder no/such/dir does not exist"),
])
def test_bench_refuses_bad_arguments_before_looking_for_a_gpu(capsys, monkeypatch, argv, expected):
    monkeypatch.setattr(hardware, "detect_gpu", lambda index=0: pytest.fail("looked for a GPU first"))
    code, out = run(capsys, "bench", *argv)
    assert code == 2 and expected in " ".join(out.split())


def test_bench_rep_must_be_positive(capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["bench", "--rep", "0"])
    assert raised.value.code == 2 and "--rep: must be at least 1 ms" in capsys.readouterr().err


def test_show_lists_entries_and_flags_stale(capsys, tmp_path):
    entry = store.Entry(op="linear_scan", kernel="fwd", dtype="bf16", flags="", shape={"B": 8, "T": 4096, "D": 2048},
                        config={"BLOCK_D": 64}, ms=0.15, default_ms=0.2, trials=12, template_hash="deadbeef",
                        triton="3.6.0")
    store.merge_write(tmp_path / "h100.json", {"key": "h100", "name": "NVIDIA H100"}, [entry], {}, {"triton": "3.6.0"})
    code, out = run(capsys, "show", "--dir", str(tmp_path))
    assert code == 0 and "linear_scan" in out and "stale" in out


def test_parse_shapes():
    assert cli.parse_shapes("N=5;N=7", SCALE_SHIFT) == [{"N": 5}, {"N": 7}]
    assert cli.parse_shapes("standard", SCALE_SHIFT) == SCALE_SHIFT.workload
    with pytest.raises(SystemExit, match="cannot read"):
        cli.parse_shapes("N=five", SCALE_SHIFT)


def _interpreter_as_gpu(monkeypatch, key="h100", name="NVIDIA H100 80GB HBM3"):
    """`kernelgen tune` sees GPU ``key`` and runs its trials on the CPU interpreter, with the fixture
    template registered as an op."""
    from kernelgen import templates
    from kernelgen.tune import run as tune_run
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    monkeypatch.setitem(templates._REGISTRY, SCALE_SHIFT.name, SCALE_SHIFT)
    gpu = hardware.DetectedGPU(name, key, (9, 0), 132, 79.1, hardware.profile(key))
    monkeypatch.setattr(hardware, "detect_gpu", lambda index=0: gpu)
    monkeypatch.setattr(tune_run.Target, "for_gpu",
                        classmethod(lambda cls, gpu: cls(device="cpu", identity=gpu.identity(), profile=None)))


def test_tune_end_to_end_through_the_cli(capsys, monkeypatch, tmp_path):
    """The whole `kernelgen tune` path (progress, final table, file) with the CPU interpreter standing in
    for the GPU and the fixture template registered as an op."""
    _interpreter_as_gpu(monkeypatch)
    out = tmp_path / "h100.json"
    code, text = run(capsys, "tune", "--gpu", "h100", "--op", "fake_scale_shift", "--shapes", "N=100",
                     "--trials", "1", "--dtype", "fp32", "--out", str(out), "--storage", str(tmp_path / "s.journal"))
    assert code == 0, text
    assert "kernelgen tune" in text and "fake_scale_shift.fwd" in text and "Wrote 1 entries" in text
    [entry] = store.load(out).entries
    assert entry.config == SCALE_SHIFT.default_config({"N": 100}) and entry.shape == {"N": 100}


def _tune_an_h200_beside_an_h100_winner(monkeypatch, tmp_path, h100_identity):
    """`kernelgen tune` on an H200 (the interpreter standing in), the tuned folder holding an H100
    file with one winner; returns (that winner's config, the list of configs each study measures)."""
    from kernelgen.tune import study
    _interpreter_as_gpu(monkeypatch, "h200", "NVIDIA H200")
    monkeypatch.setenv("KERNELGEN_TUNED_DIR", str(tmp_path))
    borrowed = {"block": 32, "variant": "a"}
    entry = store.Entry(op="fake_scale_shift", kernel="fwd", dtype="fp32", flags="", shape={"N": 120},
                        config=borrowed, ms=1.0, default_ms=1.0, trials=1, template_hash=SCALE_SHIFT.source_hash())
    store.merge_write(tmp_path / "h100.json", h100_identity, [entry], {})
    seen = []
    measure = study.StudyRunner._evaluate
    monkeypatch.setattr(study.StudyRunner, "_evaluate",
                        lambda self, st, trial, config: (seen.append(dict(config)), measure(self, st, trial, config))[1])
    return borrowed, seen


def test_tune_warm_from_another_gpus_file(capsys, monkeypatch, tmp_path):
    """`kernelgen tune --gpu h200 --warm-from h100`: the H100 winner (found by GPU key in the tuned
    folder) is measured beside the default; a warm-from file that is not there stops the run."""
    borrowed, seen = _tune_an_h200_beside_an_h100_winner(monkeypatch, tmp_path, {"key": "h100", "name": "NVIDIA H100"})
    args = ["tune", "--gpu", "h200", "--op", "fake_scale_shift", "--shapes", "N=100", "--trials", "2",
            "--dtype", "fp32", "--storage", str(tmp_path / "s.journal")]
    code, text = run(capsys, *args, "--warm-from", "h100")
    assert code == 0, text
    assert seen == [SCALE_SHIFT.default_config({"N": 100}), borrowed]
    assert len(store.load(tmp_path / "h200.json").entries) == 1
    code, text = run(capsys, *args, "--warm-from", str(tmp_path / "a100.json"))
    assert code == cli.EXIT_USAGE and "no such tuned file" in text and "Nothing was tuned" in text
    corrupt = tmp_path / "l40s.json"
    corrupt.write_text("{")
    code, text = run(capsys, *args, "--warm-from", f"h100,{corrupt}")
    assert code == cli.EXIT_USAGE and "not valid JSON" in text and corrupt.read_text() == "{"   # left as it was


def test_tune_warm_starts_from_what_the_ops_borrow(capsys, monkeypatch, tmp_path):
    """Without --warm-from, an H200 study also measures the H100 winner that dispatch runs on it
    until it has entries of its own (same compute capability); --warm-from none leaves it out."""
    from kernelgen import dispatch
    h100 = hardware.DetectedGPU("NVIDIA H100 80GB HBM3", "h100", (9, 0), 132, 79.1, hardware.profile("h100"))
    borrowed, seen = _tune_an_h200_beside_an_h100_winner(monkeypatch, tmp_path, h100.identity())
    args = ["tune", "--gpu", "h200", "--op", "fake_scale_shift", "--shapes", "N=100", "--trials", "2",
            "--dtype", "fp32", "--out", str(tmp_path / "out.json")]
    dispatch.reset()
    code, text = run(capsys, *args, "--storage", str(tmp_path / "a.journal"))
    assert code == 0, text
    assert "Warm start from h100" in text and seen[:2] == [SCALE_SHIFT.default_config({"N": 100}), borrowed]
    seen.clear()
    args[args.index("--trials") + 1] = "1"                    # one trial: the default alone
    # a fresh --out: the first run's stored winner (the borrowed config when it timed faster) would
    # be measured again, as every re-tune measures out's winner
    args[args.index("--out") + 1] = str(tmp_path / "out_none.json")
    code, text = run(capsys, *args, "--storage", str(tmp_path / "b.journal"), "--warm-from", "none")
    assert code == 0, text
    assert "Warm start" not in text and seen == [SCALE_SHIFT.default_config({"N": 100})]


def test_tune_stops_cleanly_on_sigterm(capsys, monkeypatch, tmp_path):
    """`timeout` or a scheduler sends SIGTERM: the tune unwinds (so its trial worker is shut down),
    says what it kept, exits 130, and leaves the process's SIGTERM handler as it found it."""
    import os
    import signal
    from kernelgen import templates
    from kernelgen.tune import run as tune_run
    monkeypatch.setitem(templates._REGISTRY, SCALE_SHIFT.name, SCALE_SHIFT)
    h100 = hardware.DetectedGPU("NVIDIA H100 80GB HBM3", "h100", (9, 0), 132, 79.1, hardware.profile("h100"))
    monkeypatch.setattr(hardware, "detect_gpu", lambda index=0: h100)
    monkeypatch.setattr(tune_run.Target, "for_gpu",
                        classmethod(lambda cls, gpu: cls(device="cpu", identity=gpu.identity(), profile=None)))

    def first_study_then_sigterm(jobs, target, out, *, on_job=None, **kwargs):
        on_job(jobs[0], object(), None)
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt")

    monkeypatch.setattr(tune_run, "tune_jobs", first_study_then_sigterm)
    before = signal.getsignal(signal.SIGTERM)
    code, text = run(capsys, "tune", "--gpu", "h100", "--op", "fake_scale_shift", "--shapes", "N=100;N=200",
                     "--trials", "1", "--dtype", "fp32", "--out", str(tmp_path / "h100.json"))
    assert code == cli.EXIT_INTERRUPTED, text
    assert "Interrupted" in text and "1 of 2 studies" in text
    assert signal.getsignal(signal.SIGTERM) is before


def test_tune_table_shows_the_flag_variant(capsys, monkeypatch, tmp_path):
    """A variant's label "[g]" is printed as text: rich read it as a markup tag and dropped it."""
    from kernelgen import templates
    from kernelgen.tune import run as tune_run
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    monkeypatch.setitem(templates._REGISTRY, SCALE_SHIFT.name, SCALE_SHIFT)
    monkeypatch.setattr(type(SCALE_SHIFT), "flags", ("", "g"))
    h100 = hardware.DetectedGPU("NVIDIA H100 80GB HBM3", "h100", (9, 0), 132, 79.1, hardware.profile("h100"))
    monkeypatch.setattr(hardware, "detect_gpu", lambda index=0: h100)
    monkeypatch.setattr(tune_run.Target, "for_gpu",
                        classmethod(lambda cls, gpu: cls(device="cpu", identity=gpu.identity(), profile=None)))
    code, text = run(capsys, "tune", "--gpu", "h100", "--op", "fake_scale_shift", "--shapes", "N=100",
                     "--trials", "1", "--dtype", "fp32", "--flags", "g", "--out", str(tmp_path / "h100.json"),
                     "--storage", str(tmp_path / "s.journal"))
    assert code == 0, text
    assert "fake_scale_shift.fwd [g]" in text


def test_info_names_the_tuned_file_or_what_is_borrowed(capsys, monkeypatch, tmp_path):
    """On an H100 with tuned/h100.json the file is named; an H200 without its own borrows it; an
    A100 (another architecture) runs the defaults."""
    from kernelgen import dispatch
    h100 = hardware.DetectedGPU("NVIDIA H100 80GB HBM3", "h100", (9, 0), 132, 79.1, hardware.profile("h100"))
    h200 = hardware.DetectedGPU("NVIDIA H200", "h200", (9, 0), 132, 139.8, hardware.profile("h200"))
    a100 = hardware.DetectedGPU("NVIDIA A100-SXM4-80GB", "a100", (8, 0), 108, 79.2, hardware.profile("a100"))
    monkeypatch.setenv("KERNELGEN_TUNED_DIR", str(tmp_path))
    entry = store.Entry(op="fake_scale_shift", kernel="fwd", dtype="fp32", flags="", shape={"N": 100},
                        config={"block": 32, "variant": "a"}, ms=1.0, template_hash=SCALE_SHIFT.source_hash(),
                        triton="3.6.0")
    store.merge_write(tmp_path / "h100.json", h100.identity(), [entry], {}, {})
    for gpu, expected in ((h100, "h100.json (1 entries)"), (h200, "borrow those of h100"),
                          (a100, "heuristic defaults")):
        dispatch.reset()
        monkeypatch.setattr(hardware, "detect_gpu", lambda index=0, gpu=gpu: gpu)
        code, out = run(capsys, "info")
        assert code == 0 and expected in " ".join(out.split()), out


@pytest.mark.parametrize("damage", ["garbage\n", '{"schema": "kernelgen.profile/1"}'], ids=["not json", "no fields"])
def test_an_unreadable_profile_is_left_out_and_named_by_info(capsys, monkeypatch, tmp_path, damage):
    import shutil
    import warnings
    from kernelgen import paths
    for path in paths.profiles_dir().glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "l40s.json").write_text(damage)
    monkeypatch.setattr(hardware, "profiles_dir", lambda: tmp_path)
    monkeypatch.setattr(hardware, "detect_gpu", lambda index=0: None)
    hardware.load_profiles.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            profiles = hardware.load_profiles()
        assert "l40s" not in profiles and "h100" in profiles
        assert any(issubclass(w.category, hardware.ProfileWarning) and "l40s.json" in str(w.message) for w in caught)
        code, out = run(capsys, "info")
        assert code == 0 and "l40s.json is unreadable" in " ".join(out.split())
    finally:
        hardware.load_profiles.cache_clear()


@pytest.mark.parametrize("where", ["missing", "file"])
def test_show_names_a_dir_that_is_no_folder(capsys, tmp_path, where):
    folder = tmp_path / "x"
    if where == "file":
        folder.write_text("")
    code, out = run(capsys, "show", "--dir", str(folder))
    assert code == 2 and ("not a folder" if where == "file" else "no such folder") in out
