#!/usr/bin/env bash
# Round 107 (session 13): every normalised forward as den (v = 1, _fwd_general_kernel) then the
# output kernel dividing; the identity / elu1 maps now take the transposed _fwd_kernel for the
# output (before: identity+norm 0.441-0.465 in the general kernel, g_gamma+elu1+norm 0.85 in the
# transposed one with z carried). GPU tests, probes, then linear_attention re-tuned (changed file).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
P="python3 -m kernelgen.tune.probe"
echo "## tests"; timeout 100 python3 -m pytest -q -x tests/test_linear_attention.py -k "gpu" 2>&1 | tail -1
for f in g+norm g_gamma+elu1+norm none+relu+norm g; do
echo "## fwd $f"; timeout 60 $P --template linear_attention.fwd --shape B=8,T=4096,H=16,K=128,V=128,F=128 --flags $f --configs '[]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|kernel" | cut -c1-180
done
echo "## based norm"; timeout 60 $P --template linear_attention.fwd_taylor2 --shape B=8,T=4096,H=16,K=16,V=128,F=273 --flags none+taylor2+norm --configs '[]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|kernel" | cut -c1-180
cp tuned/h100.json $OUT/h100.json
echo "## la tune bwd"; timeout 200 python3 -m kernelgen.cli tune --gpu h100 --op linear_attention --kernel bwd --flags g,none --shapes quick --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ linear\|Wrote\|rror" | cut -c1-240
echo "## la tune fwd"; timeout 200 python3 -m kernelgen.cli tune --gpu h100 --op linear_attention --kernel fwd --flags g,none --shapes 'B=8,T=4096,H=16,K=128,V=128,F=128;B=1,T=65536,H=16,K=128,V=128,F=128' --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ linear\|Wrote\|rror" | cut -c1-240
