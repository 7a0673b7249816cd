#!/usr/bin/env bash
# Round 23 (session 5): loglinear_attention after its dG kernel leaves the (t, t) pairs out of
# both terms: GPU tests, the backward's time (5.61 ms tuned before), and the re-tune its changed
# template needs (the old entries are stale).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
echo "## ll tests"; timeout 150 python3 -m pytest -q -m gpu tests/test_loglinear_attention.py tests/test_loglinear_inputs.py 2>&1 | tail -2
echo "## ll bwd"; timeout 60 $P --template loglinear_attention.bwd --shape B=8,T=4096,H=16,K=128,V=128,L=13 --configs '[]' 2>&1 | grep -v Warn | cut -c1-220
cp tuned/h100.json $OUT/h100.json
echo "## ll tune"; timeout 260 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel fwd,bwd --shapes quick --trials 4 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | tail -12
