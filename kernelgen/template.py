"""The Template: one tunable kernel and everything the tuner, the store and dispatch need about it.

A template lives in ``templates/<family>.py`` next to its kernel source. It declares, as data and
small methods: the search space, the constraints that reject impossible configs before compiling,
a heuristic default, the FLOP and byte model, the float64 reference, and the standard workload.

Shapes are plain dicts of named sizes (``{"B": 8, "T": 4096, "D": 2048}``); the names in
``dims`` form the shape bucket the store keys tuned configs by.
"""
from __future__ import annotations

import ast
import hashlib
import inspect
import io
import itertools
import math
import re
import textwrap
import tokenize
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

Shape = Mapping[str, int]
Config = dict[str, Any]
Tensors = dict[str, torch.Tensor]

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}


def dtype_name(dtype: torch.dtype) -> str:
    """'bf16' for torch.bfloat16, and so on; the store and the CLI speak these names."""
    return DTYPE_NAMES[dtype]


class Template:
    """Base class of every kernel template. Subclasses fill in the class attributes and methods.

    name      unique registry key, "<op>.<kernel>" (e.g. "linear_scan.fwd")
    op        public op it serves ("linear_scan");  kernel: "fwd", "bwd", "step", ...
    space     every tunable parameter -> list of candidate values (the grid)
    dims      shape dims that form the bucket (e.g. ("B", "T", "D"))
    workload  standard shapes it is tuned and benchmarked on; quick_workload: a small subset
    dtypes    dtype names it is tuned for; flags: flag variants tuned separately ("" = plain)
    revision  bump when a host-side change alters what a stored config means (part of the hash)
    shape_knobs  knobs that follow the call's shape, not a tuned entry of another shape (dispatch)
    """

    name: str = ""
    op: str = ""
    kernel: str = "fwd"
    space: dict[str, list] = {}
    dims: tuple[str, ...] = ()
    workload: list[dict[str, int]] = []
    quick_workload: list[dict[str, int]] = []
    dtypes: tuple[str, ...] = ("bf16",)
    flags: tuple[str, ...] = ("",)
    # Whether the work runs on tensor cores (matmul-shaped) or CUDA cores (scans): picks the
    # compute roof a roofline judges it against.
    tensor_cores: bool = True
    # Shapes small enough to verify and tune under the CPU interpreter (tests, `--device cpu`).
    cpu_workload: list[dict[str, int]] = []
    revision: int = 0
    # Knobs that size the launch to the call rather than pick a kernel variant (how many segments
    # a long sequence is cut into, so that B·H programs fill the GPU). Dispatch takes them from
    # default_for at the call's shape when the tuned entry it uses was tuned at another shape.
    shape_knobs: tuple[str, ...] = ()

    # --- the search space ---------------------------------------------------------------
    def default_config(self, shape: Shape, gpu: "GPUProfile | None" = None) -> Config:
        """Heuristic default: what dispatch launches when nothing tuned applies."""
        raise NotImplementedError

    def default_for(self, shape: Shape, gpu: "GPUProfile | None" = None, flags: str = "") -> Config:
        """The default for one variant (``flags``): ``default_config`` unless the template's best
        tiles differ between its variants (e.g. when a variant takes other kernels)."""
        return self.default_config(shape, gpu)

    def candidates(self, shape: Shape, gpu: "GPUProfile | None" = None) -> list[Config]:
        """Partial configs (merged over the default) that every TPE study measures right after the
        default and the shipped winner: alternatives the sampler would rarely draw, e.g. another
        algorithm behind a knob that only pays with its own tiles."""
        return []

    def outside_space(self, config: Config, shape: Shape, gpu: "GPUProfile | None" = None,
                      flags: str = "") -> str | None:
        """Why ``config`` holds a value no trial could have run (not in the space, and not the
        default's at ``shape``; compared with its type) or a knob neither the space nor the default
        names, or None. Knobs only the default names are not judged here."""
        if not isinstance(config, dict):
            return f"config must be a dict of knob values; got {type(config).__name__}"
        default = None
        for name, value in config.items():
            known = [space[name] for space in self.subspaces() if name in space]
            # typed: 32.0 == 32 and True == 1, but a float tile or a bool warp count never ran
            if known and any(_same_value(value, v) for values in known for v in values):
                continue
            if default is None:
                default = self.default_for(shape, gpu, flags)
            if not known:
                if name in default:
                    continue   # a knob the default sets outside the space: not judged
                knobs = sorted({k for space in self.subspaces() for k in space} | set(default))
                return f"{name!r} is not a knob of {self.name} (knobs: {', '.join(knobs)})"
            if not (name in default and _same_value(value, default[name])):
                choices = sorted({v for values in known for v in values}, key=str)
                return f"{name}={value!r} is not one of the template's values {choices}"
        return None

    def check_config(self, config: Config, shape: Shape, gpu: "GPUProfile | None" = None) -> str | None:
        """Why ``config`` cannot run ``shape`` on ``gpu`` (divisibility, shared memory, registers),
        or None when it can. Called before compiling, and by dispatch on every new shape."""
        return None

    def canonical(self, config: Config) -> Config:
        """The config with parameters that do not apply dropped (e.g. CUDA-only knobs on a Triton
        config), so two trials that launch the same kernel are recognised as one."""
        return dict(config)

    def at_call_shape(self, config: Config, tuned_shape: Shape, shape: Shape, gpu: "GPUProfile | None" = None,
                      flags: str = "") -> Config:
        """``config``, tuned at ``tuned_shape``, as it runs at ``shape``: its ``shape_knobs`` from
        :meth:`default_for` there (dispatch and the tuner's warm starts read stored entries so)."""
        if not self.shape_knobs or dict(tuned_shape) == dict(shape):
            return dict(config)
        default = self.default_for(shape, gpu, flags)
        return {**config, **{knob: default[knob] for knob in self.shape_knobs if knob in default}}

    def over_default(self, config: Config, default: Config) -> Config:
        """A partial config (a stored winner from before a knob was added, a candidate) with the
        knobs it lacks taken from ``default``; canonical, so one on another backend than the
        default's keeps none of the default backend's keys."""
        return self.canonical({**default, **config})

    def subspaces(self) -> list[dict[str, list]]:
        """The space as a union of products whose canonical configs cover it. A template whose
        knobs apply only under some value of another (a backend's) lists one product per case, so
        that :meth:`grid` never walks the joint product of knobs that never vary together."""
        return [self.space]

    def grid(self, shape: Shape, gpu: "GPUProfile | None" = None) -> list[Config]:
        """Every distinct valid config of the space for ``shape`` (see :meth:`grid_size_bound`
        before listing a large space: this walks all of it)."""
        return list(self.iter_grid(shape, gpu))

    def iter_grid(self, shape: Shape, gpu: "GPUProfile | None" = None) -> Iterator[Config]:
        """:meth:`grid` one config at a time, in the same order."""
        seen = set()
        for space in self.subspaces():
            keys = list(space)
            for values in itertools.product(*(space[k] for k in keys)):
                config = self.canonical(dict(zip(keys, values)))
                key = tuple(sorted(config.items()))
                if key in seen:
                    continue
                seen.add(key)
                if self.check_config(config, shape, gpu) is None:
                    yield config

    def grid_size_bound(self) -> int:
        """An upper bound on ``len(grid(...))`` without walking the space: the sizes of the
        subspaces' products (a many-knob space holds millions of configs)."""
        return sum(math.prod(len(values) for values in space.values()) for space in self.subspaces())

    def complexity(self, config: Config) -> float:
        """Smaller is simpler; breaks ties between configs timed within 2% of each other."""
        return sum(float(v) for v in config.values() if isinstance(v, (int, float)) and not isinstance(v, bool))

    # --- models -----------------------------------------------------------------------------
    def flops(self, shape: Shape, dtype: str, flags: str = "") -> float:
        """Floating-point operations of one launch (real work only, no padding)."""
        raise NotImplementedError

    def bytes(self, shape: Shape, dtype: str, flags: str = "") -> float:
        """Fewest bytes that must cross device memory: each input read once, each output written once."""
        raise NotImplementedError

    # --- running and checking -----------------------------------------------------------------
    def make_inputs(self, shape: Shape, dtype: str, flags: str, device: str | torch.device,
                    generator: torch.Generator) -> Tensors:
        """Fresh random inputs (never zeros) for one launch; ``generator`` is a seeded CPU generator."""
        raise NotImplementedError

    def allocate_outputs(self, inputs: Tensors, shape: Shape, dtype: str, flags: str) -> Tensors:
        """Output buffers the launch writes into; the tuner fills them with NaN before verifying."""
        raise NotImplementedError

    def launch(self, config: Config, inputs: Tensors, outputs: Tensors, shape: Shape, flags: str) -> None:
        """Run the kernel(s) with ``config``, writing ``outputs``."""
        raise NotImplementedError

    def reference(self, inputs: Tensors, shape: Shape, flags: str) -> Tensors:
        """The same outputs in float64, from the family's reference (kernelgen/reference)."""
        raise NotImplementedError

    def verification_shape(self, shape: Shape) -> dict[str, int]:
        """Shape a tuning trial verifies on. The tuned shape by default; a template whose float64
        reference is too costly at full size may shrink batch-like dims (never the tiled ones)."""
        return dict(shape)

    def tolerance(self, dtype: str, output: str) -> float:
        """Largest accepted ‖out − ref‖ / ‖ref‖ for ``output`` at ``dtype``."""
        return {"fp32": 1e-4, "fp16": 5e-3, "bf16": 3e-2}[dtype]

    # --- identity -------------------------------------------------------------------------
    def source_files(self) -> list[Path]:
        """Files that hold the kernel source (see :meth:`source_hash` for what of them counts)."""
        return [Path(inspect.getfile(type(self)))]

    def source_hash(self) -> str:
        """What a tuned config was measured against: the kernels of ``source_files()`` (for a
        Python file its ``@triton.jit`` functions and ``tl.constexpr`` constants, see
        :func:`kernel_source`; a CUDA source without its comments, :func:`c_source_code`; a
        CuPy launcher module whole), the search space and
        ``revision``. Host code (launchers, models, docs) is left out, so editing it keeps stored
        configs current; an edit that changes what a config *means* bumps ``revision``.
        Computed once per process (dispatch compares it on first use)."""
        cached = self.__dict__.get("_source_hash")
        if cached is None:
            digest = hashlib.sha256()
            for path in self.source_files():
                path = Path(path)
                digest.update(kernel_source(path) if path.suffix == ".py" else c_source_code(path))
            digest.update(repr(self.subspaces()).encode())
            digest.update(f"revision {self.revision}".encode())
            cached = self.__dict__["_source_hash"] = digest.hexdigest()[:16]
        return cached

    def shape_of(self, **sizes: int) -> dict[str, int]:
        """The bucket dict for the actual sizes of a call (only ``dims`` are kept)."""
        return {d: int(sizes[d]) for d in self.dims}

    def __repr__(self) -> str:
        return f"<Template {self.name}>"


