"""CUDA templates compiled at run time: a ``.cu`` file of templated kernels, instantiated by name.

A kernel is named by a C++ name expression (``"my_kernel<BFloat16, 16, 4>"``); the first launch
compiles the source through CuPy's ``RawModule`` (NVRTC) with that expression, and the loaded
function is cached in this process by (source hash, expression, options, device, arch). CuPy
keeps its own on-disk cache of compiled modules (``CUPY_CACHE_DIR``), so a new process with the
same instantiation skips NVRTC. Kernels run on torch tensors (raw ``data_ptr`` arguments) on
torch's current stream. CuPy is imported only when a kernel is launched, so importing this
module never needs CuPy or a GPU.

The module also compile-checks a source without a GPU (``nvcc_check`` and ``nvrtc_check``) for CI.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

# -std=c++17 is also NVRTC's default; naming it keeps nvcc checks and NVRTC builds alike. CuPy
# adds the -arch option for the device it compiles on.
DEFAULT_OPTIONS: tuple[str, ...] = ("-std=c++17",)
# What CuPy (14.2 on the lent H100; seen by spying on its nvrtc.compileProgram) adds to every
# RawModule compile: flush-to-zero, and device code as the default execution space. The latter
# lets a kernel hold a generic lambda, which NVRTC 13.0 refuses without it (13.5 takes it either
# way). nvrtc_check passes both so that it compiles what a launch compiles; launches leave them
# to CuPy (passing one twice is an error).
CUPY_NVRTC_OPTIONS: tuple[str, ...] = ("-ftz=true", "--device-as-default-execution-space")


class CudaSource:
    """One ``.cu`` template file; its text and hash are read once."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @functools.cached_property
    def text(self) -> str:
        return self.path.read_text()

    @functools.cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"<CudaSource {self.path.name} {self.digest}>"


@functools.lru_cache(maxsize=None)
def cuda_unavailable_reason() -> str | None:
    """None when CuPy and a CUDA GPU are usable, else one sentence saying what is missing."""
    try:
        import cupy  # noqa: F401
    except ImportError as error:
        return (f"CuPy is not installed ({error}); install cupy-cuda12x or cupy-cuda13x "
                "matching your CUDA driver to use the CUDA templates")
    except Exception as error:  # a broken CuPy install raises all sorts of things
        return f"CuPy failed to import: {error}"
    import torch
    if not torch.cuda.is_available():
        return "torch sees no CUDA GPU, so the CUDA templates cannot run"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:
        return f"CuPy cannot reach the CUDA driver: {error}"
    if count == 0:
        return "CuPy sees no CUDA GPU"
    return None


# --- compiling and launching ------------------------------------------------------------------

_lock = threading.Lock()
_functions: dict[tuple, Any] = {}     # (digest, expression, options, device, arch) -> cupy Function
_archs: dict[int, str] = {}           # device index -> compute capability ("90")
_streams: dict[tuple[int, int], Any] = {}


class CudaCompileError(RuntimeError):
    """NVRTC rejected an instantiation; the message carries the compiler log."""


def compiled_function(source: CudaSource, name_expression: str, device_index: int,
                      options: Sequence[str] = DEFAULT_OPTIONS) -> Any:
    """The loaded kernel ``name_expression`` of ``source`` on device ``device_index``: compiled on
    first use (CuPy adds -arch for the device), then one dict lookup."""
    arch = _archs.get(device_index)
    if arch is None:
        import cupy
        arch = _archs[device_index] = cupy.cuda.Device(device_index).compute_capability
    key = (source.digest, name_expression, tuple(options), device_index, arch)
    function = _functions.get(key)
    if function is None:
        with _lock:
            function = _functions.get(key)
            if function is None:
                function = _functions[key] = _compile(source, name_expression, device_index, tuple(options), arch)
    return function


def _compile(source: CudaSource, name_expression: str, device_index: int, options: tuple[str, ...],
             arch: str) -> Any:
    import cupy
    with cupy.cuda.Device(device_index):
        try:
            module = cupy.RawModule(code=source.text, options=options, name_expressions=[name_expression])
            return module.get_function(name_expression)   # NVRTC runs here (or CuPy's disk cache answers)
        except cupy.cuda.compiler.CompileException as error:
            raise CudaCompileError(f"{source.path.name}: NVRTC could not compile {name_expression} for "
                                   f"sm_{arch} with {' '.join(options)}:\n{error}") from error


def _torch_stream(device_index: int) -> Any:
    """torch's current stream on ``device_index`` as a CuPy stream object (cached per pointer)."""
    import cupy
    import torch
    from kernelgen.launch import current_stream_handle
    pointer = current_stream_handle(torch.device("cuda", device_index))
    key = (device_index, pointer)
    stream = _streams.get(key)
    if stream is None:
        try:
            stream = cupy.cuda.ExternalStream(pointer, device_index)
        except TypeError:  # older CuPy: no device argument
            stream = cupy.cuda.ExternalStream(pointer)
        _streams[key] = stream
    return stream


