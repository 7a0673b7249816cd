#!/usr/bin/env bash
# Round 18 (session 5): linear-attention quick bench, forward and forward+backward, with the
# flash-linear-attention peers side by side (tuned entries from round 17).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
for mode in fwd fwd+bwd; do
  echo "## la bench $mode"; timeout 280 python3 bench.py --quick --graphs --mode $mode --op linear_attention --json $OUT/bench-la-${mode/+/-}.json 2>&1 | grep " | " | cut -c1-230
done
