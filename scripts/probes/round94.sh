#!/usr/bin/env bash
# Round 94 (session 12): after the host-only edits (triton.next_power_of_2 -> a host function in
# four templates; the TMA eligibility check moved to kernelgen.launch): the GPU tests of every
# Triton family they touch, template hashes unchanged.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 540 python3 -m pytest -q -m gpu tests/test_launch.py tests/test_chunk_common.py tests/test_sliding_window_attention.py tests/test_sliding_window_inputs.py tests/test_linear_attention.py tests/test_linear_attention_inputs.py tests/test_loglinear_attention.py tests/test_loglinear_inputs.py 2>&1 | tail -3
