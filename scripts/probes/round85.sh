#!/usr/bin/env bash
# Round 85 (session 12): the output kernel with its level blocks and the inline level-1 rows by
# tensor descriptor (out_tma), and a register cap for three programs per SM (out_maxnreg).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
for s in B=8,T=4096,H=16,K=128,V=128,L=13 B=8,T=4096,H=16,K=64,V=64,L=13; do
  echo "## fwd $s"; timeout 220 python3 -m kernelgen.tune.probe --template loglinear_attention.fwd --shape $s --configs '[{},{"out_tma":1,"num_stages":2},{"out_tma":1},{"out_tma":1,"out_maxnreg":168},{"out_tma":1,"num_stages":2,"out_maxnreg":168},{"out_tma":1,"out_maxnreg":128},{"out_tma":1,"num_stages":2}]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|output_kernel" | sed 's/"scan_bk.*//' | cut -c1-150
done
echo "## tests"; timeout 100 python3 -m pytest -q -x tests/test_loglinear_attention.py -k "gpu" 2>&1 | tail -1
