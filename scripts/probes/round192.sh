#!/usr/bin/env bash
# Ran on an H100 (kind nvidia-h200 without needs_h200 may be served by an H100): calibrate refused
# (--gpu h200 on an H100) and so did every tune; nothing was measured. The H200 port waits for an H200.
# Round 192 (session 21): the H200 port, part 1. Measure the H200's ceilings (profiles/h200.json),
# then tune the H100 file's shapes on it with `--warm-from h100`: each study measures the default,
# the H100's winner for the nearest bucket, and draws to 2 trials; winners go to tuned/h200.json.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,memory.total --format=csv,noheader
timeout 90 python3 -m kernelgen.cli calibrate --gpu h200 2>&1 | grep -v -i warn | tail -8
cp profiles/h200.json $OUT/profile-h200.json
[ -f tuned/h200.json ] && cp tuned/h200.json $OUT/h200.json
tune() {  # op kernels flags shapes
  timeout ${BUDGET:-150} python3 -m kernelgen.cli tune --gpu h200 --warm-from h100 --trials 2 --op $1 --kernel $2 \
    --flags $3 --shapes "$4" --out $OUT/h200.json 2>&1 | grep -v -i warn | grep "│\|Wrote\|rror\|Interrupted" | cut -c1-230
}
SWA_D128='B=8,T=4096,HQ=16,H=16,D=128,W=512;B=1,T=65536,HQ=16,H=16,D=128,W=512;B=8,T=4096,HQ=16,H=16,D=64,W=128'
BUDGET=200 tune sliding_window_attention fwd,bwd plain "$SWA_D128"
LA8='B=8,T=4096,H=16,K=128,V=128,F=128'
BUDGET=150 tune linear_attention fwd,bwd g,none "$LA8"
BUDGET=60 tune linear_attention fwd g,none 'B=1,T=65536,H=16,K=128,V=128,F=128'
BUDGET=90 tune linear_scan fwd,bwd plain 'B=8,T=4096,D=2048;B=2,T=65536,D=2048;B=4,T=2048,D=1024'
