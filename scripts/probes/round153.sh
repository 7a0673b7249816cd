#!/usr/bin/env bash
# Round 153 (session 17): the whole loglinear bench with the re-tuned backward (round 152).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## bench"; timeout 300 python3 bench.py --op loglinear_attention --json $OUT/session17-h100-loglinear_attention.json 2>&1 | grep "│" | cut -c1-220
