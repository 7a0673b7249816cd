#!/usr/bin/env bash
# Round 189 (session 20, branch wip/swa-fwd-one-loop): the anchored forward as one pipelined loop
# (diagonal blocks first, then the rest, in a rotated order) against the two loops; interleaved.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
for S in B=8,T=4096,HQ=16,H=16,D=128,W=512 B=1,T=65536,HQ=16,H=16,D=128,W=512; do
C='[{"BLOCK_N":32},{"BLOCK_N":32,"ONE_LOOP":1},{"BLOCK_N":32},{"BLOCK_N":32,"ONE_LOOP":1},{"ONE_LOOP":1}]'
timeout 150 python3 -m kernelgen.tune.probe --template sliding_window_attention.fwd --shape $S --configs "$C" --kernels 2>&1 | grep -v -i warn | cut -c1-220
done
