#!/usr/bin/env bash
# Round 57 (session 9): the full loglinear_attention bench (all four issue shapes, peers side by
# side) with round 56's entries.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
timeout 280 python3 bench.py --op loglinear_attention --json $OUT/bench-loglinear_attention-full.json 2>&1 | grep -v -i warn | grep " | " | cut -c1-200
