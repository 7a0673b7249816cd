#!/usr/bin/env bash
# Round 186 (session 20): the sliding-window dQ kernel on 128-key steps (N = 128 in its two
# products over keys; outside the search space so far: ptxas 238 registers, no spill, 96 KB on one
# stage), next to the shipped 64-key steps; rows interleaved.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
for S in B=8,T=4096,HQ=16,H=16,D=128,W=512 B=1,T=65536,HQ=16,H=16,D=128,W=512; do
C='[{"BLOCK_N_Q":128,"stages_q":1},{"BLOCK_N_Q":128,"stages_q":2},{},{"BLOCK_N_Q":128,"stages_q":1},{"stages_kv":3}]'
timeout 200 python3 -m kernelgen.tune.probe --template sliding_window_attention.bwd --shape $S --configs "$C" --kernels 2>&1 | grep -v -i warn | cut -c1-220
done
