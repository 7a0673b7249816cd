"""Where kernelgen's data folders live: beside the package when installed, at the repo root in a checkout."""
from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """``tuned``, ``profiles`` or ``templates``: installed copies sit inside the package
    (pyproject maps them there); a source checkout keeps them at the repository root."""
    inside = _PACKAGE / name
    return inside if inside.is_dir() else _PACKAGE.parent / name


def tuned_dir() -> Path:
    """Folder of tuned/<gpu>.json files; ``KERNELGEN_TUNED_DIR`` points at another one."""
    override = os.environ.get("KERNELGEN_TUNED_DIR")
    return Path(override) if override else data_dir("tuned")


def tuned_file(gpu_key: str) -> Path:
    """The tuned file of one GPU: tuned/<gpu key>.json (dispatch reads it, tune writes it)."""
    return tuned_dir() / f"{gpu_key}.json"


def profiles_dir() -> Path:
    return data_dir("profiles")


def cache_dir() -> Path:
    """Per-user cache (Optuna studies, compiled CUDA): $KERNELGEN_CACHE_DIR or ~/.cache/kernelgen."""
    base = os.environ.get("KERNELGEN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kernelgen")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path
