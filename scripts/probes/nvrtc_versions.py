"""Which libnvrtc each candidate is, which one CuPy loaded, and whether each compiles the shipped
selective-scan instantiations (round 202: the CI check failed on the GPU image's first NVRTC)."""
import ctypes
import glob
import os
import sys

from kernelgen import cuda_jit
from kernelgen.templates import selective_scan_cuda as ssc

sys.path.insert(0, "tests")
from test_selective_scan_cuda import shipped_instantiations  # noqa: E402

candidates = []
for base in sys.path:
    candidates += sorted(glob.glob(os.path.join(base, "nvidia", "*", "lib", "libnvrtc.so*")))
candidates += sorted(glob.glob("/usr/local/cuda*/lib*/libnvrtc.so*"))
candidates = [c for c in dict.fromkeys(candidates) if "builtins" not in os.path.basename(c)]
print("first pick:", cuda_jit._nvrtc_library())
try:
    from cupy.cuda import nvrtc
    print("cupy nvrtc version", nvrtc.getVersion())
    with open("/proc/self/maps") as maps:
        print("cupy loaded:", sorted({l.split()[-1] for l in maps if "libnvrtc" in l}))
except Exception as error:
    print("cupy:", error)
exprs = shipped_instantiations()
for path in candidates:
    try:
        lib = ctypes.CDLL(path)
        major, minor = ctypes.c_int(), ctypes.c_int()
        lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        cuda_jit._nvrtc_library = lambda lib=lib: lib
        try:
            cuda_jit.nvrtc_check(ssc.SOURCE, exprs, arch="sm_90")
            result = "compiles all"
        except Exception as error:
            result = "FAILS: " + str(error).splitlines()[1][:200]
        print(f"{path}: {major.value}.{minor.value}: {result}")
    except OSError as error:
        print(path, error)
