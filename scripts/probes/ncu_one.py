"""ncu target: one launch of a template (name, shape and partial config from argv, the config merged
over the default) between cudaProfilerStart/Stop, so ncu measures only that launch's kernels.
    ncu --profile-from-start off ... python3 scripts/probes/ncu_one.py sliding_window_attention.fwd \
        B=8,T=4096,HQ=16,H=16,D=128,W=512 '{}'"""
import json
import sys

import torch

from kernelgen.templates import get_template

template = get_template(sys.argv[1])
shape = {k: int(v) for k, v in (item.split("=") for item in sys.argv[2].split(","))}
config = {**template.default_config(shape), **json.loads(sys.argv[3])}
print(config, file=sys.stderr)
gen = torch.Generator().manual_seed(0)
inputs = template.make_inputs(shape, "bf16", "", "cuda", gen)
outputs = template.allocate_outputs(inputs, shape, "bf16", "")
template.launch(config, inputs, outputs, shape, "")
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStart()
template.launch(config, inputs, outputs, shape, "")
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStop()
