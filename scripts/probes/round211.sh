#!/usr/bin/env bash
# Round 211 (session 22): with the 16-step forward and its entries, the mamba-ssm drop-in check and
# every selective-scan test file on the GPU (four shards).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## drop-in"; timeout 200 python3 scripts/probes/ss_dropin_gpu.py 2>&1 | grep -v -i warn | grep -v "config_for" | tail -3
TB=short python3 scripts/probes/gpu_shards.py 4 400 tests/test_selective_scan.py tests/test_selective_scan_cuda.py \
  tests/test_selective_scan_inputs.py tests/test_selective_scan_complex.py tests/test_double_backward.py
