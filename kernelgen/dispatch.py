"""Call-time config lookup: tuned/<gpu>.json -> nearest shape bucket -> constraint check -> config.

This runs on every op call, so everything after the first call for a given key is one dict
lookup: the tuned file is read once per process and GPU, and each (template, shape, dtype, flags,
device) resolves once. Nothing is ever tuned here. When nothing tuned applies the template's
heuristic default is used and one warning says why. A GPU without its own tuned config borrows
one from a tuned file of the same compute capability (an H200 runs the H100's), with a warning.
"""
from __future__ import annotations

import os
import threading
import warnings
from typing import Mapping

import torch

from kernelgen import hardware, store
from kernelgen.paths import tuned_dir, tuned_file
from kernelgen.template import Config, Template, dtype_name


class TuningWarning(UserWarning):
    """No usable tuned config: the heuristic default runs instead."""


_lock = threading.Lock()
_resolved: dict[tuple, Config] = {}
_files: dict[str, tuple[store.TunedFile | None, str | None]] = {}   # gpu key -> (file, problem)
_warned: set[tuple] = set()


def reset() -> None:
    """Forget loaded files, resolved configs and issued warnings (tests; a new KERNELGEN_TUNED_DIR)."""
    with _lock:
        _resolved.clear()
        _files.clear()
        _warned.clear()


def current_gpu(device: torch.device) -> hardware.DetectedGPU | None:
    if device.type != "cuda":
        return None   # the CPU interpreter: nothing is tuned for it
    return hardware.detect_gpu(device.index if device.index is not None else torch.cuda.current_device())


def config_for(template: Template, shape: Mapping[str, int], dtype: torch.dtype | str,
               flags: str = "", device: torch.device | str = "cuda") -> Config:
    """The config to launch ``template`` with for this call."""
    device = torch.device(device)
    dtype_str = dtype if isinstance(dtype, str) else dtype_name(dtype)
    key = (template.name, tuple(shape.items()), dtype_str, flags, device.type, device.index)
    found = _resolved.get(key)
    if found is None:
        with _lock:
            found = _resolved[key] = _resolve(template, dict(shape), dtype_str, flags, current_gpu(device))
    return found


def _tuned_file(gpu_key: str) -> tuple[store.TunedFile | None, str | None]:
    if gpu_key not in _files:
        path = tuned_file(gpu_key)
        if not path.exists():
            _files[gpu_key] = (None, f"no tuned file for GPU '{gpu_key}' ({path})")
        else:
            try:
                loaded = store.load(path)
                stored_key = loaded.gpu.get("key")
                if stored_key != gpu_key:
                    _files[gpu_key] = (None, f"{path} was tuned for GPU '{stored_key}', not '{gpu_key}'")
                else:
                    _files[gpu_key] = (loaded, None)
            except store.StoreError as error:
                _files[gpu_key] = (None, f"tuned file unusable: {error}")
    return _files[gpu_key]


def _resolve(template: Template, shape: dict[str, int], dtype: str, flags: str,
             gpu: hardware.DetectedGPU | None) -> Config:
    profile = gpu.profile if gpu else None
    default = template.default_for(shape, profile, flags)
    if gpu is None:
        return default
    tuned, problem = _tuned_file(gpu.key)
    if tuned is not None:
        config, problem = _from_file(tuned, template, shape, dtype, flags, profile)
        if config is not None:
            return config
    for key, other in same_architecture_files(gpu):
        config, _ = _from_file(other, template, shape, dtype, flags, profile)
        if config is not None:
            major, minor = gpu.compute_capability
            _warn_once((template.name, dtype, flags, problem, key),
                       f"kernelgen: {template.name} ({dtype}{', ' + flags if flags else ''}) runs a config tuned "
                       f"on {other.gpu.get('name', key)} ('{key}', the same compute capability {major}.{minor}): "
                       f"{problem}. Run `kernelgen tune --gpu {gpu.key} --op {template.op} --warm-from {key}` to "
                       f"tune it on this GPU.")
            return config
    _warn_once((template.name, dtype, flags, problem),
               f"kernelgen: {template.name} ({dtype}{', ' + flags if flags else ''}) runs its heuristic "
               f"default config: {problem}. Run `kernelgen tune --gpu {gpu.key} --op {template.op}` to tune it.")
    return default


KeyedFile = tuple[str, store.TunedFile]   # (GPU key, its tuned file)


