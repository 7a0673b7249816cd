"""The tuner when things go wrong: a Triton upgrade, failed trials, unwritable output, stored
winners outside the space, broken Optuna storage, finalists that fail their re-time, bad arguments.

Most tests drive the study with a worker stand-in (no kernel runs); the timeout test runs the
real worker subprocess on the CPU interpreter.
"""
import json
import sys
from pathlib import Path

import optuna
import pytest

from kernelgen import cli, store
from kernelgen.tune import run as tune_run
from kernelgen.tune.run import Job, Target, tune_jobs
from kernelgen.tune.study import StorageError, StudyRunner, open_storage, study_name

sys.path.insert(0, str(Path(__file__).parent))
from test_cli import _interpreter_as_gpu  # noqa: E402
from tune_fixtures import SCALE_SHIFT  # noqa: E402

SHAPE = {"N": 100}
DEFAULT = SCALE_SHIFT.default_config(SHAPE)          # block 64, variant a


class _Worker:
    """A worker stand-in: each config times by its block size; ``fail(request)`` gives
    (reason, transient) for a request that fails. Search requests carry rep_ms, final re-times not."""
    timeout_s = 20

    ms_by_block = {16: 1.0, 32: 2.0, 64: 3.0, 128: 4.0}

    def __init__(self, fail=None):
        self.fail = fail or (lambda request: None)
        self.requests = []

    def run(self, request):
        self.requests.append(request)
        failure = self.fail(request)
        if failure:
            reason, transient = failure
            return {"ok": False, "ms": None, "errors": {}, "reason": reason, "transient": transient}
        return {"ok": True, "ms": self.ms_by_block[request["config"]["block"]], "errors": {}}

    def searched(self):
        return [r["config"] for r in self.requests if "rep_ms" in r]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def _runner(tmp_path, worker, journal="s.journal", **kwargs):
    return StudyRunner(SCALE_SHIFT, SHAPE, "fp32", "", worker=worker, storage=open_storage(str(tmp_path / journal)),
                       gpu_key="cpu", gpu=None, device="cpu", **kwargs)


def _stand_in_worker(monkeypatch, worker):
    monkeypatch.setattr(tune_run, "TrialWorker", lambda timeout_s, env: worker)


def _tune(capsys, tmp_path, *extra):
    code = cli.main(["tune", "--gpu", "h100", "--op", "fake_scale_shift", "--dtype", "fp32",
                     "--storage", str(tmp_path / "s.journal"), *extra])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


# --- 1. a Triton upgrade ------------------------------------------------------------------------

def test_a_triton_upgrade_starts_a_new_study(tmp_path, monkeypatch):
    """The study key holds the Triton minor version (as staleness does): after an upgrade the
    re-tune measures again instead of resuming the old compiler's trials."""
    import triton
    assert study_name(SCALE_SHIFT, SHAPE, "fp32", "", "h100", "3.9.0") == \
        study_name(SCALE_SHIFT, SHAPE, "fp32", "", "h100", "3.9.1")
    assert study_name(SCALE_SHIFT, SHAPE, "fp32", "", "h100", "3.9.0") != \
        study_name(SCALE_SHIFT, SHAPE, "fp32", "", "h100", "3.10.0")
    for version in ("3.9.0", "3.10.0"):
        monkeypatch.setattr(triton, "__version__", version)
        worker = _Worker()
        _runner(tmp_path, worker).search(2)
        assert len(worker.searched()) == 2, version


def test_finalists_are_verified_before_they_ship(tmp_path):
    """Finalists measured by an earlier run (another toolchain) are verified in the final re-time:
    one that now gives wrong answers is not shipped."""
    worker = _Worker(fail=lambda r: ("wrong result: y off by 0.5", False)
                     if r["verify"] and r["config"]["block"] == 16 else None)
    runner = _runner(tmp_path, worker)
    runner.results = {json.dumps({**DEFAULT, "block": b}, sort_keys=True): {"ms": ms, "reason": None}
                      for b, ms in ((16, 1.0), (32, 2.0), (64, 3.0))}
    assert runner.finish().config == {**DEFAULT, "block": 32}
    assert worker.requests and all(r["verify"] for r in worker.requests)


