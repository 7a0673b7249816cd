#!/usr/bin/env bash
# Round 144 (session 16): loglinear GPU tests with dq_intra_first on 4 warps (the K = V = 128
# default now), that entry re-tuned (the others were re-keyed: their sm_90 SASS is unchanged),
# and the op's quick bench (B=8 T=4096 H=16 K=V=128, fwd and fwd+bwd, peers in the same run).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## ll gpu tests"; timeout 70 python3 -m pytest -q tests/test_loglinear_attention.py -k "gpu" 2>&1 | tail -2
cp tuned/h100.json $OUT/h100.json
echo "## ll bwd tune"; timeout 140 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel bwd --shapes 'B=8,T=4096,H=16,K=128,V=128,L=13' --trials 4 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ loglinear\|Wrote\|rror" | cut -c1-240
cp $OUT/h100.json tuned/h100.json
echo "## bench"; timeout 100 python3 bench.py --op loglinear_attention --quick --json $OUT/session16-h100-loglinear_attention-quick.json 2>&1 | grep "│" | cut -c1-200
