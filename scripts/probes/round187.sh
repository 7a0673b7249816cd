#!/usr/bin/env bash
# Round 187 (session 20): the sliding-window bench with the final entries (64-query dK/dV steps in
# the D = 128 backward entries), twice on one machine.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,temperature.gpu --format=csv
for run in 1 2; do
timeout 250 python3 bench.py --op sliding_window_attention --json $OUT/session20-h100-sliding_window_attention-run$run.json 2>&1 | grep -v -i warn | grep "| kernelgen:\|flex\|fla " | cut -c1-200
done
