#!/usr/bin/env bash
# Round 184 (session 20): sliding-window forward at D = 128 W = 512 with four programs an SM
# (32-key blocks on 2 stages: 49 KB of shared memory, 128 registers) against the shipped three
# (3 stages, 66 KB), each row twice, interleaved; and 128-query blocks on 4 warps (255 registers).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.limit,temperature.gpu --format=csv
for S in B=8,T=4096,HQ=16,H=16,D=128,W=512 B=1,T=65536,HQ=16,H=16,D=128,W=512; do
C='[{"BLOCK_N":32},{"BLOCK_N":32,"num_stages":2},{"BLOCK_N":32},{"BLOCK_N":32,"num_stages":2},{"BLOCK_N":32,"num_stages":4},{"BLOCK_N":32,"BLOCK_M":128,"num_stages":2}]'
timeout 200 python3 -m kernelgen.tune.probe --template sliding_window_attention.fwd --shape $S --configs "$C" --kernels 2>&1 | grep -v -i warn | cut -c1-220
done
