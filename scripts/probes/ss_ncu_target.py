"""ncu target: the selective-scan CUDA forward (channel layout, the tuned config) at the issue's
shape, one launch between cudaProfilerStart/Stop (session 5: where do 0.61 ms go against the
0.29 ms exp-unit floor?). ncu --profile-from-start off ... python3 scripts/probes/ss_ncu_target.py"""
import torch

from kernelgen.dispatch import config_for
from kernelgen.templates import get_template

template = get_template("selective_scan.fwd")
shape = {"batch": 8, "dim": 2048, "L": 4096, "N": 16}
gen = torch.Generator().manual_seed(0)
inputs = template.make_inputs(shape, "bf16", "", "cuda", gen)
outputs = template.allocate_outputs(inputs, shape, "bf16", "")
config = config_for(template, shape, torch.bfloat16, "", torch.device("cuda"))
print(config)
template.launch(config, inputs, outputs, shape, "")
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStart()
template.launch(config, inputs, outputs, shape, "")
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStop()
