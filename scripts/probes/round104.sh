#!/usr/bin/env bash
# Round 104 (session 13): the normalised forward's sums on tensor cores (norm_dots): Based (taylor2,
# K=16, V=128) normalised read 7.8 ms in round 103's bench (2.5 KB a thread spilled), and the
# identity map normalised, against the old element-wise sums; chunk / tile / warps around it.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
P="python3 -m kernelgen.tune.probe"
echo "## based norm"; timeout 200 $P --template linear_attention.fwd_taylor2 --shape B=8,T=4096,H=16,K=16,V=128,F=273 --flags none+taylor2+norm --configs '[{"norm_dots": 0}, {"chunk": 32}, {"chunk": 32, "block_v": 16}, {"chunk": 32, "num_warps": 8}, {"chunk": 16, "block_v": 16}, {"chunk": 16, "block_v": 32}]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|kernel" | cut -c1-180
echo "## based plain"; timeout 100 $P --template linear_attention.fwd_taylor2 --shape B=8,T=4096,H=16,K=16,V=128,F=273 --flags none+taylor2 --configs '[{"chunk": 32, "block_v": 16}]' 2>&1 | grep -v -i warn | grep " ms \|rror" | cut -c1-180
echo "## identity g+norm"; timeout 120 $P --template linear_attention.fwd --shape B=8,T=4096,H=16,K=128,V=128,F=128 --flags g+norm --configs '[{"norm_dots": 0}]' 2>&1 | grep -v -i warn | grep " ms \|rror" | cut -c1-180
