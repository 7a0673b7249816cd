#!/usr/bin/env bash
# Round 81 (session 11): the output kernel hints its level loop's blocks into L2 at its start
# (block_prefetch, default), so their DRAM latency overlaps the intra-chunk part (round 80's ncu:
# long-scoreboard stalls 2.75 per instruction, L2 hit rate 51%). Slower everywhere: the knob was
# removed after this round.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## tests"; timeout 200 python3 -m pytest -q -x tests/test_loglinear_attention.py -k "gpu" 2>&1 | tail -1
for s in B=8,T=4096,H=16,K=128,V=128,L=13 B=8,T=4096,H=16,K=64,V=64,L=13 B=1,T=131072,H=16,K=128,V=128,L=18; do
  echo "## $s"; timeout 120 python3 -m kernelgen.tune.probe --template loglinear_attention.fwd --shape $s --configs '[{"block_prefetch":0},{},{"block_prefetch":0}]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|output_kernel" | cut -c1-120
done
