"""The trial worker: a subprocess that compiles, verifies and times one config per request.

Trials run here, not in the tuner, so that a config which crashes the process, corrupts the CUDA
context (illegal memory access) or hangs costs one trial: the tuner marks it FAIL, respawns the
worker and goes on. Protocol: one JSON request per line on stdin, one JSON reply per line on the
original stdout (anything the kernels print goes to stderr, which the tuner logs).
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from typing import Any

import torch

from kernelgen import hardware
from kernelgen.template import Template
from kernelgen.tune.breakdown import kernel_split
from kernelgen.tune.timing import time_ms
from kernelgen.tune.verify import verify

_templates: dict[tuple[str, str], Template] = {}


def resolve_template(module: str, name: str) -> Template:
    """The template ``name``, defined (and usually registered) by ``module``."""
    key = (module, name)
    if key not in _templates:
        loaded = importlib.import_module(module)
        from kernelgen import templates as registry
        found = registry.all_templates().get(name)
        if found is None or type(found).__module__ != module:
            found = next((v for v in vars(loaded).values() if isinstance(v, Template) and v.name == name), found)
        if found is None:
            raise LookupError(f"module {module} defines no template {name!r}")
        _templates[key] = found
    return _templates[key]


def _cuda_broken() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        torch.cuda.synchronize()
        return False
    except Exception:  # noqa: BLE001 - any error here means the context is unusable
        return True


def run_trial(request: dict[str, Any]) -> dict[str, Any]:
    template = resolve_template(request["module"], request["template"])
    shape, dtype, flags = request["shape"], request["dtype"], request["flags"]
    config, device = request["config"], torch.device(request["device"])
    reply: dict[str, Any] = {"id": request.get("id"), "ok": False, "reason": None, "errors": {}, "ms": None}
    try:
        detected = hardware.detect_gpu(device.index or 0) if device.type == "cuda" else None
        problem = template.check_config(config, shape, detected.profile if detected else None)
        if problem:
            reply["reason"] = f"constraint: {problem}"
            return reply
        seed = int(request["seed"])
        if request.get("verify", True):
            check_shape = template.verification_shape(shape)
            errors, reason, inputs = verify(template, config, check_shape, dtype, flags, device, seed)
            reply["errors"] = errors
            if reason:
                reply["reason"] = reason
                return reply
            if check_shape != dict(shape):
                inputs = None
        else:
            inputs = None
        if request.get("time", True):
            if inputs is None:
                generator = torch.Generator(device="cpu").manual_seed(seed)
                inputs = template.make_inputs(shape, dtype, flags, device, generator)
            outputs = template.allocate_outputs(inputs, shape, dtype, flags)
            reply["ms"] = time_ms(lambda: template.launch(config, inputs, outputs, shape, flags), device,
                                  rep_ms=int(request.get("rep_ms", 100)))
            if request.get("kernels"):
                reply["kernels"] = kernel_split(lambda: template.launch(config, inputs, outputs, shape, flags),
                                                device)
        reply["ok"] = True
    except Exception as error:  # noqa: BLE001 - every failure becomes the trial's reason
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        reply["reason"] = f"{type(error).__name__}: {first_line}"
        # another process may hold the memory: not the config's fault for certain, so retried later
        reply["transient"] = isinstance(error, torch.cuda.OutOfMemoryError)
        traceback.print_exc(file=sys.stderr)
        reply["fatal"] = _cuda_broken()
    return reply


def main() -> None:
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)          # stray prints (compiler, kernels) must not corrupt the reply stream
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            reply = run_trial(request)
        except Exception as error:  # noqa: BLE001 - e.g. the template module failed to import
            reply = {"id": request.get("id"), "ok": False, "reason": f"{type(error).__name__}: {error}",
                     "errors": {}, "ms": None, "fatal": False}
        replies.write(json.dumps(reply) + "\n")
        if reply.get("fatal"):
            sys.exit(3)    # a corrupted CUDA context cannot run the next trial: the tuner respawns us


if __name__ == "__main__":
    main()
