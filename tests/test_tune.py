"""The tuner end to end on the CPU interpreter: real Optuna storage, planted failures, resume."""
import json
import sys
from pathlib import Path

import optuna
import pytest

from kernelgen import dispatch, hardware, store
from kernelgen.tune.run import Job, Target, tune_jobs
from kernelgen.tune.study import open_storage

sys.path.insert(0, str(Path(__file__).parent))
from tune_fixtures import SCALE_SHIFT  # noqa: E402

SHAPE = {"N": 100}


def _run(tmp_path, sampler="grid", trials=8, storage=None):
    events = []
    out = tmp_path / "tuned" / "cpu-interpreter.json"
    results = tune_jobs([Job(SCALE_SHIFT, SHAPE, "fp32")], Target.cpu_interpreter(), out,
                        n_trials=trials, sampler=sampler, trial_timeout_s=20,
                        storage_url=storage or str(tmp_path / "studies.journal"),
                        on_trial=lambda job, n, config, reply: events.append((config, reply)))
    return results, events, out


@pytest.fixture(autouse=True)
def _worker_finds_fixtures(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))


def test_grid_study_survives_planted_failures_and_writes_the_store(tmp_path):
    results, events, out = _run(tmp_path)
    reasons = {(c["block"], c["variant"]): r["reason"] for c, r in events}
    assert reasons[(16, "b")].startswith("timeout")
    assert "planted compile error" in reasons[(32, "b")]
    assert reasons[(64, "b")].startswith("wrong result")
    assert "worker died" in reasons[(128, "b")]
    assert all(reasons[(block, "a")] is None for block in (16, 32, 64, 128))

    [result] = results
    assert result.config["variant"] == "a" and result.failed == 4 and result.trials == 8
    saved = store.load(out)
    [entry] = saved.entries
    assert entry.config == result.config and entry.shape == SHAPE and entry.dtype == "fp32"
    assert entry.default_ms and entry.template_hash == SCALE_SHIFT.source_hash()
    assert saved.gpu["key"] == "cpu-interpreter"

    study = optuna.load_study(study_name=result.study, storage=open_storage(str(tmp_path / "studies.journal")))
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert {t.user_attrs["config"]["block"] for t in failed} == {16, 32, 64, 128}
    assert all("fail_reason" in t.user_attrs for t in failed)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(t.user_attrs["ms"] > 0 and t.user_attrs["gbps"] > 0 for t in complete)


def test_dispatch_loads_the_tuned_file(tmp_path, monkeypatch):
    results, _, out = _run(tmp_path)
    monkeypatch.setenv("KERNELGEN_TUNED_DIR", str(out.parent))
    fake_gpu = hardware.DetectedGPU("CPU (Triton interpreter)", "cpu-interpreter", (0, 0), 2, 0.0, None)
    monkeypatch.setattr(dispatch, "current_gpu", lambda device: fake_gpu)
    dispatch.reset()
    assert dispatch.config_for(SCALE_SHIFT, {"N": 120}, "fp32", device="cpu") == results[0].config


def test_resume_keeps_finished_trials(tmp_path):
    # First run: TPE with 3 trials; second run asks for 5: only 2 more are measured.
    _, first_events, _ = _run(tmp_path, sampler="tpe", trials=3)
    results, second_events, out = _run(tmp_path, sampler="tpe", trials=5)
    measured_first = {json.dumps(c, sort_keys=True) for c, _ in first_events}
    measured_second = {json.dumps(c, sort_keys=True) for c, _ in second_events}
    assert len(measured_first) == 3
    assert not measured_first & measured_second        # nothing measured twice
    assert results[0].trials == 5
    assert store.load(out).entries[0].trials == 5


