"""Does CuPy compile what the NVRTC CI check refuses? Each bwd channel instantiation alone, by both
routes; and what CuPy adds to the options (round 203)."""
import inspect
import sys

import cupy

from kernelgen import cuda_jit
from kernelgen.templates import selective_scan_cuda as ssc

sys.path.insert(0, "tests")
from test_selective_scan_cuda import shipped_instantiations  # noqa: E402

src = inspect.getsource(cupy.cuda.compiler)
for needle in ("default-device", "device-as-default", "extended-lambda", "expt-"):
    print(needle, needle in src)
exprs = shipped_instantiations()
for expr in [e for e in exprs if "bwd_channel" in e][:3] + [e for e in exprs if "fwd_channel" in e][:1]:
    try:
        cuda_jit.nvrtc_check(ssc.SOURCE, [expr], arch="sm_90")
        a = "ok"
    except Exception as error:
        a = "FAIL " + str(error).splitlines()[1][:100]
    try:
        module = cupy.RawModule(code=ssc.SOURCE.text, options=cuda_jit.DEFAULT_OPTIONS, name_expressions=[expr])
        module.get_function(expr)
        b = "ok"
    except Exception as error:
        b = "FAIL " + str(error).replace("\n", " ")[:160]
    print(f"{expr}: nvrtc_check {a} | cupy {b}")
for opts in (("-std=c++17", "-default-device"),):
    try:
        cuda_jit.nvrtc_check(ssc.SOURCE, exprs, arch="sm_90", options=opts)
        print(opts, "all ok")
    except Exception as error:
        print(opts, "FAIL", str(error).splitlines()[1][:160])
