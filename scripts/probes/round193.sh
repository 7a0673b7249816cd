#!/usr/bin/env bash
# Round 193 (session 21): the H200 port, part 2 (selective_scan, loglinear_attention), merged into
# the tuned/h200.json that round 192 wrote; then the sliding-window bench on the H200.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h200.json $OUT/h200.json
tune() {  # op kernels flags shapes
  timeout ${BUDGET:-150} python3 -m kernelgen.cli tune --gpu h200 --warm-from h100 --trials 2 --op $1 --kernel $2 \
    --flags $3 --shapes "$4" --out $OUT/h200.json 2>&1 | grep -v -i warn | grep "│\|Wrote\|rror\|Interrupted" | cut -c1-230
}
BUDGET=170 tune selective_scan fwd,bwd plain 'batch=8,dim=2048,L=4096,N=16;batch=2,dim=1536,L=2048,N=16;batch=4,dim=1024,L=1024,N=64'
BUDGET=60 tune selective_scan fwd,bwd z 'batch=8,dim=2048,L=4096,N=16'
BUDGET=170 tune loglinear_attention fwd,bwd plain 'B=8,T=4096,H=16,K=128,V=128,L=13;B=8,T=4096,H=16,K=64,V=64,L=13'
cp $OUT/h200.json tuned/h200.json
timeout 120 python3 bench.py --op sliding_window_attention --json $OUT/session21-h200-sliding_window_attention.json 2>&1 \
  | grep -v -i warn | grep "| kernelgen:\|flex\|fla " | cut -c1-200
