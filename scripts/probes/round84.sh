#!/usr/bin/env bash
# Round 84 (session 12): the loglinear output kernel's level blocks by tensor descriptor (out_tma:
# global -> shared without the 64 registers a 128x128 tile takes on its way): time and registers at
# K = V = 128 and 64, with one and two stages.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
for s in B=8,T=4096,H=16,K=128,V=128,L=13 B=8,T=4096,H=16,K=64,V=64,L=13; do
  echo "## fwd $s"; timeout 200 python3 -m kernelgen.tune.probe --template loglinear_attention.fwd --shape $s --configs '[{},{"out_tma":1},{"out_tma":1,"num_stages":2},{"out_tma":1,"num_stages":3},{"out_tma":1,"out_warps":8},{"out_tma":1,"out_bv":64},{}]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|output_kernel" | sed 's/"scan_bk.*//' | cut -c1-150
done
echo "## tests"; timeout 200 python3 -m pytest -q -x tests/test_loglinear_attention.py tests/test_sliding_window_attention.py -k "gpu" 2>&1 | tail -1
