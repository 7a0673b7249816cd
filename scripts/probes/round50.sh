#!/usr/bin/env bash
# Round 50 (session 8): loglinear_attention's stacked block pass per segment of chunks (then one
# carry across segments): the file's GPU tests, then the pass per segment size and tile.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
echo "## tests"; timeout 150 python3 -m pytest -q tests/test_loglinear_attention.py 2>&1 | tail -2
echo "## parts"; timeout 300 python3 scripts/probes/ll_out.py --seg 0 1 2 3 2>&1 | grep -v "^  out" | sed 's/stack=0 .*//'
