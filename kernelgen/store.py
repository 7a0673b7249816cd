"""tuned/<gpu>.json: the schema, loading with clear errors, nearest-bucket lookup, atomic merge.

One file per GPU. Header: schema version, GPU identity, toolchain, each template's source hash.
Entries: one tuned config per (op, kernel, dtype, flags, shape bucket), with its timings.
Each entry also records the template hash and Triton version it was tuned with, so a merge of
files from different toolchains keeps every entry and staleness is judged per entry.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

SCHEMA = "kernelgen.tuned/1"


class StoreError(ValueError):
    """A tuned file that cannot be used (corrupt JSON, unknown schema, malformed header)."""


class StoreWarning(UserWarning):
    """Part of a tuned file was left out (a malformed entry) or moved aside (a corrupt file)."""


@dataclass
class Entry:
    op: str
    kernel: str
    dtype: str
    flags: str
    shape: dict[str, int]
    config: dict[str, Any]
    ms: float
    default_ms: float | None = None
    trials: int = 0
    gbps: float | None = None
    tflops: float | None = None
    template_hash: str = ""
    triton: str = ""
    tuned_at: str = ""
    # keys this version does not know (a hand-written "notes"): kept, and written back on a merge
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        known = asdict(self)
        extra = known.pop("extra")
        return {**known, **{k: v for k, v in extra.items() if k not in known}}

    @property
    def key(self) -> tuple:
        return (self.op, self.kernel, self.dtype, self.flags, tuple(sorted(self.shape.items())))

    @property
    def template(self) -> str:
        return f"{self.op}.{self.kernel}"


@dataclass
class TunedFile:
    gpu: dict[str, Any]
    toolchain: dict[str, str] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)   # template name -> source hash
    entries: list[Entry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # "entry <index>: why", per malformed entry left out

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "gpu": self.gpu, "toolchain": self.toolchain,
                "templates": dict(sorted(self.templates.items())),
                "entries": [e.to_json() for e in sorted(self.entries, key=lambda e: e.key)]}


def toolchain() -> dict[str, str]:
    import torch
    import triton
    return {"torch": torch.__version__.split("+")[0], "triton": triton.__version__,
            "cuda": str(torch.version.cuda or "none")}


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    try:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    except OverflowError:   # an integer too large for a float
        return False


_REQUIRED = ("op", "kernel", "dtype", "flags", "shape", "config", "ms")
_KNOWN = {f.name for f in fields(Entry)} - {"extra"}


def parse_entry(raw: Any) -> Entry:
    """One entry from its JSON form, every field's type checked (dispatch and the tuner use them
    unguarded); ValueError naming the first bad field. Unknown keys are kept in ``extra``."""
    if not isinstance(raw, dict):
        raise ValueError(f"must be an object; got {type(raw).__name__}")
    missing = [name for name in _REQUIRED if name not in raw]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)}")
    for name in ("op", "kernel", "dtype", "flags"):
        if not isinstance(raw[name], str):
            raise ValueError(f"{name} must be a string; got {_brief(raw[name])}")
    shape, config, ms = raw["shape"], raw["config"], raw["ms"]
    if not isinstance(shape, dict) or not all(isinstance(k, str) and _is_int(v) and v >= 0 for k, v in shape.items()):
        raise ValueError(f"shape must map dims to whole sizes >= 0; got {_brief(shape)}")
    if not isinstance(config, dict) or not all(isinstance(k, str) and (v is None or isinstance(v, (str, int, float)))
                                               for k, v in config.items()):
        raise ValueError(f"config must map knobs to numbers, strings, booleans or null; got {_brief(config)}")
    if not _is_number(ms) or ms <= 0:
        raise ValueError(f"ms must be a finite number > 0; got {_brief(ms)}")
    optional = {}
    for name in ("default_ms", "gbps", "tflops"):
        value = raw.get(name)
        if value is not None and (not _is_number(value) or value < 0):
            raise ValueError(f"{name} must be a finite number >= 0 or null; got {_brief(value)}")
        optional[name] = None if value is None else float(value)
    for name in ("template_hash", "triton", "tuned_at"):
        value = raw.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string; got {_brief(value)}")
        optional[name] = value or ""
    trials = raw.get("trials") or 0
    if not _is_int(trials) or trials < 0:
        raise ValueError(f"trials must be a whole number >= 0; got {_brief(trials)}")
    return Entry(op=raw["op"], kernel=raw["kernel"], dtype=raw["dtype"], flags=raw["flags"], shape=dict(shape),
                 config=dict(config), ms=float(ms), trials=trials, **optional,
                 extra={k: v for k, v in raw.items() if k not in _KNOWN})


def _check_header(data: dict, source: str) -> None:
    gpu = data.get("gpu")
    if not isinstance(gpu, dict):
        raise StoreError(f"{source}: gpu must be an object; got {_brief(gpu)}")
    for name in ("toolchain", "templates"):
        if not isinstance(data.get(name, {}), dict):
            raise StoreError(f"{source}: {name} must be an object; got {_brief(data[name])}")
    if not isinstance(data.get("entries", []), list):
        raise StoreError(f"{source}: entries must be a list; got {_brief(data['entries'])}")


def parse(data: Any, source: str = "<memory>", warn: bool = True) -> TunedFile:
    """A tuned file from its JSON form. A malformed header raises StoreError; a malformed entry is
    left out (listed in ``skipped``, and one StoreWarning each unless ``warn`` is False), so one
    bad entry does not cost the others."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise StoreError(f"{source}: schema is {found!r}, expected {SCHEMA!r}")
    _check_header(data, source)
    entries, skipped = [], []
    for index, raw in enumerate(data.get("entries", [])):
        try:
            entries.append(parse_entry(raw))
        except ValueError as error:
            skipped.append(f"entry {index}: {error}")
            if warn:
                warnings.warn(f"{source}: skipped {skipped[-1]}", StoreWarning, stacklevel=2)
    return TunedFile(gpu=dict(data["gpu"]), toolchain=dict(data.get("toolchain", {})),
                     templates=dict(data.get("templates", {})), entries=entries, skipped=skipped)


