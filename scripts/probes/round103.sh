#!/usr/bin/env bash
# Round 103 (session 13): linear_attention's GPU tests and its entries re-tuned after dg_rows /
# dg_prefetch (the template file changed, so the forward entries are stale too).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## tests"; timeout 100 python3 -m pytest -q -x tests/test_linear_attention.py -k "gpu" 2>&1 | tail -1
cp tuned/h100.json $OUT/h100.json
echo "## la tune bwd"; timeout 210 python3 -m kernelgen.cli tune --gpu h100 --op linear_attention --kernel bwd --flags g,none --shapes quick --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ linear\|Wrote\|rror" | cut -c1-240
echo "## la tune fwd"; timeout 220 python3 -m kernelgen.cli tune --gpu h100 --op linear_attention --kernel fwd --flags g,none --shapes 'B=8,T=4096,H=16,K=128,V=128,F=128;B=1,T=65536,H=16,K=128,V=128,F=128' --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ linear\|Wrote\|rror" | cut -c1-240
