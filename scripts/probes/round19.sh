#!/usr/bin/env bash
# Round 19 (session 5): lazy rescaling in the sliding-window forward (LAZY: the accumulator is
# rescaled only when a row max grows by more than 2^8), at the three forward target shapes.
# Ran at commit 4459cd2; the LAZY knob was removed afterwards (docs/PERF.md, session 5).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
C='[{"LAZY":1},{"LAZY":1,"num_stages":2},{"LAZY":1,"num_stages":4},{"LAZY":1,"BLOCK_M":128,"num_warps":8},{"LAZY":0}]'
for S in B=8,T=4096,HQ=16,H=16,D=128,W=512 B=1,T=65536,HQ=16,H=16,D=128,W=512 B=8,T=4096,HQ=16,H=16,D=64,W=128; do
  echo "## swa fwd $S"; timeout 100 $P --template sliding_window_attention.fwd --shape $S --configs "$C" 2>&1 | grep -v Warn | cut -c1-200
done
echo "## swa tests"; timeout 120 python3 -m pytest -q -m gpu tests/test_sliding_window_attention.py 2>&1 | tail -2