def tuned_sources(gpu: hardware.DetectedGPU) -> tuple[KeyedFile | None, list[KeyedFile], str | None]:
    """Where this GPU's configs come from: (its own file as (key, file) or None, the same-architecture
    files it borrows from, why its own file is unusable or None). For `kernelgen info`."""
    own, problem = _tuned_file(gpu.key)
    return ((gpu.key, own) if own is not None else None), same_architecture_files(gpu), problem


def _from_file(tuned: store.TunedFile, template: Template, shape: dict[str, int], dtype: str, flags: str,
               profile) -> tuple[Config | None, str | None]:
    """(the nearest fresh entry's config, None) from one tuned file, or (None, why there is none)."""
    import triton
    candidates = [e for e in tuned.entries if e.op == template.op and e.kernel == template.kernel
                  and e.dtype == dtype and e.flags == flags]
    fresh = [e for e in candidates if store.stale_reason(e, template.source_hash(), triton.__version__) is None]
    entry = store.nearest(fresh, shape)
    if entry is not None:
        # checked against this GPU's profile (shared memory, registers), not the one it was tuned on
        try:
            config = _over_default(template, entry.config, shape, profile, flags)
            config = _at_call_shape(template, config, entry.shape, shape, profile, flags)
            reason = _outside_space(template, entry, profile) or template.check_config(config, shape, profile)
        except Exception as error:  # noqa: BLE001 - a hand-edited entry must not break the op
            reason = f"its check raised {type(error).__name__}: {error}"
        if reason is None:
            return config, None
        return None, f"nearest tuned config {entry.config} (bucket {entry.shape}) does not fit: {reason}"
    if candidates:
        if not fresh:
            return None, store.stale_reason(candidates[0], template.source_hash(), triton.__version__)
        return None, (f"no tuned entry for {template.name} dtype={dtype} flags={flags!r} has a shape sharing "
                      f"a dimension with {dict(shape)} (entries at {fresh[0].shape})")
    return None, f"no tuned entry for {template.name} dtype={dtype} flags={flags!r} on {tuned.gpu.get('key')}"


def same_architecture_files(gpu: hardware.DetectedGPU) -> list[KeyedFile]:
    """Other GPUs' tuned files of this GPU's compute capability (an H200 borrows the H100's), those
    with its SM count first; none when KERNELGEN_BORROW_TUNED is 0, false, no or off. Their configs
    still pass this GPU's constraint check before they run."""
    if os.environ.get("KERNELGEN_BORROW_TUNED", "1").strip().lower() in ("0", "false", "no", "off"):
        return []
    found = []
    for path in sorted(tuned_dir().glob("*.json")):
        if path.stem == gpu.key:
            continue
        loaded, _ = _tuned_file(path.stem)   # unreadable, corrupt or mislabelled files are skipped
        if loaded is None or _compute_capability(loaded) != tuple(gpu.compute_capability):
            continue
        found.append((loaded.gpu.get("sms") != gpu.sms, path.stem, loaded))
    return [(key, loaded) for _, key, loaded in sorted(found, key=lambda item: item[:2])]


def _compute_capability(tuned: store.TunedFile) -> tuple[int, int] | None:
    """The file's (major, minor), or None when its header does not hold one (then it is not borrowed)."""
    value = tuned.gpu.get("compute_capability")
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(type(v) is int for v in value):
        return tuple(value)
    return None


def _over_default(template: Template, config: Config, shape: dict[str, int], profile, flags: str) -> Config:
    """A stored config with the knobs it lacks taken from the default, as the tuner reads a winner
    from before a knob was added: a launch never finds a knob missing."""
    default = template.default_for(shape, profile, flags)
    if set(default) <= set(config):
        return dict(config)
    return template.over_default(config, default)


def _at_call_shape(template: Template, config: Config, tuned_shape, shape: dict[str, int], profile,
                   flags: str) -> Config:
    """A config tuned at another shape with its ``shape_knobs`` from the heuristic at this one
    (Template.at_call_shape): a B=8 entry's split_len 0 left a B=1, T=65536 call 32 programs
    (H100, bf16: linear attention's gated fwd+bwd 10.4 ms, 3.3 with the call's segments). Kept as
    tuned if the mix fails the template's constraints."""
    adapted = template.at_call_shape(config, tuned_shape, shape, profile, flags)
    return adapted if adapted == config or template.check_config(adapted, shape, profile) is None else config


def _outside_space(template: Template, entry: store.Entry, profile) -> str | None:
    """Why a stored config holds a value the tuner could not have produced, or None: a
    hand-edited or corrupt file, caught here rather than by a failed launch."""
    return template.outside_space(entry.config, entry.shape, profile, entry.flags)


def _warn_once(key: tuple, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, TuningWarning, stacklevel=4)
