"""loglinear_attention forward through the op (shipped configs) at B=1 T=131072 K=V=128 and the
target shape, after stack_segment 0 became automatic (segments when the programs are few)."""
import torch, triton
import kernelgen
from kernelgen.bench.loglinear_attention import _inputs

for shape in ({"B": 1, "T": 131072, "H": 16, "K": 128, "V": 128, "L": 18},
              {"B": 8, "T": 4096, "H": 16, "K": 128, "V": 128, "L": 13}):
    q, k, v, g, lam = _inputs(shape, False)
    ms = triton.testing.do_bench(lambda: kernelgen.loglinear_attention(q, k, v, g, lam), warmup=5, rep=60)
    print(f"{shape}: fwd {ms:.3f} ms", flush=True)
