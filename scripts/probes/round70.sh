#!/usr/bin/env bash
# Round 70 (session 10): round 69's tune ran past its 340 s limit (nothing written); re-tune the
# loglinear fwd and bwd at the quick shapes with 6 trials. Copy $OUT/h100.json back afterwards.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 545 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel fwd,bwd --shapes quick --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│\|Wrote" | cut -c1-240
