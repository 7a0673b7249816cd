#!/usr/bin/env bash
# Round 188 (session 20): the dQ kernel on one stage (64 KB: three programs an SM) against two;
# the D = 64 backward with the tiles the raised dK/dV budget admits (128 keys on 4 warps).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
S=B=8,T=4096,HQ=16,H=16,D=128,W=512
timeout 120 python3 -m kernelgen.tune.probe --template sliding_window_attention.bwd --shape $S --configs '[{"stages_q":1},{},{"stages_q":1}]' --kernels 2>&1 | grep -v -i warn | cut -c1-220
S=B=8,T=4096,HQ=16,H=16,D=64,W=128
timeout 120 python3 -m kernelgen.tune.probe --template sliding_window_attention.bwd --shape $S --configs '[{"BLOCK_M_KV":32,"BLOCK_M_Q":128,"BLOCK_N_KV":64,"BLOCK_N_Q":64,"FUSED":1,"TMA":0,"stages_kv":2,"stages_q":3,"warps_kv":4,"warps_q":4},{"BLOCK_M_KV":32,"BLOCK_M_Q":128,"BLOCK_N_KV":128,"BLOCK_N_Q":64,"FUSED":1,"TMA":0,"stages_kv":2,"stages_q":3,"warps_kv":4,"warps_q":4},{"BLOCK_M_KV":64,"BLOCK_M_Q":128,"BLOCK_N_KV":64,"BLOCK_N_Q":64,"FUSED":1,"TMA":0,"stages_kv":2,"stages_q":3,"warps_kv":4,"warps_q":4}]' --kernels 2>&1 | grep -v -i warn | cut -c1-220
