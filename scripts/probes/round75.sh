#!/usr/bin/env bash
# Round 75 (session 11): the loglinear backward with dq building the level-1 blocks the block pass
# then skips (dq_inline_l1) against the levels-outer default; then the backward re-tuned at the
# quick shapes (the kernel file changed; forward in round 76). Copy $OUT/h100.json back.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## loglinear tests"; timeout 200 python3 -m pytest -q -x tests/test_loglinear_attention.py -k "gpu or layouts or inline_l1" 2>&1 | tail -1
for s in B=8,T=4096,H=16,K=128,V=128,L=13 B=8,T=4096,H=16,K=64,V=64,L=13; do
  echo "## $s"; timeout 150 python3 -m kernelgen.tune.probe --template loglinear_attention.bwd --shape $s --configs '[{"dq_inline_l1":1},{},{"dq_inline_l1":1}]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|dqk_kernel\|block_stack" | cut -c1-200
done
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 380 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel bwd --shapes quick --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│\|Wrote\|rror" | cut -c1-240
