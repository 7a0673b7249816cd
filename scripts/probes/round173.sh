#!/usr/bin/env bash
# Round 173 (session 19): the sliding-window backward at B=8 D=128 W=512 split by kernel (dQ with
# delta, dK/dV), and dQ / dK/dV tiles the 20-trial study may not have drawn.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
S=B=8,T=4096,HQ=16,H=16,D=128,W=512
C='[{},{"BLOCK_M_Q":128,"warps_q":8},{"BLOCK_M_Q":128,"warps_q":8,"BLOCK_N_Q":32},{"stages_q":3},{"BLOCK_N_KV":128,"warps_kv":8},{"BLOCK_N_KV":128,"warps_kv":8,"BLOCK_M_KV":64},{"BLOCK_M_KV":64,"warps_kv":8},{"stages_kv":3},{}]'
timeout 300 python3 -m kernelgen.tune.probe --template sliding_window_attention.bwd --shape $S --configs "$C" --kernels 2>&1 | grep -v -i warn | cut -c1-220