def _same_value(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _last_name(node: ast.AST) -> str:
    """``jit`` for ``triton.jit``, ``jit`` or ``triton.jit(...)``: the name a decorator or call ends in."""
    target = node.func if isinstance(node, ast.Call) else node
    return target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")


def _is_kernel(node: ast.AST) -> bool:
    """A ``@triton.jit`` (or ``@jit``, ``@triton.jit(...)``) function definition."""
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
        any(_last_name(decorator) == "jit" for decorator in node.decorator_list)


def _is_constexpr(node: ast.AST) -> bool:
    """A module-level ``NAME = tl.constexpr(...)``: a value kernels read as a compile-time constant."""
    return isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call) and \
        _last_name(node.value) == "constexpr"


def kernel_source(path: Path) -> bytes:
    """The code of a Python module's kernels: its ``@triton.jit`` functions (decorators included,
    comments, docstrings and blank lines not) and module-level ``tl.constexpr`` constants, in file
    order, each without its position in the file. Kernels defined inside a function (a kernel
    factory) count too. Everything else (host launchers, templates, docs) is left out of the
    template hash. A module without Triton kernels (the CuPy launcher of a CUDA source: its compile
    options and template arguments shape the kernel) counts whole."""
    text = Path(path).read_text()
    lines = text.splitlines()
    tree = ast.parse(text)
    kernels = [node for node in ast.walk(tree) if _is_kernel(node)]
    if not kernels:
        return text.encode()
    chosen = kernels + [node for node in tree.body if _is_constexpr(node)]
    pieces = []
    for node in sorted(chosen, key=lambda n: n.lineno):
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        pieces.append(_python_code(textwrap.dedent("\n".join(lines[first - 1:node.end_lineno]))))
    return "\n\n".join(pieces).encode()


