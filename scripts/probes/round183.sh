#!/usr/bin/env bash
# Round 183 (session 20): the D = 128 backward entries re-tuned with 64-query dK/dV steps admitted
# (and the new default); the GQA W = 4096 default old vs new; GPU tests; the bench with the new file.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json $OUT/h100.json
timeout 200 python3 -m kernelgen.cli tune --gpu h100 --op sliding_window_attention --kernel bwd \
  --shapes 'B=8,T=4096,HQ=16,H=16,D=128,W=512;B=1,T=65536,HQ=16,H=16,D=128,W=512' --trials 8 --out $OUT/h100.json 2>&1 | grep -v -i warn | tail -25 | cut -c1-200
S=B=2,T=8192,HQ=32,H=8,D=128,W=4096
timeout 100 python3 -m kernelgen.tune.probe --template sliding_window_attention.bwd --shape $S --configs '[{"BLOCK_M_KV":32}]' --kernels 2>&1 | grep -v -i warn | cut -c1-200
timeout 150 python3 -m pytest -q -m gpu tests/test_sliding_window_attention.py 2>&1 | tail -3
cp $OUT/h100.json tuned/h100.json
timeout 200 python3 bench.py --op sliding_window_attention --json $OUT/session20-h100-sliding_window_attention.json 2>&1 | grep -v -i warn | grep "| kernelgen:\|flex\|fla " | cut -c1-200
