"""Cached kernel launches: skip Triton's per-call argument binding once a kernel is compiled.

``JITFunction.run`` binds every argument, builds a specialization key and looks it up on every call
(57 to 84 us per launch on the lent H100's hosts, against 13 to 20 us for the compiled kernel's own
launcher; docs/PERF.md, "Session 6"). For small shapes, decode steps and eager training steps that is
most of the call. :func:`install` gives a Triton kernel a ``run`` that keys the launch on exactly
what Triton specializes on (each tensor's dtype and 16-byte alignment; each integer's class: equal
to 1, divisible by 16, 32- or 64-bit; every constexpr value; the launch options) and, on a hit,
calls the compiled kernel's launcher the way ``JITFunction.run`` ends (host TMA descriptors are
keyed on their base's dtype and block shape, as Triton types them). A miss, a warmup, a grid given
as a function, a launch or pre-run hook (a profiler's), or an argument of another kind (a Gluon
descriptor, a tuple) takes Triton's own path, so the result never differs from it.

Triton's interpreter (``TRITON_INTERPRET=1``) builds no ``JITFunction``; :func:`install` leaves its
kernels alone. Triton compilation knobs changed at run time (other than ``TRITON_DEBUG``) are not
part of the key: call :func:`clear` after changing one.
"""
from __future__ import annotations

import functools
import inspect
import operator
import threading
from types import ModuleType
from typing import Any

import torch

try:   # the GPU stack; without Triton's JIT (or under the interpreter) nothing is installed
    from triton import knobs as _knobs
    from triton.runtime.driver import driver as _driver
    from triton.runtime.jit import JITFunction
    from triton.tools.tensor_descriptor import TensorDescriptor as _TensorDescriptor
    _TRITON_RUN = JITFunction.run   # Triton's own launch path, before anyone patches the class
except ImportError:   # pragma: no cover - an older or partial Triton
    JITFunction = _TRITON_RUN = _TensorDescriptor = None

_launchers: list["CachedLauncher"] = []
_lock = threading.Lock()
_Tensor = torch.Tensor


def next_pow2(n: int) -> int:
    """triton.next_power_of_2 on the host (the smallest power of two >= n; 0 for n <= 0): that one
    is a constexpr function in recent Triton, ~5 us a call from Python like triton.cdiv."""
    n = int(n)
    return 1 << (n - 1).bit_length() if n > 0 else 0


def tma_loads(tensors) -> bool:
    """Whether tiles of ``tensors`` may come by tensor descriptor: contiguous tensors whose base
    and every stride but the last are 16-byte aligned (what a TMA descriptor of any 2-D view of
    them needs), on a GPU with the TMA unit (sm_90+; elsewhere a template's pointer path runs).
    The CPU interpreter runs descriptor loads too."""
    device = tensors[0].device
    if device.type == "cuda" and not _has_tma_unit(device.index if device.index is not None
                                                   else torch.cuda.current_device()):
        return False
    return all(x.is_contiguous() and x.data_ptr() % 16 == 0
               and all(stride * x.element_size() % 16 == 0 for stride in x.stride()[:-1]) for x in tensors)


@functools.lru_cache(maxsize=None)
def _has_tma_unit(device_index: int) -> bool:
    return torch.cuda.get_device_capability(device_index)[0] >= 9


class _Uncacheable(Exception):
    """An argument whose specialization this module does not model: use Triton's path."""


