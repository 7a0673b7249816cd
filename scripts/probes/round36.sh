#!/usr/bin/env bash
# Round 36 (session 7): the selective-scan GPU tests in full (round 35's run hit its time limit at
# 96 of 117 with none failed), then bench.py --quick --graphs for the sliding window (its launchers
# lost their host-side triton.cdiv calls this session; kernels and tuned entries unchanged).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
echo "## ss tests"; timeout 300 python3 -m pytest -q -m gpu tests/test_selective_scan_cuda.py tests/test_selective_scan.py tests/test_selective_scan_inputs.py 2>&1 | tail -2
echo "## swa bench"; timeout 250 python3 bench.py --quick --graphs --op sliding_window_attention --json $OUT/bench-sliding_window_attention.json 2>&1 | grep -v Warn | grep "kernelgen\|Flex\|fla" | cut -c1-200
