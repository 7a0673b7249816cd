#!/usr/bin/env bash
# Round 45 (session 8): loglinear_attention's one-pass Fenwick block stack and the output kernel's
# in-place row-weighted products: GPU tests, then the parts timed per config variant.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
timeout 240 python3 -m pytest -q tests/test_loglinear_attention.py 2>&1 | tee $OUT/gpu-tests.log | tail -4
timeout 320 python3 scripts/probes/ll_parts.py 0 1 2 3 2>&1 | tee $OUT/ll_parts.log
