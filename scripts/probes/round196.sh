#!/usr/bin/env bash
# Round 196 (session 21): tests that are not marked gpu, run on the GPU machine (a user with a GPU
# running the README's test command runs them on CUDA): the sliding-window file in full after
# round 195's fix, the double-backward tests, and every family's argument-check file; then the
# sliding-window bench once more with the final code and entries.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 330 python3 -m pytest -v -p no:cacheprovider tests/test_sliding_window_attention.py tests/test_double_backward.py \
  tests/test_sliding_window_inputs.py tests/test_linear_attention_inputs.py tests/test_selective_scan_inputs.py \
  tests/test_linear_scan_inputs.py tests/test_loglinear_inputs.py 2>&1 > $OUT/tests.txt
grep -E "FAILED|ERROR" $OUT/tests.txt | cut -c1-200 | head -40
grep -c PASSED $OUT/tests.txt; tail -1 $OUT/tests.txt | cut -c1-200
timeout 120 python3 bench.py --op sliding_window_attention --json $OUT/session21-h100-sliding_window_attention-final.json 2>&1 \
  | grep -v -i warn | grep "| kernelgen:\|flex\|fla " | cut -c1-200
