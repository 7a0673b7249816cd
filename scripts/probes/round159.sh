#!/usr/bin/env bash
# Round 159 (session 18): the sliding-window decode step, 0.109 ms in round 158's bench against
# SDPA's 0.064 (session 1: 0.062): device time or host time? Then its knobs around the default.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
python3 scripts/probes/swa_decode_host.py 2>&1 | grep -v -i warn
C='[{"SPLITS":16},{"SPLITS":32},{"num_stages":3},{"BLOCK_N":128},{"SPLITS":16,"num_stages":3}]'
timeout 120 python3 -m kernelgen.tune.probe --template sliding_window_attention.decode --shape B=8,HQ=32,H=8,D=128,W=4096 --configs "$C" --kernels 2>&1 | grep -v -i warn | cut -c1-160