def launch(source: CudaSource, name_expression: str, grid: tuple[int, ...], block: tuple[int, ...],
           args: Sequence[Any], device: Any, shared_mem: int = 0,
           options: Sequence[str] = DEFAULT_OPTIONS) -> None:
    """Launch ``name_expression`` of ``source`` with ``args`` (from :func:`pointer`, :func:`i32`,
    :func:`f32`) on ``device``'s current torch stream."""
    import cupy
    index = device.index
    if index is None:
        import torch
        index = torch.cuda.current_device()
    function = compiled_function(source, name_expression, index, options)
    stream = _torch_stream(index)
    if cupy.cuda.runtime.getDevice() == index:
        function(tuple(grid), tuple(block), tuple(args), shared_mem=shared_mem, stream=stream)
    else:
        with cupy.cuda.Device(index):
            function(tuple(grid), tuple(block), tuple(args), shared_mem=shared_mem, stream=stream)


def pointer(tensor: Any) -> np.uint64:
    """A tensor's device address as a kernel argument (0, a null pointer, for None)."""
    return np.uint64(0 if tensor is None else tensor.data_ptr())


def i32(value: int) -> np.int32:
    return np.int32(value)


def f32(value: float) -> np.float32:
    return np.float32(value)


# --- compile checks without a GPU -------------------------------------------------------------

def instantiation_unit(source: CudaSource, name_expressions: Sequence[str]) -> str:
    """A translation unit that includes ``source`` and forces every expression to instantiate."""
    refs = ",\n    ".join(f"(const void*)&{expr}" for expr in name_expressions)
    return (f'#include "{source.path.resolve()}"\n'
            f"const void* kernelgen_instances[] = {{\n    {refs}\n}};\n")


def nvcc_path() -> str | None:
    return shutil.which("nvcc")


def nvcc_check(source: CudaSource, name_expressions: Sequence[str], arch: str = "sm_90",
               options: Sequence[str] = DEFAULT_OPTIONS, timeout: float = 600) -> str:
    """Compile every instantiation with nvcc (through ptxas, so register allocation runs too).
    Returns ptxas's resource report; raises CudaCompileError with the log on failure."""
    nvcc = nvcc_path()
    if nvcc is None:
        raise FileNotFoundError("nvcc is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        unit = Path(tmp) / "instances.cu"
        unit.write_text(instantiation_unit(source, name_expressions))
        command = [nvcc, *options, f"-arch={arch}", "-Xptxas", "-v", "-c", "-o", str(Path(tmp) / "instances.o"),
                   str(unit)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise CudaCompileError(f"nvcc failed on {source.path.name} ({' '.join(command)}):\n"
                               f"{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def _nvrtc_library() -> ctypes.CDLL | None:
    candidates = []
    found = ctypes.util.find_library("nvrtc")
    if found:
        candidates.append(found)
    for base in sys.path:   # pip's nvidia-cuda-nvrtc wheels (cu12: nvidia/cuda_nvrtc, cu13: nvidia/cu13)
        candidates += sorted(glob.glob(os.path.join(base, "nvidia", "*", "lib", "libnvrtc.so*")))
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    candidates += sorted(glob.glob(os.path.join(cuda_home, "lib*", "libnvrtc.so*")))
    for candidate in candidates:
        if "builtins" in os.path.basename(candidate):
            continue
        try:
            return ctypes.CDLL(candidate)
        except OSError:
            continue
    return None


def nvrtc_available() -> bool:
    return _nvrtc_library() is not None


def nvrtc_check(source: CudaSource, name_expressions: Sequence[str], arch: str = "sm_90",
                options: Sequence[str] = DEFAULT_OPTIONS) -> dict[str, str]:
    """Compile ``source`` with NVRTC (the library CuPy uses) as a launch would (``options`` and the
    ones CuPy adds, CUPY_NVRTC_OPTIONS), without a GPU. Returns name expression -> lowered
    (mangled) name; raises CudaCompileError with the log."""
    lib = _nvrtc_library()
    if lib is None:
        raise FileNotFoundError("libnvrtc is not installed (pip install nvidia-cuda-nvrtc)")
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    program = ctypes.c_void_p()

    def check(result: int, what: str) -> None:
        if result != 0:
            raise CudaCompileError(f"{what}: {lib.nvrtcGetErrorString(result).decode()}")

    check(lib.nvrtcCreateProgram(ctypes.byref(program), source.text.encode(), source.path.name.encode(),
                                 0, None, None), "nvrtcCreateProgram")
    try:
        for expr in name_expressions:
            check(lib.nvrtcAddNameExpression(program, expr.encode()), f"nvrtcAddNameExpression({expr})")
        added = [o for o in CUPY_NVRTC_OPTIONS if o not in options]
        opts = [o.encode() for o in (*options, *added, f"-arch={arch}")]
        result = lib.nvrtcCompileProgram(program, len(opts), (ctypes.c_char_p * len(opts))(*opts))
        if result != 0:
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetProgramLog(program, log)
            raise CudaCompileError(f"NVRTC failed on {source.path.name} with {' '.join(o.decode() for o in opts)}:\n"
                                   f"{log.value.decode(errors='replace')}")
        lowered = {}
        for expr in name_expressions:
            name = ctypes.c_char_p()
            check(lib.nvrtcGetLoweredName(program, expr.encode(), ctypes.byref(name)), f"nvrtcGetLoweredName({expr})")
            lowered[expr] = name.value.decode()
        return lowered
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))