# --- 2. failed trials of earlier runs ---------------------------------------------------------

def test_transient_failures_are_retried_config_failures_keep_their_reason(tmp_path):
    """A timeout or a killed worker is measured again by the next run; a config failure is not,
    and an 'every config failed' error gives its stored reason."""
    timeout = _Worker(fail=lambda r: ("timeout: no result after 0.01 s (worker restarted)", True))
    with pytest.raises(RuntimeError, match="timeout"):
        runner = _runner(tmp_path, timeout)
        runner.search(1)
        runner.finish()
    worker = _Worker()
    runner = _runner(tmp_path, worker)
    runner.search(1)
    assert worker.searched() == [DEFAULT] and runner.finish().config == DEFAULT

    broken = _Worker(fail=lambda r: ("RuntimeError: planted compile error", False))
    runner = _runner(tmp_path, broken, journal="b.journal")
    runner.search(1)
    with pytest.raises(RuntimeError, match="planted compile error"):
        runner.finish()
    again = _Worker(fail=broken.fail)
    runner = _runner(tmp_path, again, journal="b.journal")
    runner.search(1)
    assert again.searched() == []                                    # not measured again
    with pytest.raises(RuntimeError, match=r"planted compile error \(an earlier run\)"):
        runner.finish()
    study = optuna.load_study(study_name=runner.name, storage=open_storage(str(tmp_path / "b.journal")))
    [trial] = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert trial.user_attrs["fail_kind"] == "config" and "planted" in trial.user_attrs["fail_reason"]


