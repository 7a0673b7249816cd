#!/usr/bin/env bash
# Round 122 (session 15): loglinear GPU tests with dv_chain the K = V = 128 default; re-tunes:
# selective_scan fwd (its launcher module changed with the backward's atomic default, which stales
# the fwd entries' hash) and loglinear_attention bwd at K = V = 128 (the new default).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## ll gpu tests"; timeout 150 python3 -m pytest -q tests/test_loglinear_attention.py -k "gpu" 2>&1 | tail -2
cp tuned/h100.json $OUT/h100.json
echo "## ss fwd tune"; timeout 200 python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --kernel fwd --flags plain,z --shapes batch=8,dim=2048,L=4096,N=16 --trials 8 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ selective\|Wrote\|rror" | cut -c1-240
echo "## ll bwd tune"; timeout 200 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel bwd --shapes B=8,T=4096,H=16,K=128,V=128,L=13 --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ loglinear\|Wrote\|rror" | cut -c1-240
