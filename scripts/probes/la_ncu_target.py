"""ncu target: the linear-attention dq and dk passes with and without the decay gradient's
row/column terms (NEED_R), one launch each between cudaProfilerStart/Stop (session 5).
ncu --profile-from-start off ... python3 scripts/probes/la_ncu_target.py"""
import torch

from kernelgen.templates import linear_attention as la

from la_target import K, backward_default, target_inputs

q, k, v, do, g = target_inputs()
config = backward_default("g")


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
