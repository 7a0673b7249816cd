#!/usr/bin/env bash
# Round 111 (session 14): GPU tests of linear_attention (the state-carrying dk/dv kernel now leaves
# the (t, t) pairs out of the decay gradient's in-chunk sums) and of loglinear_attention
# (save_blocks), then linear_attention's six entries re-tuned (the kernel edit stales them).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## tests"; timeout 150 python3 -m pytest -q tests/test_linear_attention.py tests/test_loglinear_attention.py -k "gpu" 2>&1 | tail -2
echo "## save_blocks"; timeout 90 python3 scripts/probes/ll_save_blocks.py 2>&1 | grep -v -i warn
cp tuned/h100.json $OUT/h100.json
echo "## la tune bwd"; timeout 200 python3 -m kernelgen.cli tune --gpu h100 --op linear_attention --kernel bwd --flags g,none --shapes quick --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ linear\|Wrote\|rror" | cut -c1-240
echo "## la tune fwd"; timeout 180 python3 -m kernelgen.cli tune --gpu h100 --op linear_attention --kernel fwd --flags g,none --shapes 'B=8,T=4096,H=16,K=128,V=128,F=128;B=1,T=65536,H=16,K=128,V=128,F=128' --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ linear\|Wrote\|rror" | cut -c1-240
