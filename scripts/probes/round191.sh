#!/usr/bin/env bash
# Round 191 (session 21): issue 6's decision run — the sliding-window bench three times back to back
# with the final code and entries of session 20 (no edits since), then the GPU tests round 190 cut.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
for i in 1 2 3; do
  echo "== bench run $i"
  timeout 150 python3 bench.py --op sliding_window_attention --json $OUT/session21-h100-sliding_window_attention-run$i.json 2>&1 \
    | grep -v -i warn | grep "| kernelgen:\|flex\|fla " | cut -c1-200
done
timeout 150 python3 -m pytest -q -m gpu tests/test_sliding_window_attention.py 2>&1 | tail -3
