"""Run loglinear_attention's forward once per config at a small bf16 shape (for compute-sanitizer):
``compute-sanitizer --tool memcheck python3 ll_sanitize.py '[{...}, ...]'``."""
import json
import sys
import torch
from kernelgen.templates import loglinear_attention as tmpl

T, K = 1024, 128
template = tmpl.LogLinearForward()
shape = dict(B=1, T=T, H=2, K=K, V=K, L=11)
gen = torch.Generator().manual_seed(0)
inputs = template.make_inputs(shape, "bf16", "", "cuda", gen)
for partial in json.loads(sys.argv[1]):
    config = {**template.default_config(shape), **partial}
    outputs = template.allocate_outputs(inputs, shape, "bf16", "")
    template.launch(config, inputs, outputs, shape, "")
    torch.cuda.synchronize()
    print("ran", partial, flush=True)