def test_a_config_measured_again_keeps_its_params(tmp_path):
    """The default's earlier trial timed out (a transient failure: measured again): the new trial
    must carry the default's params, not params the sampler drew while its time is the default's."""
    from kernelgen.tune.study import TRANSIENT
    first, _, _ = _run(tmp_path / "scratch", sampler="tpe", trials=1)     # only to learn the study's name
    default = SCALE_SHIFT.default_config(SHAPE)
    journal = str(tmp_path / "studies.journal")
    study = optuna.create_study(study_name=first[0].study, storage=open_storage(journal), direction="minimize")
    distributions = {name: optuna.distributions.CategoricalDistribution(list(values))
                     for name, values in SCALE_SHIFT.space.items()}
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, params={k: default[k] for k in distributions}, distributions=distributions,
        user_attrs={"config": default, "fail_kind": TRANSIENT, "fail_reason": "timeout: no result after 20 s"}))
    results, events, _ = _run(tmp_path, sampler="tpe", trials=3)
    assert events[0][0] == default                                      # measured again, first
    trials = optuna.load_study(study_name=results[0].study, storage=open_storage(journal)).trials
    for trial in trials[1:]:
        config = trial.user_attrs["config"]
        assert trial.params == {k: config[k] for k in trial.params}, (trial.number, trial.params, config)


def test_sqlite_storage_url(tmp_path):
    results, _, _ = _run(tmp_path, sampler="tpe", trials=2, storage=f"sqlite:///{tmp_path}/studies.db")
    assert results and (tmp_path / "studies.db").exists()


def test_a_broken_job_does_not_stop_the_others(tmp_path):
    class Broken(type(SCALE_SHIFT)):
        name = "fake_broken.fwd"
        op = "fake_broken"

        def default_config(self, shape, gpu=None):
            raise ValueError("no default for this shape")

    errors = []
    out = tmp_path / "cpu-interpreter.json"
    results = tune_jobs([Job(Broken(), SHAPE, "fp32"), Job(SCALE_SHIFT, SHAPE, "fp32")], Target.cpu_interpreter(),
                        out, n_trials=1, storage_url=str(tmp_path / "s.journal"),
                        on_job=lambda job, result, error: errors.append(error))
    assert len(results) == 1 and results[0].template is SCALE_SHIFT
    assert errors[0] == "ValueError: no default for this shape" and errors[1] is None
    assert len(store.load(out).entries) == 1


def test_retuning_measures_the_shipped_winner_second(tmp_path):
    """A stored winner (stale or not) is measured right after the default in a fresh study, so
    re-tuning after a template or Triton change never ships worse than before."""
    shipped = {"block": 32, "variant": "a"}
    events, _ = _retune_over(tmp_path, shipped)
    assert events[0] == SCALE_SHIFT.default_config(SHAPE)
    assert events[1] == shipped


def _retune_over(tmp_path, shipped):
    """Tune (3 TPE trials, a fresh study) over a tuned file holding a stale entry with ``shipped``:
    the configs measured, in order, and the file."""
    out = tmp_path / "tuned" / "cpu-interpreter.json"
    entry = store.Entry(op="fake_scale_shift", kernel="fwd", dtype="fp32", flags="", shape=dict(SHAPE),
                        config=shipped, ms=1.0, default_ms=1.0, trials=1, template_hash="old")
    store.merge_write(out, Target.cpu_interpreter().identity, [entry], {"fake_scale_shift.fwd": "old"})
    events = []
    tune_jobs([Job(SCALE_SHIFT, SHAPE, "fp32")], Target.cpu_interpreter(), out, n_trials=3, sampler="tpe",
              trial_timeout_s=20, storage_url=str(tmp_path / "fresh.journal"),
              on_trial=lambda job, n, config, reply: events.append(config))
    return events, out


def test_a_shipped_winner_without_a_new_knob_gets_the_default_for_it(tmp_path):
    default = SCALE_SHIFT.default_config(SHAPE)
    shipped = {"block": 32 if default["block"] != 32 else 64}          # stored before "variant" existed
    events, out = _retune_over(tmp_path, shipped)
    assert events[1] == {**default, **shipped}
    assert all(set(e.config) == set(default) for e in store.load(out).entries)