def _python_code(source: str) -> str:
    """A kernel's source without its comments, docstrings and blank lines (indentation kept: it is
    code in Python), so editing a kernel's prose keeps tuned configs current."""
    lines = source.splitlines()
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row, col = token.start
            comments[row] = min(col, comments.get(row, col))
    kept = []
    for row, line in enumerate(lines, start=1):
        if row in docstrings:
            continue
        line = line[:comments[row]] if row in comments else line
        if line.strip():
            kept.append(line.rstrip())
    return "\n".join(kept)


# A C/C++/CUDA comment or a string / character literal (kept: "//" inside a literal is not a comment).
_C_COMMENT_OR_LITERAL = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)


def c_source_code(path: Path) -> bytes:
    """A CUDA / C++ source without its comments, blank lines and indentation: editing a comment
    keeps tuned configs current, any change to the code makes them stale."""
    def keep_literals(match: re.Match) -> str:
        text = match.group(0)
        return text if text[0] in "\"'" else ""
    code = _C_COMMENT_OR_LITERAL.sub(keep_literals, Path(path).read_text())
    return "\n".join(line.strip() for line in code.splitlines() if line.strip()).encode()


# Imported late for type hints only (hardware imports nothing from here).
from kernelgen.hardware import GPUProfile  # noqa: E402