def current_stream_handle(device: torch.device) -> int:
    """The raw handle of torch's current stream on ``device`` (0 off CUDA): what Triton launches
    on, without building a ``torch.cuda.Stream`` object (~10 us a call on the host)."""
    if device.type != "cuda":
        return 0
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch._C._cuda_getCurrentRawStream(index)


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for launch grids on the host. triton.cdiv is a constexpr function in recent
    Triton, and calling it from Python costs ~5 us of argument unwrapping per call."""
    return -(-a // b)


def _arg_key(value: Any) -> Any:
    """What Triton specializes a non-constexpr argument on (a superset of it: never less)."""
    kind = type(value)
    if kind is int:   # == 1, divisible by 16, and its width
        return (value == 1, value % 16 == 0, -0x80000000 <= value <= 0x7FFFFFFF, value >= 1 << 63)
    if value is None:
        return None
    if kind is float:
        return float
    if kind is bool:
        return ("bool", value)
    if isinstance(value, _Tensor):   # dtype, and 16-byte alignment
        return (value.dtype, value.data_ptr() % 16 == 0)
    if kind is _TensorDescriptor:   # a host TMA descriptor: its base's dtype and its block shape
        return ("tensordesc", value.base.dtype, tuple(value.block_shape), value.padding,
                getattr(value, "round_f32_to_tf32", False))
    raise _Uncacheable(kind.__name__)


def _hooks_idle(hook) -> bool:
    # Triton 3.6+ keeps launch hooks in a HookChain that is empty unless a profiler added one.
    return hook is None or not getattr(hook, "calls", True)


class CachedLauncher:
    """Replaces ``kernel.run`` (the method ``kernel[grid](...)`` calls) with a cached launch.

    The key is (device, TRITON_DEBUG, every keyword argument's value in call order, each positional
    argument's :func:`_arg_key`). Keyword arguments must be constexprs or launch options (num_warps,
    num_stages, ...): a call passing a runtime parameter by keyword is never cached, so on a hit the
    keyword values are exactly the constexprs and options Triton compiled with."""

    def __init__(self, kernel: "JITFunction"):
        self.kernel = kernel
        self.names = list(kernel.arg_names)
        self.constexpr = frozenset(p.num for p in kernel.params if p.is_constexpr)
        # constexprs a call may leave out: Triton's binder gives them these values
        self.defaults = {p.name: p.default for p in kernel.params
                         if p.is_constexpr and p.default is not inspect.Parameter.empty}
        self.first_constexpr = min(self.constexpr, default=len(self.names))
        self.compiled: dict[tuple, tuple[Any, Any]] = {}   # key -> (compiled kernel, keyword getter)
        self.hits = 0

    def clear(self) -> None:
        self.compiled.clear()

    def triton_run(self, *args, **kwargs):
        return type(self.kernel).run(self.kernel, *args, **kwargs)

    def _keyword_getter(self, n_positional: int, kwargs: dict):
        """The parameters after the positional ones, all constexprs, each passed by keyword or left
        to its default, as a function of kwargs returning them in signature order; None if not so.
        (The cache key holds the keywords passed; those left out always take their defaults.)"""
        tail = self.names[n_positional:]
        if any(i not in self.constexpr for i in range(n_positional, len(self.names))):
            return None
        missing = [name for name in tail if name not in kwargs]
        if any(name not in self.defaults for name in missing):
            return None
        if missing:
            defaults = {name: self.defaults[name] for name in missing}
            return lambda kwargs: tuple([kwargs[name] if name in kwargs else defaults[name] for name in tail])
        if not tail:
            return lambda kwargs: ()
        if len(tail) == 1:
            return lambda kwargs: (kwargs[tail[0]],)
        return operator.itemgetter(*tail)

    def __call__(self, *args, grid, warmup, **kwargs):
        # A class-level patch of JITFunction.run (kernelgen.aot's compile-only capture) wins.
        if warmup or callable(grid) or self.kernel.pre_run_hooks or type(self.kernel).run is not _TRITON_RUN \
                or len(args) > self.first_constexpr:
            return self.triton_run(*args, grid=grid, warmup=warmup, **kwargs)
        runtime = _knobs.runtime
        if not (_hooks_idle(runtime.launch_enter_hook) and _hooks_idle(runtime.launch_exit_hook)):
            return self.triton_run(*args, grid=grid, warmup=warmup, **kwargs)
        device = _driver.active.get_current_device()
        try:
            key = (device, runtime.debug, tuple(kwargs.items()),
                   tuple([(a.dtype, a.data_ptr() % 16 == 0) if type(a) is _Tensor else _arg_key(a) for a in args]))
            entry = self.compiled.get(key)
        except (_Uncacheable, TypeError):   # TypeError: an unhashable constexpr or option
            return self.triton_run(*args, grid=grid, warmup=warmup, **kwargs)
        if entry is None:
            compiled = self.triton_run(*args, grid=grid, warmup=warmup, **kwargs)
            getter = self._keyword_getter(len(args), kwargs)
            if compiled is not None and getter is not None and not hasattr(compiled, "result"):
                self.compiled[key] = (compiled, getter)
            return compiled
        compiled, getter = entry
        self.hits += 1
        grid_1 = grid[1] if len(grid) > 1 else 1
        grid_2 = grid[2] if len(grid) > 2 else 1
        compiled.run(grid[0], grid_1, grid_2, _driver.active.get_current_stream(device), compiled.function,
                     compiled.packed_metadata, None, None, None, *args, *getter(kwargs))
        return compiled


def install(kernel: Any) -> bool:
    """Give one Triton kernel the cached launch; False (and no change) for anything else, e.g. a
    kernel of the interpreter or one already installed."""
    if JITFunction is None or not isinstance(kernel, JITFunction) or isinstance(kernel.__dict__.get("run"),
                                                                               CachedLauncher):
        return False
    launcher = CachedLauncher(kernel)
    kernel.run = launcher
    with _lock:
        _launchers.append(launcher)
    return True


def install_module(module: ModuleType) -> int:
    """:func:`install` every Triton kernel defined in ``module``; returns how many were installed."""
    return sum(install(value) for value in list(vars(module).values()))


def clear() -> None:
    """Forget every cached compiled kernel (after changing a Triton compilation knob)."""
    with _lock:
        for launcher in _launchers:
            launcher.clear()
