#!/usr/bin/env bash
# Round 142 (session 16): the loglinear forward re-tuned (hash), then the op's bench with the
# new entries (tuned/h100.json from round 141 carried in).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json $OUT/h100.json
echo "## ll fwd tune"; timeout 250 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel fwd --shapes quick --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ loglinear\|Wrote\|rror" | cut -c1-240
cp $OUT/h100.json tuned/h100.json
echo "## bench"; timeout 300 python3 bench.py --op loglinear_attention --json $OUT/session16-h100-loglinear_attention.json 2>&1 | grep -v -i warn | cut -c1-220
