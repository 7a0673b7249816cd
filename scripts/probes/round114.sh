#!/usr/bin/env bash
# Round 114 (session 14): linear_attention bench after the dk/dv kernel's diagonal fix and the
# re-tune (round 111). Prediction: the target rows unchanged (the passes' kernels did not change).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## bench"; timeout 560 python3 bench.py --op linear_attention --json $OUT/la.json 2>&1 | grep -v -i warn | grep "|" | cut -c1-200
