#!/usr/bin/env bash
# Round 67 (session 10, branch next/swa-heads-first, dropped: no gain at T=65536 within the ±4%
# spread of one config, 1.7x slower at B=8 T=4096): the sliding-window forward launched with every
# (batch, kv head) of one query block first (config HEADS_FIRST) against the default order.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
for s in "B=1,T=65536,HQ=16,H=16,D=128,W=512" "B=8,T=4096,HQ=16,H=16,D=128,W=512" "B=4,T=16384,HQ=16,H=16,D=128,W=512" "B=8,T=4096,HQ=16,H=16,D=64,W=128" "B=2,T=8192,HQ=32,H=8,D=128,W=4096"; do
  echo "## $s"; timeout 100 python3 -m kernelgen.tune.probe --template sliding_window_attention.fwd \
      --shape $s --configs '[{"HEADS_FIRST":1},{},{"HEADS_FIRST":1},{}]' 2>&1 | grep -v -i warn | grep " ms " | cut -c1-160
done
echo "## tests"; timeout 200 python3 -m pytest -q -x tests/test_sliding_window_attention.py -k "gpu" 2>&1 | tail -2
