#!/usr/bin/env bash
# Round 55 (session 9): round 54's level loops with the dv kernel back on its λ tile and the
# forward on one stage: forward/backward per stage count and kernel at the three issue shapes,
# then the loglinear GPU tests.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
cd scripts/probes
echo "## level loops"; timeout 200 python3 ll_variants.py 0 1 2
cd ../..
echo "## GPU tests"; timeout 200 python3 -m pytest -q -x tests/test_loglinear_attention.py 2>&1 | tail -3
