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
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

SCHEMA = "kernelgen.tuned/1"


class StoreError(ValueError):
    """A tuned file that cannot be used (corrupt JSON, unknown schema, missing fields)."""


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

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "gpu": self.gpu, "toolchain": self.toolchain,
                "templates": dict(sorted(self.templates.items())),
                "entries": [asdict(e) for e in sorted(self.entries, key=lambda e: e.key)]}


def toolchain() -> dict[str, str]:
    import torch
    import triton
    return {"torch": torch.__version__.split("+")[0], "triton": triton.__version__,
            "cuda": str(torch.version.cuda or "none")}


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(data: Any, source: str = "<memory>") -> TunedFile:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise StoreError(f"{source}: schema is {found!r}, expected {SCHEMA!r}")
    try:
        entries = [Entry(**e) for e in data.get("entries", [])]
        for e in entries:
            e.shape = {k: int(v) for k, v in e.shape.items()}
        return TunedFile(gpu=dict(data["gpu"]), toolchain=dict(data.get("toolchain", {})),
                         templates=dict(data.get("templates", {})), entries=entries)
    except (KeyError, TypeError, ValueError) as error:
        raise StoreError(f"{source}: malformed entry or header ({error})") from error


def load(path: str | os.PathLike) -> TunedFile:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise StoreError(f"{path}: cannot read ({error.strerror})") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise StoreError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from error
    return parse(data, str(path))


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
    stored entry is kept. A corrupt existing file is moved aside (``.corrupt-<time>``), not lost.
    """
    path = Path(path)
    with _locked(path):
        current = TunedFile(gpu=dict(gpu))
        if path.exists():
            try:
                current = load(path)
            except StoreError:
                path.replace(path.with_name(path.name + f".corrupt-{now()}"))
        if current.gpu.get("key") not in (None, gpu.get("key")):
            raise StoreError(f"{path} holds configs for GPU {current.gpu.get('key')!r}, "
                             f"not {gpu.get('key')!r}; write to tuned/{gpu.get('key')}.json instead")
        merged = {e.key: e for e in current.entries}
        for entry in entries:
            merged[entry.key] = entry
        result = TunedFile(gpu={**current.gpu, **gpu}, toolchain=dict(tools or toolchain()),
                           templates={**current.templates, **template_hashes}, entries=list(merged.values()))
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as handle:
            json.dump(result.to_json(), handle, indent=1)
            handle.write("\n")
        os.replace(tmp, path)
        return result


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
    if entry.triton and _minor(entry.triton) != _minor(triton_version):
        return f"tuned with Triton {entry.triton}, running Triton {triton_version}"
    return None


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])
