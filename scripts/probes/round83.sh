#!/usr/bin/env bash
# Round 83 (session 12): the loglinear output kernel with each level's row weights on q
# (out_prescale: the level products chain on one accumulator, wgmma stays asynchronous): time at
# K = V = 128 and 64, precision against the float64 reference, the GPU tests.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## precision"; timeout 120 python3 scripts/probes/ll_stack_precision.py '[{}, {"out_prescale": 1}]' 2>&1 | grep -v -i warn
for s in B=8,T=4096,H=16,K=128,V=128,L=13 B=8,T=4096,H=16,K=64,V=64,L=13; do
  echo "## fwd $s"; timeout 150 python3 -m kernelgen.tune.probe --template loglinear_attention.fwd --shape $s --configs '[{},{"out_prescale":1},{"out_prescale":1,"num_stages":2},{"out_prescale":1,"out_bv":64},{"out_prescale":1,"out_bv":64,"num_stages":2},{}]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|output_kernel" | cut -c1-150
done
echo "## tests"; timeout 200 python3 -m pytest -q -x tests/test_loglinear_attention.py -k "gpu" 2>&1 | tail -1
