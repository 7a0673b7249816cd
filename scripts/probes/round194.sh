#!/usr/bin/env bash
# Round 194 (session 21): the sliding-window forward's key block with the one-loop forward, A/B
# alternating in one worker: BLOCK_N 32 against 64 (the default) at B=8 and at T=65536 (whose entry
# took 32 in round 190's 3-trial study), three pairs each; then the same in the bench's B=8 row order.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
AB='[{"BLOCK_N": 32}, {"BLOCK_N": 64}, {"BLOCK_N": 32}, {"BLOCK_N": 64}, {"BLOCK_N": 32}, {"BLOCK_N": 64}]'
for shape in B=8,T=4096,HQ=16,H=16,D=128,W=512 B=1,T=65536,HQ=16,H=16,D=128,W=512; do
  timeout 150 python3 -m kernelgen.tune.probe --template sliding_window_attention.fwd --shape $shape \
    --configs "$AB" 2>&1 | grep -v -i warn | cut -c1-200
done
