"""kernelgen: tuned Triton/CUDA kernels for sub-quadratic sequence models.

Public ops are imported lazily so ``import kernelgen`` stays cheap and a family that fails to
import does not take the others down.
"""
from __future__ import annotations

import importlib
import os

__version__ = "0.1.0"

# In a source checkout the template/data folders sit at the repo root, not inside the package;
# adding the root to the package path makes ``kernelgen.templates`` resolve the same way it does
# once installed (pyproject maps templates/ -> kernelgen/templates).
_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not os.path.isdir(os.path.join(os.path.dirname(__file__), "templates")) and os.path.isdir(
        os.path.join(_root, "templates")):
    __path__.append(_root)  # type: ignore[name-defined]

# public name -> module under kernelgen.ops
_OPS = {
    "linear_scan": "linear_scan",
    "selective_scan": "selective_scan",
    "selective_state_update": "selective_scan",
    "linear_attention": "linear_attention",
    "linear_attention_step": "linear_attention",
    "loglinear_attention": "loglinear_attention",
    "loglinear_attention_step": "loglinear_attention",
    "LogLinearState": "loglinear_attention",
    "sliding_window_attention": "sliding_window_attention",
    "sliding_window_attention_decode": "sliding_window_attention",
}

__all__ = sorted(_OPS)


def __getattr__(name: str):
    if name in _OPS:
        module = importlib.import_module(f"kernelgen.ops.{_OPS[name]}")
        value = globals()[name] = getattr(module, name)   # later lookups skip this hook (host time a call)
        return value
    raise AttributeError(f"module 'kernelgen' has no attribute {name!r}")
