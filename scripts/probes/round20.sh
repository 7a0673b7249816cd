#!/usr/bin/env bash
# Round 20 (session 5): GPU tests after the strong-decay precision changes, then the
# linear-attention re-tune (its template changed, so round 17's entries are stale).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
echo "## la tests"; timeout 150 python3 -m pytest -q -m gpu tests/test_linear_attention.py 2>&1 | tail -2
cp tuned/h100.json $OUT/h100.json
echo "## la tune fwd"; timeout 220 python3 -m kernelgen.cli tune --gpu h100 --op linear_attention --kernel fwd --flags g,none --shapes 'B=8,T=4096,H=16,K=128,V=128,F=128;B=1,T=65536,H=16,K=128,V=128,F=128' --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | tail -12
echo "## la tune bwd"; timeout 200 python3 -m kernelgen.cli tune --gpu h100 --op linear_attention --kernel bwd --flags g,none --shapes quick --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | tail -10
