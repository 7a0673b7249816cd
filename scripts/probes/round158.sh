#!/usr/bin/env bash
# Round 158 (session 18): the sliding-window bench with the anchored forward and its re-tuned entries.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## bench"; timeout 500 python3 bench.py --op sliding_window_attention --json $OUT/session18-h100-sliding_window_attention.json 2>&1 | grep "│" | cut -c1-230
