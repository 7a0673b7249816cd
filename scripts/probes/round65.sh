#!/usr/bin/env bash
# Round 65 (session 10, branch next/swa-lazy-rescale, dropped: 14% slower): the sliding-window
# forward with the running max moved only past 2^8 of growth (config LAZY), against the default,
# at the three forward shapes; then the GPU tests.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
for s in "B=8,T=4096,HQ=16,H=16,D=128,W=512" "B=1,T=65536,HQ=16,H=16,D=128,W=512" "B=8,T=4096,HQ=16,H=16,D=64,W=128"; do
  for rep in 1 2; do
  echo "## $s ($rep)"; timeout 100 python3 -m kernelgen.tune.probe --template sliding_window_attention.fwd \
      --shape $s --configs '[{"LAZY":1},{},{"LAZY":1}]' 2>&1 | grep -v -i warn | grep " ms " | cut -c1-150
  done
done
echo "## tests"; timeout 200 python3 -m pytest -q -x tests/test_sliding_window_attention.py -k "gpu" 2>&1 | tail -2
