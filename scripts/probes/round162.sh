#!/usr/bin/env bash
# Round 162 (session 18): ANCHOR 2 (each row's score against its own key as the reference: one
# loop, no diagonal pass first) against ANCHOR 1 and the online loop, 32- and 64-key blocks,
# interleaved, at the two D = 128 shapes.
# (ANCHOR 2 here was the own-key reference; measured, not kept in the tree.)
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
C='[{"ANCHOR":2},{"ANCHOR":1},{"ANCHOR":0},{"ANCHOR":2,"BLOCK_N":64},{"ANCHOR":1,"BLOCK_N":64},{"ANCHOR":2},{"ANCHOR":1},{"ANCHOR":2,"BLOCK_N":64},{"ANCHOR":1,"BLOCK_N":64}]'
for S in B=8,T=4096,HQ=16,H=16,D=128,W=512 B=1,T=65536,HQ=16,H=16,D=128,W=512; do
echo "## $S"; timeout 200 python3 -m kernelgen.tune.probe --template sliding_window_attention.fwd --shape $S --configs "$C" 2>&1 | grep -v -i warn | cut -c1-150
done
