#!/usr/bin/env bash
# Round 53 (session 9): branch next/loglinear-lambda-columns (λ gathered per level; its template
# file carried as scripts/probes/ll_lambda_columns_template.py) against main, defaults, per part;
# the branch's GPU tests; the T=131072 forward with automatic segments (main).
# (the carried file was `git show next/loglinear-lambda-columns:templates/loglinear_attention.py`, not kept)
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
cd scripts/probes
echo "## main"; timeout 120 python3 ll_time.py 0 1 2
echo "## auto segments (main, op)"; timeout 90 python3 ll_auto.py
cd ../..
cp scripts/probes/ll_lambda_columns_template.py templates/loglinear_attention.py
cd scripts/probes
echo "## lambda columns"; timeout 120 python3 ll_time.py 0 1 2
cd ../..
echo "## lambda columns GPU tests"; timeout 200 python3 -m pytest -q -x tests/test_loglinear_attention.py 2>&1 | tail -3
