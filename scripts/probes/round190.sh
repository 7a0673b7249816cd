#!/usr/bin/env bash
# Round 190 (session 20): the anchored forward as one rotated loop (templates/sliding_window_attention.py
# `_fwd_anchored_loop`) stales every sliding-window entry (one template file): each re-tuned with
# 3 trials (the default, the stored winner, one draw), then the bench with the new file; GPU tests.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json $OUT/h100.json
timeout 200 python3 -m kernelgen.cli tune --gpu h100 --op sliding_window_attention --kernel fwd,bwd \
  --shapes 'B=8,T=4096,HQ=16,H=16,D=128,W=512;B=8,T=4096,HQ=16,H=16,D=64,W=128;B=1,T=65536,HQ=16,H=16,D=128,W=512' \
  --trials 3 --out $OUT/h100.json 2>&1 | grep -v -i warn | grep "│\|Wrote\|rror" | cut -c1-220
cp $OUT/h100.json tuned/h100.json
timeout 130 python3 bench.py --op sliding_window_attention --json $OUT/session20-h100-sliding_window_attention.json 2>&1 | grep -v -i warn | grep "| kernelgen:\|flex\|fla " | cut -c1-200
timeout 75 python3 -m pytest -q -m gpu tests/test_sliding_window_attention.py -k "varlen or every_forward or templates_default" 2>&1 | tail -2
