#!/usr/bin/env bash
# Round 56 (session 9): loglinear with branch-free level loops in the output and dq/dk kernels
# (dv keeps its branches), λ gathered per level (output, dq/dk), the new stage defaults: GPU
# tests, then re-tune fwd and bwd at both quick shapes (K = V = 128 and 64).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
echo "## tests"; timeout 170 python3 -m pytest -q -x tests/test_loglinear_attention.py 2>&1 | tail -2
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 380 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel fwd,bwd --shapes quick --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│\|Wrote" | cut -c1-220