def _other_gpus_file(tmp_path, entries):
    """A tuned file of another GPU (h100) holding ``entries`` [(shape, dtype, config)]."""
    path = tmp_path / "other" / "h100.json"
    made = [store.Entry(op="fake_scale_shift", kernel="fwd", dtype=dtype, flags="", shape=shape, config=config,
                        ms=1.0, default_ms=1.0, trials=1, template_hash=SCALE_SHIFT.source_hash())
            for shape, dtype, config in entries]
    store.merge_write(path, {"key": "h100", "name": "NVIDIA H100"}, made,
                      {SCALE_SHIFT.name: SCALE_SHIFT.source_hash()})
    return path


def test_warm_from_measures_the_nearest_borrowed_winner_after_the_default(tmp_path):
    """--warm-from (porting to a new GPU): the other file's winner for the nearest shape bucket of
    the same template and dtype is measured second, before any draw; other dtypes are ignored."""
    from kernelgen.tune.run import load_warm_files
    default = SCALE_SHIFT.default_config(SHAPE)
    near, far, other_dtype = {"block": 32, "variant": "a"}, {"block": 128, "variant": "a"}, {"block": 16, "variant": "a"}
    warm = load_warm_files([_other_gpus_file(tmp_path, [({"N": 90}, "fp32", near), ({"N": 100000}, "fp32", far),
                                                        ({"N": 100}, "fp16", other_dtype)])])
    events = []
    out = tmp_path / "tuned" / "cpu-interpreter.json"
    tune_jobs([Job(SCALE_SHIFT, SHAPE, "fp32")], Target.cpu_interpreter(), out, n_trials=2, sampler="tpe",
              trial_timeout_s=20, storage_url=str(tmp_path / "s.journal"), warm_from=warm,
              on_trial=lambda job, n, config, reply: events.append(config))
    assert events == [default, near]
    [entry] = store.load(out).entries
    assert entry.config in (default, near) and entry.trials == 2


def test_warm_from_a_missing_file_is_an_error_not_a_cold_start(tmp_path):
    from kernelgen.tune.run import load_warm_files
    with pytest.raises(store.StoreError, match="no such tuned file"):
        load_warm_files([tmp_path / "h100.json"])


def test_a_templates_candidates_are_measured_after_the_shipped_winner(tmp_path, monkeypatch):
    """Template.candidates: configs every TPE study measures (merged over the default) before the
    sampler draws; one that cannot run, or lies outside the space, is skipped, not measured."""
    default = SCALE_SHIFT.default_config(SHAPE)
    monkeypatch.setattr(type(SCALE_SHIFT), "candidates",
                        lambda self, shape, gpu=None: [{"block": 16}, {"block": 8192}, {"block": 48}],
                        raising=False)
    shipped = {"block": 32, "variant": "a"}
    events, _ = _retune_over(tmp_path, shipped)
    assert events[:3] == [default, shipped, {**default, "block": 16}]
    assert all(e["block"] in (16, 32, 64, 128) for e in events)


def test_candidates_are_canonicalised_before_they_are_measured(tmp_path, monkeypatch):
    """A candidate merged over the default is canonicalised first: selective_scan offers another
    backend's default as a candidate, and merged over a default of the first backend it would
    otherwise keep that backend's keys (in the trial and in the stored winner)."""
    default = SCALE_SHIFT.default_config(SHAPE)
    template = type(SCALE_SHIFT)
    monkeypatch.setattr(template, "candidates", lambda self, shape, gpu=None: [{"block": 16, "stray": 1}],
                        raising=False)
    canonical = template.canonical
    monkeypatch.setattr(template, "canonical",
                        lambda self, config: {k: v for k, v in canonical(self, config).items() if k != "stray"})
    events, _ = _retune_over(tmp_path, {"block": 32, "variant": "a"})
    assert events[2] == {**default, "block": 16}
    assert not any("stray" in config for config in events)


