#!/usr/bin/env bash
# Round 93 (session 12): the full loglinear bench with round 92's entries.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## bench"; timeout 500 python3 bench.py --op loglinear_attention --json $OUT/bench-loglinear_attention-full.json 2>&1 | grep -v -i warn | grep " | " | cut -c1-200
