#!/usr/bin/env bash
# Round 118 (session 14): after the cached launch started caching calls with defaulted constexprs
# (every family's launches go through it), the GPU tests of the other families and the mamba-ssm
# drop-in check with the shipped configs.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## tests"; timeout 420 python3 -m pytest -q tests/test_loglinear_attention.py tests/test_linear_scan.py tests/test_selective_scan.py tests/test_selective_scan_cuda.py tests/test_sliding_window_attention.py tests/test_ncu.py tests/test_profile.py -k "gpu" 2>&1 | tail -3
echo "## dropin"; timeout 120 python3 scripts/probes/ss_dropin_gpu.py 2>&1 | grep -v -i warn | tail -4
