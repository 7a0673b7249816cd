#!/usr/bin/env bash
# Round 199 (session 22): the test files never run whole on CUDA, in 15 parallel shards.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader
python3 scripts/probes/gpu_shards.py 15 500 tests/test_selective_scan_inputs.py tests/test_linear_attention_inputs.py \
  tests/test_loglinear_inputs.py tests/test_sliding_window_inputs.py tests/test_selective_scan_complex.py
