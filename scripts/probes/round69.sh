#!/usr/bin/env bash
# Round 69 (session 10, branch next/loglinear-flat-level-scan): re-tune the loglinear fwd and bwd
# at the quick shapes (the template changed), then the full loglinear bench with its peers.
# Copy $OUT/h100.json back to tuned/ afterwards.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 340 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel fwd,bwd --shapes quick --trials 8 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│\|Wrote" | cut -c1-240
cp $OUT/h100.json tuned/h100.json
echo "## bench"; timeout 230 python3 bench.py --op loglinear_attention --json $OUT/bench-loglinear_attention-full.json 2>&1 | grep -v -i warn | grep " | " | cut -c1-200
