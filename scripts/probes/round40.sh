#!/usr/bin/env bash
# Round 40 (session 7): every GPU test but the scan families' (run in rounds 31 and 35-39 after their
# changes) with this session's host-side launcher edits (kernelgen.launch.cdiv) in every family.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
timeout 560 python3 -m pytest -q -m gpu tests --ignore=tests/test_selective_scan_cuda.py \
  --ignore=tests/test_selective_scan.py --ignore=tests/test_linear_scan.py 2>&1 | tee $OUT/gpu-tests.log | tail -4