def load(path: str | os.PathLike, warn: bool = True) -> TunedFile:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise StoreError(f"{path}: cannot read ({error.strerror})") from error
    except UnicodeDecodeError as error:
        raise StoreError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise StoreError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from error
    except RecursionError as error:
        raise StoreError(f"{path}: not a tuned file (JSON nested too deeply)") from error
    return parse(data, str(path), warn)


def _backup_path(path: Path, reason: str) -> Path:
    """``<name>.<reason>-<time>``, numbered when that name is taken: a backup never replaces another."""
    base = path.with_name(f"{path.name}.{reason}-{now()}")
    candidate, number = base, 1
    while candidate.exists():
        candidate, number = base.with_name(f"{base.name}.{number}"), number + 1
    return candidate


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock beside the file, so concurrent tuners merge one after the other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def merge_write(path: str | os.PathLike, gpu: Mapping[str, Any], entries: Iterable[Entry],
                template_hashes: Mapping[str, str], tools: Mapping[str, str] | None = None) -> TunedFile:
    """Merge ``entries`` into the file at ``path`` (created if missing) and write it atomically.

    An entry replaces the stored one with the same (op, kernel, dtype, flags, shape); every other
    stored entry is kept. A corrupt existing file is moved aside (``.corrupt-<time>``), and one whose
    malformed entries are dropped is copied aside (``.malformed-<time>``) first: nothing is lost,
    and a StoreWarning names the copy.
    """
    path = Path(os.path.realpath(path))   # a link is written through, and locked as its target
    with _locked(path):
        current = TunedFile(gpu=dict(gpu))
        if path.exists():
            try:
                current = load(path, warn=False)   # skipped entries are summed up below, with the copy's name
            except StoreError as error:
                backup = _backup_path(path, "corrupt")
                path.replace(backup)
                warnings.warn(f"{error}; moved it to {backup} and started a new file", StoreWarning, stacklevel=2)
        if current.gpu.get("key") not in (None, gpu.get("key")):
            raise StoreError(f"{path} holds configs for GPU {current.gpu.get('key')!r}, "
                             f"not {gpu.get('key')!r}; write to tuned/{gpu.get('key')}.json instead")
        if current.skipped:
            backup = _backup_path(path, "malformed")
            shutil.copy2(path, backup)
            warnings.warn(f"{path}: dropped {len(current.skipped)} malformed entries ({current.skipped[0]}"
                          f"{', ...' if len(current.skipped) > 1 else ''}); the original is kept at {backup}",
                          StoreWarning, stacklevel=2)
        merged = {e.key: e for e in current.entries}
        for entry in entries:
            merged[entry.key] = entry
        result = TunedFile(gpu={**current.gpu, **gpu}, toolchain=dict(tools or toolchain()),
                           templates={**current.templates, **template_hashes}, entries=list(merged.values()))
        write_atomically(path, json.dumps(result.to_json(), indent=1) + "\n")
        return result


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by a complete file or not at all: written beside it (``<name>.<random>.json.tmp``,
    removed if the write fails), then renamed over it, keeping its permission bits (a new file
    gets the umask's; mkstemp alone would leave 0600, unreadable to other users of the install)."""
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".json.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        if path.exists():
            mode = path.stat().st_mode & 0o7777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def shape_distance(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    """Distance between two shape buckets in log2 space over their shared dims."""
    dims = set(a) & set(b)
    if not dims:
        return math.inf
    missing = len(set(a) ^ set(b))
    return math.sqrt(sum((math.log2(max(a[d], 1)) - math.log2(max(b[d], 1))) ** 2 for d in dims)) + 100 * missing


def nearest(entries: Iterable[Entry], shape: Mapping[str, int]) -> Entry | None:
    best, best_distance = None, math.inf
    for entry in entries:
        distance = shape_distance(entry.shape, shape)
        if distance < best_distance:
            best, best_distance = entry, distance
    return best


def stale_reason(entry: Entry, template_hash: str, triton_version: str) -> str | None:
    """Why a stored entry no longer applies to the code and toolchain at hand, or None."""
    if entry.template_hash and entry.template_hash != template_hash:
        return f"template {entry.template} changed since it was tuned (hash {entry.template_hash} != {template_hash})"
    if entry.triton and _minor(str(entry.triton)) != _minor(triton_version):
        return f"tuned with Triton {entry.triton}, running Triton {triton_version}"
    return None


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])
