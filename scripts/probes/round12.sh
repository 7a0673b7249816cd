#!/usr/bin/env bash
# Round 12 (session 4): fwd+bwd benches with the new backward defaults (selective scan: CUDA
# channel backward; linear attention: the passes; sliding window: fused + TMA), peers side by side.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
echo "## ss op tests"; timeout 70 python3 -m pytest -q -m gpu tests/test_selective_scan_cuda.py -k "op_training or target_shape" 2>&1 | grep -E "passed|failed|FAILED|Error |assert" | tail -6
for op in linear_attention sliding_window_attention selective_scan; do
  echo "## bench $op"; timeout 95 python3 bench.py --quick --graphs --mode fwd+bwd --op $op --json $OUT/bench-$op.json 2>&1 | grep " | " | grep -v "torch ref\|torch loop" | cut -c1-200
done
