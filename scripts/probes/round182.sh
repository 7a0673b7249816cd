#!/usr/bin/env bash
# Round 182 (session 20): the sliding-window dK/dV kernel on 64-query steps with 4 warps (the
# products with queries as N at N = 64, not 32): ptxas fits it in 255 registers, spilling only
# outside the loop, but the register model's budget (224) had kept it out of every study.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.limit --format=csv
S=B=8,T=4096,HQ=16,H=16,D=128,W=512
C='[{"stages_kv":3},{"BLOCK_M_KV":64},{"BLOCK_M_KV":64,"stages_kv":1},{"BLOCK_M_KV":64,"BLOCK_N_KV":128,"warps_kv":8},{"BLOCK_M_KV":64,"TMA":0},{"stages_kv":3}]'
timeout 240 python3 -m kernelgen.tune.probe --template sliding_window_attention.bwd --shape $S --configs "$C" --kernels 2>&1 | grep -v -i warn | cut -c1-220
S=B=1,T=65536,HQ=16,H=16,D=128,W=512
C='[{"BLOCK_M_KV":64},{"BLOCK_M_KV":64,"stages_kv":1}]'
timeout 150 python3 -m kernelgen.tune.probe --template sliding_window_attention.bwd --shape $S --configs "$C" --kernels 2>&1 | grep -v -i warn | cut -c1-220
