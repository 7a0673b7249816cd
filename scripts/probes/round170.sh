#!/usr/bin/env bash
# Round 170 (session 19): bench rows after the re-tunes (sliding-window: the D=64 W=128 entries
# and 30/20-trial studies at the targets; selective-scan: the cp.async channel forward).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
for op in selective_scan sliding_window_attention; do
echo "## bench $op"; timeout 280 python3 bench.py --op $op --json $OUT/session19-h100-$op.json 2>&1 | grep -v -i warn | grep -v "━━━━━━━━━━━━━━━━━" | cut -c1-230
done
