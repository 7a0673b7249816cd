#!/usr/bin/env bash
# Round 229 (session 24): host-code changes on the GPU: linear_scan's packed sequences as one
# unpadded row (-inf gates at the starts) and its batch groups, loglinear's launches split under
# CUDA's grid limit, selective_scan's batch groups and decode checks.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## linear_scan"; timeout 110 python3 -m pytest -q -p no:cacheprovider tests/test_linear_scan.py -m "gpu or not gpu" 2>&1 | tail -3
echo "## loglinear"; timeout 170 python3 -m pytest -q -p no:cacheprovider tests/test_loglinear_attention.py -m "gpu or not gpu" 2>&1 | tail -3
echo "## selective_scan"; timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_selective_scan.py -k "grid_limit or decode_step" 2>&1 | tail -2
