#!/usr/bin/env bash
# Round 52 (session 8): the full loglinear_attention bench (all four issue shapes, peers side by
# side) with the shipped configs and defaults of rounds 49-51.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
timeout 230 python3 bench.py --op loglinear_attention --json $OUT/bench-loglinear_attention-full.json 2>&1 | grep -v -i warn | grep " | " | cut -c1-200
