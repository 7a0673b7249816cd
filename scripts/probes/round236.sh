#!/usr/bin/env bash
# Round 236 (session 25): the op's gpu tests that round 234's time cut short (29 passed, no failure).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 215 python3 -m pytest -q -p no:cacheprovider tests/test_selective_scan.py tests/test_double_backward.py -m "gpu or not gpu" -k "gpu or double or fwd_template or forward" 2>&1 | tail -3
