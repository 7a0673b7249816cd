#!/usr/bin/env bash
# Round 197 (session 21): the argument-check files and the double-backward tests on the GPU machine
# (not marked gpu: a user with a GPU runs them on CUDA), each file under its own time limit.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
for spec in double_backward:30 sliding_window_inputs:100 linear_scan_inputs:60 selective_scan_inputs:100 \
            linear_attention_inputs:100 loglinear_inputs:70; do
  name=${spec%%:*}; limit=${spec##*:}
  echo "== $name"
  timeout $limit python3 -m pytest -q -p no:cacheprovider --tb=line -rf tests/test_$name.py 2>&1 \
    | grep -E "^FAILED|^/.*Error|passed|failed" | cut -c1-260 | head -12
done