def test_the_shipped_winner_is_canonicalised_before_it_is_measured(tmp_path, monkeypatch):
    """Merged over the default, a shipped winner on another backend would keep the default
    backend's keys (round 169: a CUDA winner stored with the Triton default's block_d)."""
    template = type(SCALE_SHIFT)
    monkeypatch.setattr(template, "default_config",
                        lambda self, shape, gpu=None: {"block": 64, "variant": "a", "stray": 1})
    canonical = template.canonical
    monkeypatch.setattr(template, "canonical",
                        lambda self, config: {k: v for k, v in canonical(self, config).items() if k != "stray"})
    shipped = {"block": 32, "variant": "b"}
    events, _ = _retune_over(tmp_path, shipped)
    assert events[1] == shipped             # not {**default, **shipped}, which keeps "stray"


class _FixedTimes:
    """A worker stand-in that times each config by its block size (no kernel runs)."""
    timeout_s = 20

    def __init__(self, ms_by_block):
        self.ms_by_block = ms_by_block

    def run(self, request):
        return {"ok": True, "ms": self.ms_by_block[request["config"]["block"]]}


def test_a_tie_with_the_default_ships_the_default(tmp_path):
    """Configs re-timed within 2% of the best: the default wins the tie, even against one the
    complexity rule calls simpler; without the default among them, the simpler one wins."""
    from kernelgen.tune.study import StudyRunner
    default = SCALE_SHIFT.default_config(SHAPE)                     # block 64
    for times, want in (({16: 1.00, 32: 1.50, 64: 1.01, 128: 2.0}, default),
                        ({16: 1.00, 32: 1.01, 64: 1.50, 128: 2.0}, {**default, "block": 16})):
        runner = StudyRunner(SCALE_SHIFT, SHAPE, "fp32", "", worker=_FixedTimes(times),
                             storage=open_storage(str(tmp_path / f"s{want['block']}.journal")), gpu_key="cpu",
                             gpu=None, device="cpu")
        runner.results = {json.dumps({**default, "block": b}, sort_keys=True): {"ms": ms, "reason": None}
                          for b, ms in times.items()}
        assert runner.finish().config == want


def test_grid_counted_without_listing_a_large_space():
    """A many-knob space (the log-linear backward: tens of millions of raw configs) is never listed
    to count it; a small one is listed one config at a time in grid order."""
    from kernelgen.templates import get_template
    from kernelgen.tune.study import GRID_COUNT_LIMIT
    big = get_template("loglinear_attention.bwd")
    assert big.grid_size_bound() > GRID_COUNT_LIMIT
    shape = {"B": 1, "T": 64, "H": 1, "K": 16, "V": 16, "L": 7}
    first = next(big.iter_grid(shape))
    assert big.check_config(first, shape) is None
    grid = SCALE_SHIFT.grid(SHAPE)
    assert list(SCALE_SHIFT.iter_grid(SHAPE)) == grid and 0 < len(grid) <= SCALE_SHIFT.grid_size_bound()


def test_warm_starts_take_the_jobs_shape_knobs(tmp_path):
    """A borrowed winner of another shape is measured as dispatch would run it at the job's shape:
    its shape_knobs (linear attention's split_len) from the job's default, the rest as tuned."""
    import triton
    from kernelgen.templates import get_template
    from kernelgen.tune.run import _borrowed_winners
    bwd = get_template("linear_attention.bwd")
    target = {"B": 8, "T": 4096, "H": 16, "K": 128, "V": 128, "F": 128}
    tuned = {**bwd.default_for(target, None, "g"), "split_len": 0, "x_early": 0}
    path = tmp_path / "h100.json"
    store.merge_write(path, {"key": "h100", "name": "NVIDIA H100"},
                      [store.Entry(op="linear_attention", kernel="bwd", dtype="bf16", flags="g", shape=target,
                                   config=tuned, ms=1.0, template_hash=bwd.source_hash(), triton=triton.__version__)],
                      {bwd.name: bwd.source_hash()})
    long = {**target, "B": 1, "T": 65536}
    [here] = _borrowed_winners(Job(bwd, target, "bf16", "g"), [store.load(path)])
    [there] = _borrowed_winners(Job(bwd, long, "bf16", "g"), [store.load(path)])
    assert here == tuned
    assert there == {**tuned, "split_len": bwd.default_for(long, None, "g")["split_len"]} and there["split_len"] > 0
