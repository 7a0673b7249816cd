"""Tune many (template, shape, dtype, flags) jobs on one device and merge the winners into tuned/."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kernelgen import store
from kernelgen.hardware import DetectedGPU, GPUProfile
from kernelgen.template import Template
from kernelgen.tune.pool import TrialWorker
from kernelgen.tune.study import StudyRunner, TuneResult, open_storage


@dataclass(frozen=True)
class Job:
    template: Template
    shape: dict[str, int]
    dtype: str
    flags: str = ""

    @property
    def label(self) -> str:
        flags = f" [{self.flags}]" if self.flags else ""
        return f"{self.template.name} {self.dtype}{flags} " + " ".join(f"{k}={v}" for k, v in self.shape.items())


@dataclass(frozen=True)
class Target:
    """Where trials run and whose file the winners go to."""
    device: str                 # "cuda" or "cpu" (the interpreter: tests only)
    identity: dict              # GPU identity for the tuned file's header
    profile: GPUProfile | None

    @classmethod
    def for_gpu(cls, gpu: DetectedGPU) -> "Target":
        return cls(device="cuda", identity=gpu.identity(), profile=gpu.profile)

    @classmethod
    def cpu_interpreter(cls) -> "Target":
        return cls(device="cpu", identity={"name": "CPU (Triton interpreter)", "key": "cpu-interpreter",
                                           "compute_capability": [0, 0], "sms": os.cpu_count() or 1,
                                           "memory_gb": 0.0}, profile=None)


def _shape_key(shape) -> tuple:
    return tuple(sorted((k, int(v)) for k, v in shape.items()))


def _stored_winners(path: Path) -> dict[tuple, dict]:
    """(template, dtype, flags, shape) -> config of every entry already in the tuned file, stale or
    not (a missing or unreadable file gives none: the tuner then starts from the default alone)."""
    try:
        tuned = store.load(path)
    except Exception:  # noqa: BLE001 - a warm start is an optimisation, never a reason to fail
        return {}
    return {(e.template, e.dtype, e.flags, _shape_key(e.shape)): dict(e.config) for e in tuned.entries}


def output_problem(out: Path, gpu_key: str) -> str | None:
    """Why the winners could not be merged into ``out``, or None. Checked before any study, so a
    run does not tune for hours and then fail to write (another GPU's file, a folder in its place,
    a file where its folder must be). A corrupt file is no problem: the first write moves it aside."""
    out = Path(out)
    if out.is_dir():
        return f"{out} is a folder; name a .json file"
    if not out.exists():
        existing = next((p for p in out.parents if p.exists()), None)
        if existing is not None and not existing.is_dir():
            return f"{existing} is a file, not a folder"
        if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
            return f"{existing} is not writable"
        return None
    if not os.access(out.parent, os.W_OK | os.X_OK):   # written by replacing: the folder must be writable
        return f"{out.parent} is not writable"
    try:
        with warnings.catch_warnings():     # malformed entries are reported when the file is written
            warnings.simplefilter("ignore")
            tuned = store.load(out)
    except store.StoreError:
        return None
    except Exception as error:  # noqa: BLE001 - the write would fail the same way
        return f"{out}: cannot read ({type(error).__name__}: {error})"
    if tuned.gpu.get("key") not in (None, gpu_key):
        return f"{out} holds configs for GPU {tuned.gpu.get('key')!r}, not {gpu_key!r}"
    return None


def load_warm_files(paths: list[Path]) -> list[store.TunedFile]:
    """The tuned files a tune is warm-started from (``--warm-from``: another GPU's winners).
    Unlike the output file, a named file must be readable: raises store.StoreError saying which."""
    files = []
    for path in paths:
        if not Path(path).exists():
            raise store.StoreError(f"--warm-from {path}: no such tuned file")
        files.append(store.load(Path(path)))
    return files


def _borrowed_winners(job: Job, files: list[store.TunedFile]) -> list[dict]:
    """Per warm-from file, the config dispatch would pick there for this job: the nearest shape
    bucket among its entries for the same template, dtype and flags, preferring entries tuned with
    the running template source (a stale one still says which region of the space won)."""
    import triton
    borrowed = []
    for tuned in files:
        same = [e for e in tuned.entries if e.template == job.template.name and e.dtype == job.dtype
                and e.flags == job.flags]
        fresh = [e for e in same
                 if store.stale_reason(e, job.template.source_hash(), triton.__version__) is None]
        entry = store.nearest(fresh, job.shape) or store.nearest(same, job.shape)
        if entry is None:
            continue
        # as dispatch runs it here: the template's shape knobs follow this job's shape
        config = job.template.at_call_shape(entry.config, entry.shape, job.shape, None, job.flags)
        if config not in borrowed:
            borrowed.append(config)
    return borrowed


def tune_jobs(jobs: list[Job], target: Target, out: Path, *, n_trials: int = 24, sampler: str = "tpe",
              storage_url: str | None = None, seed: int = 0, trial_timeout_s: float = 120.0,
              on_trial: Callable[[Job, int, dict, dict], None] | None = None,
              on_job: Callable[[Job, TuneResult | None, str | None], None] | None = None,
              warm_from: list[store.TunedFile] | None = None) -> list[TuneResult]:
    """Run each job's study and merge its winner into ``out`` as soon as it is known, so an
    interrupted run keeps what it finished; returns the winners written. A job whose every config
    fails is reported as ``on_job(job, None, error)``, one whose winner could not be written as
    ``on_job(job, result, error)``; neither stops the others. Raises StorageError (nothing tuned)
    when the Optuna storage cannot be opened.

    Every study measures the default first, then ``out``'s stored winner for the same shape, then
    the nearest winner of each ``warm_from`` file (e.g. the H100's when tuning an H200), then the
    sampler's draws: a port to a new GPU ships the faster of the default and the borrowed config
    even with two trials, and never a config it did not measure and verify here."""
    import triton
    storage = open_storage(storage_url)
    env = {"TRITON_INTERPRET": "1"} if target.device == "cpu" else {}
    results: list[TuneResult] = []
    shipped = _stored_winners(out)
    with TrialWorker(timeout_s=trial_timeout_s, env=env) as worker:
        for job in jobs:
            previous = shipped.get((job.template.name, job.dtype, job.flags, _shape_key(job.shape)))
            try:
                warm = ([previous] if previous else []) + [c for c in _borrowed_winners(job, warm_from or [])
                                                           if c != previous]
                runner = StudyRunner(job.template, job.shape, job.dtype, job.flags, worker=worker, storage=storage,
                                     gpu_key=target.identity["key"], gpu=target.profile, device=target.device,
                                     seed=seed, on_trial=(lambda n, c, r, job=job: on_trial(job, n, c, r))
                                     if on_trial else None, warm_start=warm)
                runner.search(n_trials, sampler)
                result = runner.finish()
            except Exception as error:  # noqa: BLE001 - one broken job must not lose the others' results
                if on_job:
                    on_job(job, None, f"{type(error).__name__}: {error}")
                continue
            try:
                store.merge_write(out, target.identity, [result.entry(triton.__version__)],
                                  {job.template.name: job.template.source_hash()})
            except Exception as error:  # noqa: BLE001 - the other studies still run; their trials are kept
                if on_job:
                    on_job(job, result, f"{type(error).__name__}: {error}; winner {result.config}. Its trials "
                                        f"stay in the Optuna storage: re-run once the file is fixed to write it")
                continue
            results.append(result)
            if on_job:
                on_job(job, result, None)
    return results
