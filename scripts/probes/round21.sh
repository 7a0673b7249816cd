#!/usr/bin/env bash
# Round 21 (session 5): the sliding-window forward with Triton's warp specialization of its key
# loop (WS), GPU tests; the linear-attention fwd+bwd bench with the fla peers on the H100.
# Ran at commit 691b786; the WS knob was removed afterwards (docs/PERF.md, session 5).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
echo "## swa tests"; timeout 120 python3 -m pytest -q -m gpu tests/test_sliding_window_attention.py 2>&1 | tail -2
C='[{"WS":1},{"WS":1,"num_warps":8},{"WS":1,"num_stages":2},{"WS":1,"BLOCK_M":128,"num_warps":8},{"WS":0}]'
for S in B=8,T=4096,HQ=16,H=16,D=128,W=512 B=1,T=65536,HQ=16,H=16,D=128,W=512; do
  echo "## swa fwd $S"; timeout 110 $P --template sliding_window_attention.fwd --shape $S --configs "$C" 2>&1 | grep -v Warn | cut -c1-220
done
echo "## la bench fwd+bwd"; timeout 200 python3 bench.py --quick --graphs --mode fwd+bwd --op linear_attention --json $OUT/bench-la-fwd-bwd.json 2>&1 | grep " | " | cut -c1-230
