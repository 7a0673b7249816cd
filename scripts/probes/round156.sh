#!/usr/bin/env bash
# Round 156 (session 18): the anchored sliding-window forward's two forms (1: the diagonal blocks
# online first, then the rest with their max held; 2: a scores-only pass over the diagonal blocks
# for the max, then one loop over the whole window) against the online loop, interleaved and
# repeated (round 155 showed +-3% between identical rows); 32-key blocks (3 CTAs an SM) and
# 128-row blocks on 8 warps with the anchor.
# (ANCHOR 2 here was a scores-only pass over the diagonal blocks; measured, not kept in the tree.)
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
C='[{"ANCHOR":0},{"ANCHOR":1},{"ANCHOR":2},{"ANCHOR":1,"BLOCK_N":32},{"ANCHOR":2,"BLOCK_N":32},{"ANCHOR":2,"BLOCK_M":128,"num_warps":8},{"ANCHOR":0},{"ANCHOR":1},{"ANCHOR":2},{"ANCHOR":0},{"ANCHOR":2}]'
for S in B=8,T=4096,HQ=16,H=16,D=128,W=512 B=1,T=65536,HQ=16,H=16,D=128,W=512; do
echo "## $S"; timeout 200 python3 -m kernelgen.tune.probe --template sliding_window_attention.fwd --shape $S --configs "$C" --kernels 2>&1 | grep -v -i warn | cut -c1-160
done
C='[{"ANCHOR":0},{"ANCHOR":2},{"ANCHOR":0},{"ANCHOR":2}]'
for S in B=8,T=4096,HQ=16,H=16,D=64,W=128 B=2,T=8192,HQ=32,H=8,D=128,W=4096; do
echo "## $S"; timeout 100 python3 -m kernelgen.tune.probe --template sliding_window_attention.fwd --shape $S --configs "$C" 2>&1 | grep -v -i warn | cut -c1-160
done
