#!/usr/bin/env bash
# Round 87 (session 12): the backward's dq/dk kernel reading its level blocks by tensor descriptor
# (dqk_tma); the forward's new defaults (descriptor blocks, register cap) at the other bench shapes.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
for s in B=8,T=4096,H=16,K=128,V=128,L=13 B=8,T=4096,H=16,K=64,V=64,L=13; do
  echo "## bwd $s"; timeout 250 python3 -m kernelgen.tune.probe --template loglinear_attention.bwd --shape $s --configs '[{},{"dqk_tma":1},{"dqk_tma":1,"num_stages":3},{"dqk_tma":1,"num_stages":1},{}]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|dqk_kernel" | sed 's/"chunk.*//' | cut -c1-150
done
for s in B=2,T=16384,H=16,K=64,V=64,L=15 B=1,T=131072,H=16,K=128,V=128,L=18; do
  echo "## fwd $s"; timeout 200 python3 -m kernelgen.tune.probe --template loglinear_attention.fwd --shape $s --configs '[{"out_tma":0,"out_maxnreg":0},{},{"out_tma":0,"out_maxnreg":0}]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|output_kernel" | sed 's/"scan_bk.*//' | cut -c1-150
done
echo "## tests"; timeout 100 python3 -m pytest -q -x tests/test_loglinear_attention.py -k "gpu" 2>&1 | tail -1
