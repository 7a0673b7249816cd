#!/usr/bin/env bash
# Round 5: GPU tests of the helpers' new paths, re-tune what template edits made stale (warm start), quick bench.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
timeout 130 python3 -m pytest -q -m gpu tests/test_loglinear_attention.py tests/test_selective_scan.py tests/test_sliding_window_attention.py 2>&1 | grep -E "passed|failed|FAILED|Error" | tail -12
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
timeout 40 $P --template loglinear_attention.bwd --shape B=8,T=4096,H=16,K=128,V=128,L=13 --configs '[{"dv_bk":128,"dv_bv":32}]' 2>&1 | grep -v Warn
timeout 30 $P --template loglinear_attention.bwd --shape B=2,T=1024,H=4,K=32,V=32,L=11 2>&1 | grep -v Warn
timeout 30 $P --template loglinear_attention.bwd --shape B=2,T=1000,H=4,K=64,V=64,L=11 2>&1 | grep -v Warn
T="python3 -m kernelgen tune --gpu h100 --shapes quick"
timeout 45 $T --op sliding_window_attention --kernel fwd,bwd --trials 3 2>&1 | grep -E "│ sliding|Wrote|fail" | cut -c1-200
timeout 110 $T --op loglinear_attention --kernel fwd,bwd --trials 5 2>&1 | grep -E "│ loglinear|Wrote|fail" | cut -c1-200
cp tuned/h100.json $OUT/h100.json
for op in linear_attention sliding_window_attention loglinear_attention; do
  timeout 80 python3 bench.py --quick --graphs --op $op --json $OUT/bench-$op.json 2>&1 | grep " | " | cut -c1-200
done
