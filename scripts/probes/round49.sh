#!/usr/bin/env bash
# Round 49 (session 8): loglinear_attention with the stack's level-0 carry in registers and the new
# forward/backward defaults: the file's GPU tests, the parts at the target shape, re-tune (fwd, bwd).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
echo "## tests"; timeout 150 python3 -m pytest -q tests/test_loglinear_attention.py 2>&1 | tail -2
echo "## parts"; timeout 60 python3 scripts/probes/ll_out.py --short 0 2>&1 | grep -E "==|128, 'out_warps': 4, 'chunk': 64}|scan_bk': 64, 'scan_bv': 64"
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 330 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel fwd,bwd --shapes quick --trials 10 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│\|Wrote" | cut -c1-220
