#!/usr/bin/env bash
# Round 105 (session 13): the normalised general forward as two launches: den = the same sum for
# v = 1 (its state z), then o / den (round 104: Based normalised 8.24 ms, 1.84 at its best tile with
# the sums on tensor cores inside the kernel). GPU tests, then linear_attention re-tuned (changed file).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
P="python3 -m kernelgen.tune.probe"
echo "## tests"; timeout 100 python3 -m pytest -q -x tests/test_linear_attention.py -k "gpu" 2>&1 | tail -1
echo "## based norm"; timeout 100 $P --template linear_attention.fwd_taylor2 --shape B=8,T=4096,H=16,K=16,V=128,F=273 --flags none+taylor2+norm --configs '[{"chunk": 32}, {"chunk": 32, "block_v": 16}]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|kernel" | cut -c1-180
echo "## identity g+norm"; timeout 60 $P --template linear_attention.fwd --shape B=8,T=4096,H=16,K=128,V=128,F=128 --flags g+norm --configs '[]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|kernel" | cut -c1-180
cp tuned/h100.json $OUT/h100.json
echo "## la tune bwd"; timeout 200 python3 -m kernelgen.cli tune --gpu h100 --op linear_attention --kernel bwd --flags g,none --shapes quick --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ linear\|Wrote\|rror" | cut -c1-240
echo "## la tune fwd"; timeout 200 python3 -m kernelgen.cli tune --gpu h100 --op linear_attention --kernel fwd --flags g,none --shapes 'B=8,T=4096,H=16,K=128,V=128,F=128;B=1,T=65536,H=16,K=128,V=128,F=128' --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ linear\|Wrote\|rror" | cut -c1-240
