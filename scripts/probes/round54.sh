#!/usr/bin/env bash
# Round 54 (session 9): loglinear level loops without branches (one iteration per set / unset bit,
# so the block loads pipeline) + λ gathered per level, against main: forward and backward per
# config variant, per kernel (ll_variants.py), then the new kernels' GPU tests.
# (ll_main_template.py was `git show main:templates/loglinear_attention.py` at 114d0aa, not kept)
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
cp templates/loglinear_attention.py /tmp/ll_new.py
cp scripts/probes/ll_main_template.py templates/loglinear_attention.py
cd scripts/probes
echo "## main"; timeout 100 python3 ll_variants.py --defaults 0 1
cd ../..
cp /tmp/ll_new.py templates/loglinear_attention.py
cd scripts/probes
echo "## level loops"; timeout 280 python3 ll_variants.py 0 1
cd ../..
echo "## GPU tests"; timeout 150 python3 -m pytest -q -x tests/test_loglinear_attention.py 2>&1 | tail -3
