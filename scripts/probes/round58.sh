#!/usr/bin/env bash
# Round 58 (session 9): dk written by the dv kernel (config dk_with_dv, measured through the
# template's tuning candidates): loglinear GPU tests, re-tune fwd and bwd at both quick shapes
# (the kernels changed: every loglinear entry is stale), then every bwd trial's time.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
echo "## tests"; timeout 150 python3 -m pytest -q -x tests/test_loglinear_attention.py 2>&1 | tail -2
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 290 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel fwd,bwd --shapes quick --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│\|Wrote" | cut -c1-220
echo "## trials"; python3 scripts/probes/study_trials.py loglinear_attention.bwd 2>&1 | tail -20
