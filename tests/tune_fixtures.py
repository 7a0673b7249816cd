"""A tiny template for tuner tests: a real Triton kernel plus planted configs that misbehave.

variant "a" is correct at every block size. variant "b" is planted: block 16 hangs, block 32
raises (a compile error stand-in), block 64 writes a wrong answer, block 128 kills the worker.
"""
import os
import time

import torch
import triton
import triton.language as tl

from kernelgen.template import DTYPES, Template


@triton.jit
def _scale_shift_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr, OFFSET: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    x = tl.load(x_ptr + offsets, mask=mask)
    tl.store(y_ptr + offsets, 2.0 * x + 1.0 + OFFSET, mask=mask)


class ScaleShift(Template):
    name = "fake_scale_shift.fwd"
    op = "fake_scale_shift"
    kernel = "fwd"
    space = {"block": [16, 32, 64, 128], "variant": ["a", "b"]}
    dims = ("N",)
    workload = [{"N": 1000}]
    cpu_workload = [{"N": 100}]
    dtypes = ("fp32",)

    def default_config(self, shape, gpu=None):
        return {"block": 64, "variant": "a"}

    def check_config(self, config, shape, gpu=None):
        if config["block"] > 4096:
            return f"block {config['block']} exceeds 4096"
        return None

    def flops(self, shape, dtype, flags=""):
        return 2.0 * shape["N"]

    def bytes(self, shape, dtype, flags=""):
        return 8.0 * shape["N"]

    def make_inputs(self, shape, dtype, flags, device, generator):
        return {"x": torch.randn(shape["N"], generator=generator, dtype=DTYPES[dtype]).to(device)}

    def allocate_outputs(self, inputs, shape, dtype, flags):
        return {"y": torch.empty_like(inputs["x"])}

    def launch(self, config, inputs, outputs, shape, flags):
        block, planted = config["block"], config["variant"] == "b"
        if planted and block == 16:
            time.sleep(3600)
        if planted and block == 32:
            raise RuntimeError("planted compile error")
        if planted and block == 128:
            os._exit(9)
        n = shape["N"]
        _scale_shift_kernel[(triton.cdiv(n, block),)](inputs["x"], outputs["y"], n, BLOCK=block,
                                                      OFFSET=0.5 if planted else 0.0)

    def reference(self, inputs, shape, flags):
        return {"y": 2.0 * inputs["x"].double() + 1.0}


SCALE_SHIFT = ScaleShift()
