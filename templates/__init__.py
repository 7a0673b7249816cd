"""Kernel templates, one module per family; this registry lists them all.

Installed as ``kernelgen.templates`` (see pyproject.toml); each family module registers its
templates with :func:`register` when imported, and :func:`all_templates` imports every family.
"""
from __future__ import annotations

import importlib
import sys

from kernelgen import launch
from kernelgen.template import Template

# Families, in the order the CLI lists them. A module here that fails to import (for example a
# CUDA-only family on a machine without CuPy) must still register its Triton templates.
FAMILIES = (
    "linear_scan",
    "selective_scan",
    "linear_attention",
    "loglinear_attention",
    "sliding_window_attention",
)

_REGISTRY: dict[str, Template] = {}


def register(template: Template) -> Template:
    if not template.name or template.name in _REGISTRY and _REGISTRY[template.name] is not template:
        raise ValueError(f"template name {template.name!r} is empty or already registered")
    _REGISTRY[template.name] = template
    # Every family's Triton kernels launch through the cached launcher (kernelgen/launch.py): by
    # the time a module registers its templates it has defined its kernels and imported its helpers.
    for name, module in list(sys.modules.items()):
        if name.startswith(__name__ + ".") and module is not None:
            launch.install_module(module)
    return template


def _load_families() -> None:
    for family in FAMILIES:
        try:
            importlib.import_module(f"{__name__}.{family}")
        except ModuleNotFoundError as error:
            # A family not written yet is simply absent; a missing dependency inside one is a bug.
            if error.name != f"{__name__}.{family}":
                raise


def all_templates() -> dict[str, Template]:
    """name -> Template for every registered template."""
    _load_families()
    return dict(_REGISTRY)


def get_template(name: str) -> Template:
    templates = all_templates()
    if name not in templates:
        raise KeyError(f"no template named {name!r}; known: {', '.join(sorted(templates))}")
    return templates[name]


def templates_for_op(op: str) -> list[Template]:
    return [t for t in all_templates().values() if t.op == op]