def test_a_timed_out_default_is_measured_by_the_next_run(tmp_path, monkeypatch):
    """The real worker: a trial that times out is marked transient and the next run measures it."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    out = tmp_path / "tuned" / "cpu-interpreter.json"
    errors = []

    def tune(timeout_s):
        return tune_jobs([Job(SCALE_SHIFT, SHAPE, "fp32")], Target.cpu_interpreter(), out, n_trials=1,
                         storage_url=str(tmp_path / "s.journal"), trial_timeout_s=timeout_s,
                         on_job=lambda job, result, error: errors.append(error))

    assert tune(0.01) == [] and "timeout" in errors[0]
    [result] = tune(60)
    assert result.config == DEFAULT and store.load(out).entries[0].config == DEFAULT


# --- 3. the output file -------------------------------------------------------------------------

def _foreign(path):
    store.merge_write(path, {"key": "a100", "name": "NVIDIA A100"}, [], {})


@pytest.mark.parametrize("make, expected", [
    (_foreign, "holds configs for GPU 'a100'"),
    (lambda path: path.mkdir(), "is a folder"),
    (lambda path: path.parent.rmdir() or path.parent.write_text("x"), "is a file"),
])
def test_tune_checks_its_output_before_any_study(capsys, monkeypatch, tmp_path, make, expected):
    """--out of another GPU, a folder, KERNELGEN_TUNED_DIR naming a file: one message and exit 2
    before anything is measured, the file left as it was."""
    _interpreter_as_gpu(monkeypatch)
    worker = _Worker()
    _stand_in_worker(monkeypatch, worker)
    folder = tmp_path / "tuned"
    folder.mkdir()
    monkeypatch.setenv("KERNELGEN_TUNED_DIR", str(folder))
    out = folder / "h100.json"
    make(out)
    def contents():
        return out.read_bytes() if out.is_file() else None

    before = contents()
    code, text = _tune(capsys, tmp_path, "--shapes", "N=100", "--trials", "1")
    assert code == cli.EXIT_USAGE and "Cannot merge winners into" in text and expected in text, text
    assert "Nothing was tuned" in text and worker.requests == [] and contents() == before


def test_a_failed_write_is_reported_and_the_other_studies_still_run(capsys, monkeypatch, tmp_path):
    _interpreter_as_gpu(monkeypatch)
    _stand_in_worker(monkeypatch, _Worker())
    out = tmp_path / "h100.json"
    merge_write, calls = store.merge_write, []

    def fails_first(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return merge_write(path, *args, **kwargs)

    monkeypatch.setattr(store, "merge_write", fails_first)
    code, text = _tune(capsys, tmp_path, "--shapes", "N=100;N=200", "--trials", "1", "--out", str(out))
    assert code == 1 and len(calls) == 2, text
    assert "not written for fake_scale_shift.fwd fp32 N=100" in text and "No space left" in text
    assert [e.shape for e in store.load(out).entries] == [{"N": 200}]


# --- 6. warm starts outside the space -----------------------------------------------------------

def test_a_stored_winner_outside_the_space_is_not_measured(tmp_path):
    """A stored or borrowed winner from an older space would be refused by dispatch: it is
    skipped like an outside candidate, and one inside the space is still measured."""
    worker = _Worker()
    _runner(tmp_path, worker, warm_start=[{"block": 8, "variant": "a"}, {"block": 32, "variant": "a"}]).search(2)
    assert worker.searched() == [DEFAULT, {"block": 32, "variant": "a"}]


# --- 7. the Optuna storage ----------------------------------------------------------------------

def _corrupt_sqlite(tmp_path):
    (tmp_path / "bad.db").write_bytes(b"not a database" * 100)
    return f"sqlite:///{tmp_path}/bad.db"


@pytest.mark.parametrize("url, expected", [
    (lambda tmp: "foo://x", "foo://x: cannot open it .* use sqlite:///PATH.db"),
    (lambda tmp: f"sqlite:///{tmp}/missing/s.db", "missing does not exist"),
    (_corrupt_sqlite, "bad.db is not a usable Optuna database"),
    (lambda tmp: str(tmp), "is a folder; name a file"),
    (lambda tmp: "postgresql://me:secret@localhost:1/db", r"me:\*\*\*@localhost"),
])
def test_a_storage_that_cannot_be_opened_is_named(tmp_path, url, expected):
    with pytest.raises(StorageError, match=expected) as raised:
        open_storage(url(tmp_path))
    assert "secret" not in str(raised.value)


def test_a_cache_dir_that_is_a_file_is_named(tmp_path, monkeypatch):
    (tmp_path / "cachefile").write_text("")
    monkeypatch.setenv("KERNELGEN_CACHE_DIR", str(tmp_path / "cachefile"))
    with pytest.raises(StorageError, match="KERNELGEN_CACHE_DIR"):
        open_storage()


def test_a_whole_last_line_that_is_no_record_stops_before_any_write(tmp_path):
    """Optuna passes over a complete last line that is not JSON, until a record lands after it:
    then every study in the file is unreadable. The tuner stops first, naming the line."""
    path = tmp_path / "s.journal"
    optuna.create_study(study_name="kept", storage=open_storage(str(path)))
    whole = path.read_bytes()
    lines = whole.count(b"\n")
    path.write_bytes(whole + b"garbage line\n")
    with pytest.raises(StorageError, match=f"line {lines + 1} is not a journal record, and the next write"):
        open_storage(str(path))
    assert path.read_bytes() == whole + b"garbage line\n"                       # nothing changed
    path.write_bytes(whole)
    assert [s.study_name for s in optuna.get_all_study_summaries(open_storage(str(path)))] == ["kept"]


def test_a_torn_journal_is_left_as_it_is_and_the_fix_named(tmp_path):
    """A journal whose last line was cut off: Optuna would glue the next record onto it and break
    every study in the file. The tuner stops first, naming the file and the exact cut."""
    path = tmp_path / "s.journal"
    optuna.create_study(study_name="kept", storage=open_storage(str(path)))
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"op_code": 5, "worker_id": "ab')
    with pytest.raises(StorageError, match=f"last line is cut off.*truncate -s {len(whole)} {path}"):
        open_storage(str(path))
    assert path.read_bytes() == whole + b'{"op_code": 5, "worker_id": "ab'       # nothing changed
    path.write_bytes(whole)                                                      # the named fix
    assert [s.study_name for s in optuna.get_all_study_summaries(open_storage(str(path)))] == ["kept"]
    path.write_bytes(b'{"op_code": 5, "wo{"op_code": 0}\n' + whole)              # a glued line
    with pytest.raises(StorageError, match="line 1 is not a journal record; move the file aside"):
        open_storage(str(path))


def test_tune_reports_a_bad_storage_and_tunes_nothing(capsys, monkeypatch, tmp_path):
    _interpreter_as_gpu(monkeypatch)
    worker = _Worker()
    _stand_in_worker(monkeypatch, worker)
    code, text = _tune(capsys, tmp_path, "--shapes", "N=100", "--trials", "1", "--storage", "foo://x")
    assert code == cli.EXIT_USAGE and "Optuna storage foo://x" in text and "Nothing was tuned" in text
    assert worker.requests == []


# --- 8. a finalist that fails its re-time -------------------------------------------------------

def test_a_finalist_that_fails_its_re_time_is_not_shipped(tmp_path):
    """A config that passes its trial but crashes when re-timed (racy under repeated launches) is
    not shipped and counts as failed; when every finalist fails there is no winner."""
    crash = ("worker died (exit code 9)", True)
    worker = _Worker(fail=lambda r: crash if "rep_ms" not in r and r["config"]["block"] == 16 else None)
    runner = _runner(tmp_path, worker, warm_start=[{"block": 16}])
    runner.search(2)
    result = runner.finish()
    assert result.config == DEFAULT and result.failed == 1

    worker = _Worker(fail=lambda r: crash if "rep_ms" not in r else None)
    runner = _runner(tmp_path, worker, journal="all.journal")
    runner.search(1)
    with pytest.raises(RuntimeError, match="every finalist .* failed its final verified re-time: .*exit code 9"):
        runner.finish()


# --- 10. arguments ------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, expected", [
    (["--trials", "0"], "--trials: must be at least 1; got 0"),
    (["--trials", "-3"], "--trials: must be at least 1; got -3"),
    (["--timeout", "0"], "--timeout: must be more than 0 and at most 86400 seconds"),
    (["--timeout", "inf"], "--timeout: must be more than 0 and at most 86400 seconds; got inf"),
    (["--timeout", "1e12"], "--timeout: must be more than 0 and at most 86400 seconds; got 1e12"),
])
def test_tune_rejects_bad_counts(capsys, argv, expected):
    with pytest.raises(SystemExit) as raised:
        cli.main(["tune", "--gpu", "h100", *argv])
    assert raised.value.code == cli.EXIT_USAGE and expected in capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    (["--dtype", "fp32,bf17"], "--dtype fp32,bf17: unknown bf17; known: fp32, fp16, bf16"),
    (["--kernel", "nope"], "--kernel nope: no such kernel of fake_scale_shift; known: fwd"),
    (["--flags", "nope"], "--flags nope: nope is not a variant of fake_scale_shift.fwd; accepted: plain"),
    (["--kernel", "fwd,nope"], "--kernel fwd,nope: no kernel nope of fake_scale_shift; known: fwd"),
    (["--shapes", "N=100;M=5"], "--shapes M=5: no chosen template takes these sizes (fake_scale_shift.fwd needs N)"),
    (["--shapes", "N=0"], "--shapes: N=0 in 'N=0'; every size must be at least 1. Nothing was tuned."),
])
def test_tune_names_the_bad_argument(capsys, monkeypatch, tmp_path, argv, expected):
    _interpreter_as_gpu(monkeypatch)
    worker = _Worker()
    _stand_in_worker(monkeypatch, worker)
    code, text = _tune(capsys, tmp_path, "--shapes", "N=100", "--trials", "1", *argv)
    assert code == cli.EXIT_USAGE and expected in text, text
    assert worker.requests == []


def test_a_shape_with_an_empty_dimension_is_refused():
    with pytest.raises(SystemExit, match="N=0 in 'N=0'; every size must be at least 1"):
        cli.parse_shapes("N=100;N=0", SCALE_SHIFT)
