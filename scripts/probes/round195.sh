#!/usr/bin/env bash
# Round 195 (session 21): the sliding-window kernels' file changed (the dQ kernel takes a gradient of
# lse: HAS_DLSE; decode clamps an int64 length before narrowing it), which stales every
# sliding-window entry: each re-tuned with 3 trials (the default, the stored winner, one draw), then
# the template's tests on the GPU (the lse-gradient and int64 tests among them), the double-backward
# tests, and the bench with the new file.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json $OUT/h100.json
timeout 220 python3 -m kernelgen.cli tune --gpu h100 --op sliding_window_attention --kernel fwd,bwd \
  --shapes 'B=8,T=4096,HQ=16,H=16,D=128,W=512;B=8,T=4096,HQ=16,H=16,D=64,W=128;B=1,T=65536,HQ=16,H=16,D=128,W=512' \
  --trials 3 --out $OUT/h100.json 2>&1 | grep -v -i warn | grep "│\|Wrote\|rror" | cut -c1-220
cp $OUT/h100.json tuned/h100.json
timeout 200 python3 -m pytest -q -x tests/test_sliding_window_attention.py tests/test_double_backward.py 2>&1 | tail -3
timeout 120 python3 bench.py --op sliding_window_attention --json $OUT/session21-h100-sliding_window_attention.json 2>&1 \
  | grep -v -i warn | grep "| kernelgen:\|flex\|fla " | cut -c1-200
