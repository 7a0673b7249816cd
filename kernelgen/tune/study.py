"""One Optuna study per (template, shape bucket, dtype, flags): sample, verify, time, pick a winner.

The search space belongs to the template, the strategy (TPE or grid) to the sampler, and the
results to an Optuna storage chosen by URL; re-running the same study resumes it and keeps every
finished trial but those that failed for a passing reason (a timeout, a killed worker), which are
measured again. The winner is chosen after verifying and re-timing the fastest few one after
another, with differences under 2% treated as ties that go to the simpler config.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna

from kernelgen import store
from kernelgen.hardware import GPUProfile
from kernelgen.paths import cache_dir
from kernelgen.template import Config, Template
from kernelgen.tune.pool import TrialWorker

TIE_FRACTION = 0.02      # re-timed configs within 2% of the best are ties
FINALISTS = 4            # how many of the fastest are re-timed
SEARCH_REP_MS = 40       # do_bench budget per trial while searching; finalists get the full 100 ms
CONSTRAINT_RETRIES = 8   # samples per trial slot that may land on configs the constraints reject
GRID_COUNT_LIMIT = 100_000   # spaces up to this many raw configs are listed to count the valid ones
MAX_QUEUED_BEFORE = 64     # waiting trials an earlier, stopped run may have left ahead of a new one
# A failed trial's "fail_kind": a transient failure (timeout, worker killed or crashed, GPU out of
# memory) says nothing certain about the config, so a later run measures it again; a config failure
# (rejected, compile error, wrong answer) is the same on every run of the study and stays failed.
TRANSIENT, CONFIG_FAILURE = "transient", "config"

optuna.logging.set_verbosity(optuna.logging.WARNING)


class StorageError(RuntimeError):
    """An Optuna storage that cannot be opened; the message names it and says what to do."""


def open_storage(url: str | None = None) -> optuna.storages.BaseStorage:
    """An Optuna storage: any RDB URL (sqlite:///..., postgresql://...), a journal file path
    (``*.journal`` / ``*.log`` or ``journal:PATH``), or by default a journal file in the cache dir.
    Raises StorageError when it cannot be opened."""
    if url is None:
        try:
            url = str(cache_dir() / "studies.journal")
        except OSError as error:
            raise StorageError(f"cannot use the cache folder {error.filename} for the study journal "
                               f"({error.strerror}); point KERNELGEN_CACHE_DIR at a folder or pass --storage"
                               ) from error
    if url.startswith("journal:"):
        url = url[len("journal:"):]
    if "://" in url:
        return _open_rdb(url)
    return _open_journal(Path(url))


def _open_rdb(url: str) -> optuna.storages.BaseStorage:
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as error:  # noqa: BLE001 - SQLAlchemy, driver and Optuna errors alike
        shown = re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)     # no password in the message
        detail = (str(error).strip().splitlines() or [""])[0]
        hint = "use sqlite:///PATH.db, postgresql://... or a journal file path"
        if url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///"):].split("?")[0])
            if not path.parent.is_dir():
                hint = f"its folder {path.parent} does not exist"
            elif path.exists():
                hint = f"{path} is not a usable Optuna database: move it aside or name another file"
        raise StorageError(f"Optuna storage {shown}: cannot open it ({type(error).__name__}: {detail}); "
                           f"{hint}") from error


def _open_journal(path: Path) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    if path.is_dir():
        raise StorageError(f"Optuna journal {path} is a folder; name a file, e.g. {path / 'studies.journal'}")
    complete = _complete_length(path)
    if complete is not None:
        # Optuna skips a cut-off last line but appends the next record to it, and the glued line
        # then breaks every study in the file: stop before writing; the file is left as it is.
        raise StorageError(f"Optuna journal {path}: its last line is cut off (a tuner killed mid-write?), and the "
                           f"next write would make the file unreadable. Left as it is: keep its trials by cutting "
                           f"that line off (`truncate -s {complete} {path}`, after a copy) or move the file aside")
    if not _last_line_is_record(path):
        # Optuna also passes over a whole last line that is not a record, until the next record
        # lands after it: then no study in the file can be read. Stop first, naming the line.
        line = _first_unreadable_line(path)
        raise StorageError(f"Optuna journal {path}: line {line} is not a journal record, and the next write would "
                           f"make the file unreadable. Left as it is: delete that line (after a copy) or move the "
                           f"file aside (its studies then start afresh), or pass another --storage")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError as error:
        raise StorageError(f"Optuna journal {path}: cannot open it ({error.strerror}: {error.filename})") from error
    except Exception as error:  # noqa: BLE001 - a record Optuna cannot read or replay
        line = _first_unreadable_line(path)
        where = f"line {line} is not a journal record" if line else f"it cannot be replayed ({type(error).__name__})"
        raise StorageError(f"Optuna journal {path}: {where}; move the file aside (its studies then start afresh) "
                           f"or pass another --storage") from error


def _complete_length(path: Path) -> int | None:
    """The length up to the last newline when the journal's last line was cut off, else None."""
    try:
        with open(path, "rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            if end == 0:
                return None
            handle.seek(end - 1)
            if handle.read(1) == b"\n":
                return None
            position = end
            while position > 0:
                start = max(0, position - 65536)
                handle.seek(start)
                found = handle.read(position - start).rfind(b"\n")
                if found >= 0:
                    return start + found + 1
                position = start
            return 0
    except OSError:
        return None     # missing or unreadable: opening it says why


def _last_line_is_record(path: Path) -> bool:
    """Whether the journal's last non-empty line is JSON (a missing or empty file: True)."""
    try:
        with open(path, "rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, end - (1 << 20)))
            tail = handle.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    except OSError:
        return True
    if not tail.strip():
        return True
    try:
        json.loads(tail)
    except ValueError:
        return False
    return True


def _first_unreadable_line(path: Path) -> int | None:
    """The number of the journal's first line that is not JSON (only read to explain an error)."""
    try:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    json.loads(line)
                except ValueError:
                    return number
    except OSError:
        pass
    return None


def study_name(template: Template, shape: dict[str, int], dtype: str, flags: str, gpu_key: str,
               triton_version: str | None = None) -> str:
    """The study's key. It holds the Triton minor version, the one staleness compares
    (store.stale_reason): after an upgrade a re-tune measures afresh rather than resuming
    trials the old compiler ran."""
    if triton_version is None:
        import triton
        triton_version = triton.__version__
    bucket = ",".join(f"{k}={v}" for k, v in shape.items())
    minor = ".".join(str(triton_version).split(".")[:2])
    return f"{gpu_key}/{template.name}/{dtype}/{flags or '-'}/{bucket}/{template.source_hash()}/triton-{minor}"


def _config_key(config: Config) -> str:
    return json.dumps(config, sort_keys=True)


@dataclass
class TuneResult:
    template: Template
    shape: dict[str, int]
    dtype: str
    flags: str
    config: Config
    ms: float
    default_config: Config
    default_ms: float | None
    trials: int                # trials measured (passed or failed), over every run of the study
    failed: int
    study: str
    failures: list[str] = field(default_factory=list)

    @property
    def gbps(self) -> float:
        return self.template.bytes(self.shape, self.dtype, self.flags) / (self.ms * 1e-3) / 1e9

    @property
    def tflops(self) -> float:
        return self.template.flops(self.shape, self.dtype, self.flags) / (self.ms * 1e-3) / 1e12

    @property
    def speedup(self) -> float | None:
        return self.default_ms / self.ms if self.default_ms else None

    def entry(self, triton_version: str) -> store.Entry:
        return store.Entry(op=self.template.op, kernel=self.template.kernel, dtype=self.dtype, flags=self.flags,
                           shape=dict(self.shape), config=dict(self.config), ms=round(self.ms, 6),
                           default_ms=round(self.default_ms, 6) if self.default_ms else None, trials=self.trials,
                           gbps=round(self.gbps, 2), tflops=round(self.tflops, 3),
                           template_hash=self.template.source_hash(), triton=triton_version, tuned_at=store.now())


class StudyRunner:
    """Runs one study through a worker. ``on_trial(number, config, reply)`` reports progress."""

    def __init__(self, template: Template, shape: dict[str, int], dtype: str, flags: str, *,
                 worker: TrialWorker, storage: optuna.storages.BaseStorage, gpu_key: str,
                 gpu: GPUProfile | None, device: str = "cuda", seed: int = 0,
                 on_trial: Callable[[int, Config, dict[str, Any]], None] | None = None,
                 warm_start: list[Config] | None = None):
        self.template, self.shape, self.dtype, self.flags = template, dict(shape), dtype, flags
        # configs measured right after the default, e.g. the stored winner from before a template
        # or Triton change: re-tuning then never ends worse than what was shipped
        self.warm_start = [dict(c) for c in (warm_start or [])]
        self.worker, self.gpu, self.device, self.seed = worker, gpu, device, seed
        self.on_trial = on_trial or (lambda *args: None)
        self.name = study_name(template, self.shape, dtype, flags, gpu_key)
        self.storage = storage
        self.results: dict[str, dict[str, Any]] = {}   # config key -> stored outcome
        self.failures: list[str] = []

    # -- study bookkeeping ---------------------------------------------------------------
    def _study(self, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
        study = optuna.create_study(study_name=self.name, storage=self.storage, direction="minimize",
                                    sampler=sampler, load_if_exists=True)
        study.set_user_attr("template", self.template.name)
        stale_before = _dt.datetime.now() - _dt.timedelta(seconds=2 * self.worker.timeout_s)
        for trial in study.get_trials(deepcopy=False):
            config = trial.user_attrs.get("config")
            if trial.state == optuna.trial.TrialState.RUNNING and trial.datetime_start and \
                    trial.datetime_start < stale_before:
                # An earlier tuner was killed mid-trial: close the trial so the study stays clean.
                self.storage.set_trial_user_attr(trial._trial_id, "fail_reason", "interrupted: the tuner stopped")
                self.storage.set_trial_user_attr(trial._trial_id, "fail_kind", TRANSIENT)
                self.storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            elif config is not None and trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL):
                if trial.user_attrs.get("skipped"):
                    continue
                if trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs.get("fail_kind") != CONFIG_FAILURE:
                    continue    # a timeout or a killed worker says nothing about the config: measure it again
                self.results[_config_key(config)] = {"ms": trial.value, "reason": trial.user_attrs.get("fail_reason"),
                                                     "earlier": True}
        return study

    def measured(self) -> int:
        return len(self.results)

    def _evaluate(self, study: optuna.Study, trial: optuna.Trial, config: Config) -> None:
        key = _config_key(config)
        trial.set_user_attr("config", config)
        if key in self.results:     # the sampler proposed a config already measured: reuse it
            trial.set_user_attr("skipped", "duplicate")
            outcome = self.results[key]
            if outcome["ms"] is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, outcome["ms"])
            return
        reply = self.worker.run({"module": type(self.template).__module__, "template": self.template.name,
                                 "shape": self.shape, "dtype": self.dtype, "flags": self.flags, "config": config,
                                 "seed": self.seed + trial.number, "device": self.device, "verify": True, "time": True,
                                 "rep_ms": SEARCH_REP_MS})
        for name, value in reply.get("errors", {}).items():
            trial.set_user_attr(f"error_{name}", value if math.isfinite(value) else "inf")
        self.on_trial(trial.number, config, reply)
        if reply["ok"]:
            ms = float(reply["ms"])
            trial.set_user_attr("ms", ms)
            trial.set_user_attr("gbps", self.template.bytes(self.shape, self.dtype, self.flags) / ms / 1e6)
            trial.set_user_attr("tflops", self.template.flops(self.shape, self.dtype, self.flags) / ms / 1e9)
            self.results[key] = {"ms": ms, "reason": None}
            study.tell(trial, ms)
        else:
            trial.set_user_attr("fail_reason", reply["reason"])
            trial.set_user_attr("fail_kind", TRANSIENT if reply.get("transient") else CONFIG_FAILURE)
            self.results[key] = {"ms": None, "reason": reply["reason"]}
            self.failures.append(f"{config}: {reply['reason']}")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def _suggest(self, trial: optuna.Trial) -> Config:
        return self.template.canonical({name: trial.suggest_categorical(name, list(values))
                                        for name, values in self.template.space.items()})

    def _trial_of(self, study: optuna.Study, config: dict[str, Any]) -> optuna.trial.Trial:
        """A new trial whose params are ``config``'s, so the sampler learns from what is measured.
        Enqueued even when the storage holds a trial with those params (a timed-out or interrupted
        one is measured again): skipping it would let ask() draw other params for this config's
        time. Trials an earlier run queued and never measured come out of the queue first; they
        are closed as superseded."""
        fixed = {name: config[name] for name, values in self.template.space.items()
                 if name in config and config[name] in values}
        study.enqueue_trial(config, skip_if_exists=False)
        for _ in range(MAX_QUEUED_BEFORE):
            trial = study.ask()
            params = {name: trial.suggest_categorical(name, list(self.template.space[name])) for name in fixed}
            if params == fixed:
                return trial
            trial.set_user_attr("fail_reason", "superseded: queued by an earlier run that stopped first")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise RuntimeError(f"{self.name}: more than {MAX_QUEUED_BEFORE} trials queued in the storage "
                           f"before this one; is another tuner enqueuing into the same study?")

    # -- the search ----------------------------------------------------------------------
    def search(self, n_trials: int, sampler: str = "tpe") -> None:
        """Measure configs until the study holds ``n_trials`` measured configs (grid: all valid ones)."""
        default = self.template.default_for(self.shape, self.gpu, self.flags)
        if sampler == "grid":
            study = self._study(optuna.samplers.TPESampler(seed=self.seed))
            queue = [default] + self.template.grid(self.shape, self.gpu)
        elif sampler == "tpe":
            tpe = optuna.samplers.TPESampler(seed=self.seed, multivariate=True,
                                             n_startup_trials=max(4, min(10, n_trials // 3)))
            study = self._study(tpe)
            # Stored winners and candidates are partial configs over the default.
            warm = [self.template.over_default(c, default)
                    for c in self.warm_start + self.template.candidates(self.shape, self.gpu)]
            # measured only inside the space (a stored winner too, from an older space): a winner
            # outside it would be refused by dispatch
            queue = [default] + [c for c in warm if self.template.outside_space(c, self.shape, self.gpu, self.flags)
                                 is None and self.template.check_config(c, self.shape, self.gpu) is None]
        else:
            raise ValueError(f"sampler must be 'tpe' or 'grid'; got {sampler!r}")
        for config in queue:
            if _config_key(config) not in self.results:
                self._evaluate(study, self._trial_of(study, config), config)
        if sampler == "grid":
            return
        # Walking a many-knob space to count it costs minutes (millions of configs): only a small
        # one is listed, where the search may measure all of it and stop early.
        bound = self.template.grid_size_bound()
        space_size = len(self.template.grid(self.shape, self.gpu)) if bound <= GRID_COUNT_LIMIT else bound
        attempts = 0
        while self.measured() < n_trials and attempts < CONSTRAINT_RETRIES * n_trials:
            attempts += 1
            trial = study.ask()
            config = self._suggest(trial)
            problem = self.template.check_config(config, self.shape, self.gpu)
            if problem:   # never compiled: tell the sampler this region is infeasible
                trial.set_user_attr("config", config)
                trial.set_user_attr("skipped", "constraint")
                trial.set_user_attr("fail_reason", f"constraint: {problem}")
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            self._evaluate(study, trial, config)
            if len(self.results) >= space_size + 1:
                break     # the whole valid space is measured

    def finish(self) -> TuneResult:
        """Verify and re-time the fastest few and the default one after another; ties (<2%) go to
        the default, else to the simpler. A finalist that fails here is not shipped."""
        default = self.template.default_for(self.shape, self.gpu, self.flags)
        passed = sorted(((v["ms"], json.loads(k)) for k, v in self.results.items() if v["ms"] is not None),
                        key=lambda item: item[0])
        failed = sum(1 for v in self.results.values() if v["ms"] is None)
        if not passed:
            reasons = [f"{json.loads(k)}: {v['reason']}" + (" (an earlier run)" if v.get("earlier") else "")
                       for k, v in self.results.items() if v["ms"] is None]
            raise RuntimeError(f"every config of {self.name} failed; first reasons: " + "; ".join(reasons[:3]))
        finalists = [config for _, config in passed[:FINALISTS]]
        if _config_key(default) not in {_config_key(c) for c in finalists} and \
                self.results.get(_config_key(default), {}).get("ms") is not None:
            finalists.append(default)
        retimed: dict[str, float] = {}
        retime_failures = []
        for config in finalists:
            # verified again: a finalist may have been measured by an earlier run under another
            # torch, driver or Triton patch release, and a racy one may fail only on a later launch
            reply = self.worker.run({"module": type(self.template).__module__, "template": self.template.name,
                                     "shape": self.shape, "dtype": self.dtype, "flags": self.flags,
                                     "config": config, "seed": self.seed, "device": self.device,
                                     "verify": True, "time": True})
            if reply["ok"]:
                retimed[_config_key(config)] = float(reply["ms"])
            else:
                retime_failures.append(f"{config}: {reply['reason']}")
        self.failures += [f"{failure} (final re-time)" for failure in retime_failures]
        failed += len(retime_failures)
        if not retimed:
            raise RuntimeError(f"every finalist of {self.name} failed its final verified re-time: "
                               + "; ".join(retime_failures[:3]))
        best_ms = min(retimed.values())
        ties = [json.loads(k) for k, ms in retimed.items() if ms <= best_ms * (1 + TIE_FRACTION)]
        # A tie with the default ships the default: tuning moves a shape off the heuristic only
        # for a measured win (session 9: "simpler" by tile sums once shipped an equal config
        # that took another algorithm)
        if any(_config_key(c) == _config_key(default) for c in ties):
            winner = default
        else:
            winner = min(ties, key=lambda c: (self.template.complexity(c), retimed[_config_key(c)]))
        default_ms = retimed.get(_config_key(default)) or self.results.get(_config_key(default), {}).get("ms")
        return TuneResult(template=self.template, shape=self.shape, dtype=self.dtype, flags=self.flags,
                          config=winner, ms=retimed[_config_key(winner)], default_config=default,
                          default_ms=default_ms, trials=self.measured(), failed=failed, study=self.name,
                          failures=list(self.failures))
