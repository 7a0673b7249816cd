"""ncu target: the linear-attention dq and dk passes with and without the decay gradient's
row/column terms (NEED_R), one launch each between cudaProfilerStart/Stop (session 5).
ncu --profile-from-start off ... python3 scripts/probes/la_ncu_target.py"""
import torch

from kernelgen.templates import get_template
from kernelgen.templates import linear_attention as la

B, T, H, K, V = 8, 4096, 16, 128, 128
gen = torch.Generator(device="cuda").manual_seed(0)
q, k, v, do = (torch.randn(B, T, H, d, device="cuda", generator=gen, dtype=torch.bfloat16) for d in (K, K, V, V))
g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, device="cuda", generator=gen) + 2.0)
config = get_template("linear_attention.bwd").default_for({"B": B, "T": T, "H": H, "K": K, "V": V, "F": K}, None, "g")


def run(**need):
    la.backward(q, k, v, g, None, K ** -0.5, None, False, None, None, None, None, do,
                None, None, None, None, None, config, need_dv=False, **need)


run(need_dq=True, need_dk=True)
run(need_dq=False, need_dk=False, need_dg=True)
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStart()
run(need_dq=True, need_dk=True)                    # dq, dk passes without the dg terms
run(need_dq=False, need_dk=False, need_dg=True)    # the same passes with NEED_R (+ the dg scan)
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStop()
