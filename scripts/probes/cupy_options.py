"""The options CuPy adds to an NVRTC compile (round 204): its compiler's source lines around them,
and the options a RawModule compile actually passes (nvrtc.compileProgram spied)."""
import inspect

import cupy
from cupy.cuda import compiler, nvrtc

print("cupy", cupy.__version__)
lines = inspect.getsource(compiler).splitlines()
for i, line in enumerate(lines):
    if "default-device" in line or "device-as-default" in line or "-ftz" in line:
        print(f"{i}: " + " | ".join(l.strip() for l in lines[max(0, i - 3):i + 2]))
seen = []
real = nvrtc.compileProgram


def spy(prog, options):
    seen.append(tuple(options))
    return real(prog, options)


nvrtc.compileProgram = spy
try:
    module = cupy.RawModule(code="extern \"C\" __global__ void k(float* x) { x[0] = 1.f; }", options=("-std=c++17",))
    module.get_function("k")
except Exception as error:
    print("compile:", error)
print("options seen:", seen)
