#!/usr/bin/env bash
# Round 145 (session 17): the whole loglinear bench (fwd+bwd rows with dq_intra_first, never
# benched in session 16), then the K = V = 64 backward re-tuned (new candidate: dk in dv, dv
# scores first, dq pairs first; no spills offline).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## bench"; timeout 300 python3 bench.py --op loglinear_attention --json $OUT/session17-h100-loglinear_attention.json 2>&1 | grep "│" | cut -c1-220
cp tuned/h100.json $OUT/h100.json
echo "## ll bwd tune K=64"; timeout 200 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel bwd --shapes 'B=8,T=4096,H=16,K=64,V=64,L=13' --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ loglinear\|Wrote\|rror\|fail" | cut -c1-240
