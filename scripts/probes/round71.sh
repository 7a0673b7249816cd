#!/usr/bin/env bash
# Round 71 (session 10): the full loglinear bench with round 70's entries.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
echo "## bench"; timeout 280 python3 bench.py --op loglinear_attention --json $OUT/bench-loglinear_attention-full.json 2>&1 | grep -v -i warn | grep " | " | cut -c1-200
