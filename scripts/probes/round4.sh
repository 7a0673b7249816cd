#!/usr/bin/env bash
# Round 4: tune the issue targets (quick shapes) with the new defaults, then the quick bench with CUDA-graph times.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
T="python3 -m kernelgen tune --gpu h100 --shapes quick"
timeout 90 $T --op linear_attention --kernel fwd --flags g --trials 10 2>&1 | tail -6
timeout 80 $T --op linear_attention --kernel bwd --flags g --trials 6 2>&1 | tail -6
timeout 80 $T --op selective_scan --kernel fwd --flags plain --trials 10 2>&1 | tail -6
timeout 60 $T --op selective_scan --kernel bwd --flags plain --trials 6 2>&1 | tail -6
timeout 60 $T --op sliding_window_attention --kernel fwd --trials 8 2>&1 | tail -6
timeout 60 $T --op sliding_window_attention --kernel bwd --trials 6 2>&1 | tail -6
cp tuned/h100.json $OUT/h100.json
timeout 170 python3 bench.py --quick --graphs --json $OUT/bench-quick.json 2>&1 | grep -v Warn | grep " | " | cut -c1-200
