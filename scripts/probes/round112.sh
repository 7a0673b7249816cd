#!/usr/bin/env bash
# Round 112 (session 14): the GPU tests round 111 cut off (linear_attention, loglinear_attention,
# save_blocks now decided at forward time), then the log-linear bench at the target shape
# (forward, and fwd+bwd with and without save_blocks).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## tests"; timeout 330 python3 -m pytest -q tests/test_linear_attention.py tests/test_loglinear_attention.py -k "gpu" 2>&1 | tail -3
echo "## bench"; timeout 240 python3 bench.py --quick --op loglinear_attention --json $OUT/ll.json 2>&1 | grep -v -i warn | grep -v "━" | tail -25 | cut -c1-200
