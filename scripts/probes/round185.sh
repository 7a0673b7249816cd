#!/usr/bin/env bash
# Round 185 (session 20, branch wip/swa-fwd-pipe-s): the sliding-window forward with the next key
# block's scores issued before this block's softmax (PIPE_S: ptxas interleaves the exp2s with the
# next S wgmma; one wasted S product per loop). Rows interleaved, each twice.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
for S in B=8,T=4096,HQ=16,H=16,D=128,W=512 B=1,T=65536,HQ=16,H=16,D=128,W=512; do
C='[{"BLOCK_N":32},{"BLOCK_N":32,"PIPE_S":1},{"BLOCK_N":32,"PIPE_S":1,"num_stages":2},{"BLOCK_N":64,"PIPE_S":1,"num_stages":2},{"BLOCK_N":32},{"BLOCK_N":32,"PIPE_S":1},{"BLOCK_N":32,"PIPE_S":1,"num_stages":2}]'
timeout 200 python3 -m kernelgen.tune.probe --template sliding_window_attention.fwd --shape $S --configs "$C" 2>&1 | grep -v -i warn | cut -c1-220
done
S=B=8,T=4096,HQ=16,H=16,D=64,W=128
timeout 100 python3 -m kernelgen.tune.probe --template sliding_window_attention.fwd --shape $S --configs '[{"PIPE_S":1,"TMA":1},{},{"PIPE_S":1,"TMA":1}]' 2>&1 | grep -v -i warn | cut -c1-220
