#!/usr/bin/env bash
# Round 141 (session 16): loglinear GPU tests with dv_at_first on the whole K (the K = V = 128
# default beside dk_with_dv), then the backward re-tuned at both quick shapes (hash moved).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## ll gpu tests"; timeout 170 python3 -m pytest -q tests/test_loglinear_attention.py -k "gpu" 2>&1 | tail -2
cp tuned/h100.json $OUT/h100.json
echo "## ll bwd tune"; timeout 380 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel bwd --shapes quick --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ loglinear\|Wrote\|rror" | cut -c1-240
