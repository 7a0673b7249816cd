#!/usr/bin/env bash
# Round 152 (session 17): the K = V = 128 backward default now scan_stages 3, dqk_bv 128 and the
# level scans on 64 x 128 tiles of their own (rscan_bv; probe 1.925 ms, round 151). GPU tests,
# then both backward entries re-tuned (the space gained rscan_bk / rscan_bv: hash moved).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## ll gpu tests"; timeout 90 python3 -m pytest -q tests/test_loglinear_attention.py -k "gpu" 2>&1 | tail -2
cp tuned/h100.json $OUT/h100.json
for S in 'B=8,T=4096,H=16,K=128,V=128,L=13' 'B=8,T=4096,H=16,K=64,V=64,L=13'; do
echo "## ll bwd tune $S"; timeout 200 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel bwd --shapes "$S" --trials 4 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ loglinear\|Wrote\|rror\|fail" | cut -c1-260
done
