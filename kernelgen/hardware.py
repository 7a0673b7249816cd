"""GPU detection and the GPU profiles in profiles/ (aliases, limits, datasheet and measured ceilings)."""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelgen.paths import profiles_dir

PROFILE_SCHEMA = "kernelgen.profile/1"


@dataclass(frozen=True)
class GPUProfile:
    key: str                       # short name used by --gpu and tuned/<key>.json
    name: str
    aliases: tuple[str, ...]
    compute_capability: tuple[int, int]
    sms: int
    memory_gb: float
    shared_memory_per_block: int   # bytes a block may opt into
    registers_per_sm: int
    l2_bytes: int
    datasheet: dict[str, float]    # bf16_tflops, fp32_tflops, bandwidth_gbs, ...
    measured: dict[str, Any] = field(default_factory=dict)  # copy_gbs, bf16_tflops, ... (kernelgen calibrate)
    path: Path | None = None

    @property
    def bandwidth_gbs(self) -> float:
        """Memory bandwidth to judge against: the measured copy ceiling, else the datasheet."""
        return float(self.measured.get("copy_gbs") or self.datasheet["bandwidth_gbs"])

    def tflops(self, dtype: str) -> float:
        """Compute ceiling for matrix work at ``dtype`` (measured GEMM if known, else datasheet)."""
        key = {"bf16": "bf16_tflops", "fp16": "fp16_tflops", "fp32": "tf32_tflops"}.get(dtype, "bf16_tflops")
        return float(self.measured.get(key) or self.datasheet.get(key) or self.datasheet["bf16_tflops"])

    def matches(self, device_name: str) -> bool:
        wanted = _normalise(device_name)
        return any(_normalise(alias) == wanted for alias in (self.name, *self.aliases))


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _profile_from_json(path: Path) -> GPUProfile:
    try:
        data = json.loads(path.read_text())
        if data.get("schema") != PROFILE_SCHEMA:
            raise ValueError(f"schema is {data.get('schema')!r}, expected {PROFILE_SCHEMA!r}")
        return GPUProfile(
            key=data["key"], name=data["name"], aliases=tuple(data.get("aliases", ())),
            compute_capability=tuple(data["compute_capability"]), sms=int(data["sms"]),
            memory_gb=float(data["memory_gb"]), shared_memory_per_block=int(data["shared_memory_per_block"]),
            registers_per_sm=int(data.get("registers_per_sm", 65536)), l2_bytes=int(data["l2_bytes"]),
            datasheet=_datasheet(data["datasheet"]), measured=dict(data.get("measured") or {}), path=path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"GPU profile {path} is unreadable: {error}") from error


DATASHEET_KEYS = ("bf16_tflops", "fp32_tflops", "bandwidth_gbs")


def _datasheet(data: Any) -> dict[str, float]:
    sheet = dict(data)
    missing = [k for k in DATASHEET_KEYS if not isinstance(sheet.get(k), (int, float)) or isinstance(sheet.get(k), bool)]
    if missing:
        raise ValueError(f"datasheet needs numbers {', '.join(DATASHEET_KEYS)}; missing or not a number: "
                         f"{', '.join(missing)}")
    return sheet


class ProfileWarning(UserWarning):
    """A profiles/*.json that cannot be read: left out (other GPUs' profiles still work)."""


def unreadable_profiles() -> list[str]:
    """Why each profiles/*.json that load_profiles left out could not be read (for `kernelgen info`)."""
    load_profiles()
    return list(_UNREADABLE)


_UNREADABLE: list[str] = []


@functools.lru_cache(maxsize=None)
def load_profiles() -> dict[str, GPUProfile]:
    """key -> GPUProfile for every readable profiles/*.json; an unreadable one (a hand-added
    profile with a typo) is left out with a ProfileWarning rather than breaking every op call."""
    import warnings
    profiles = {}
    _UNREADABLE.clear()
    for path in sorted(profiles_dir().glob("*.json")):
        try:
            profile = _profile_from_json(path)
        except ValueError as error:
            _UNREADABLE.append(str(error))
            warnings.warn(f"{error}; left out", ProfileWarning, stacklevel=2)
            continue
        profiles[profile.key] = profile
    return profiles


def profile(key: str) -> GPUProfile:
    profiles = load_profiles()
    if key not in profiles:
        raise KeyError(f"no GPU profile {key!r}; known: {', '.join(sorted(profiles))}")
    return profiles[key]


def profile_for_device_name(device_name: str) -> GPUProfile | None:
    return next((p for p in load_profiles().values() if p.matches(device_name)), None)


@dataclass(frozen=True)
class DetectedGPU:
    """The GPU torch sees, and its profile when profiles/ knows it."""
    name: str
    key: str
    compute_capability: tuple[int, int]
    sms: int
    memory_gb: float
    profile: GPUProfile | None

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "compute_capability": list(self.compute_capability),
                "sms": self.sms, "memory_gb": round(self.memory_gb, 1)}


def _key_for_unknown(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower().replace("nvidia", "")).strip("-") or "unknown-gpu"


@functools.lru_cache(maxsize=None)
def detect_gpu(index: int = 0) -> DetectedGPU | None:
    """The CUDA device ``index``, or None when torch sees no CUDA GPU."""
    import torch
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(index)
    found = profile_for_device_name(props.name)
    return DetectedGPU(name=props.name, key=found.key if found else _key_for_unknown(props.name),
                       compute_capability=(props.major, props.minor), sms=props.multi_processor_count,
                       memory_gb=props.total_memory / 2**30, profile=found)


def no_gpu_message(command: str, then: str) -> str:
    """The one message every GPU-only command prints on a machine without a CUDA GPU."""
    import torch
    return (f"[red]No CUDA GPU found: kernelgen {command} needs a CUDA GPU, and torch sees none[/] "
            f"(torch {torch.__version__}, CUDA {torch.version.cuda or 'not built in'}; "
            f"torch.cuda.is_available() is False). {then}")


def save_measured(key: str, measured: dict[str, Any]) -> Path:
    """Merge measured ceilings into profiles/<key>.json (kernelgen calibrate)."""
    found = profile(key)
    assert found.path is not None
    data = json.loads(found.path.read_text())
    data["measured"] = {**(data.get("measured") or {}), **measured}
    tmp = found.path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(found.path)
    load_profiles.cache_clear()
    return found.path
