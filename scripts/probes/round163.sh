#!/usr/bin/env bash
# Round 163 (session 18): the sliding-window bench once more with the shipped state (round 161's
# entries, ANCHOR 2 dropped), in a call of its own: rounds 158-161 read the same forward 0.70-0.78
# ms at T = 65536.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
nvidia-smi --query-gpu=clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv
echo "## bench"; timeout 240 python3 bench.py --op sliding_window_attention --json $OUT/session18-h100-sliding_window_attention.json 2>&1 | grep "│" | grep -v "│  *│  *│  *│  *│ [a-z(]" | cut -c1-200
nvidia-smi --query-gpu=clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv
