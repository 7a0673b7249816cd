#!/usr/bin/env bash
# Round 96 (session 12): the dv kernel with one product per later-query state chained on dv's
# accumulator, the states by tensor descriptor (dv_chain; its fp32 [BK, BV] sum of them held 128
# registers a thread at K = V = 128), the GPU tests, then the loglinear entries re-tuned (the file
# changed; dv_chain is one of the backward's measured candidates).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## tests"; timeout 100 python3 -m pytest -q -x tests/test_loglinear_attention.py -k "gpu" 2>&1 | tail -1
for s in B=8,T=4096,H=16,K=128,V=128,L=13 B=8,T=4096,H=16,K=64,V=64,L=13; do
  echo "## bwd $s"; timeout 150 python3 -m kernelgen.tune.probe --template loglinear_attention.bwd --shape $s --configs '[{"dv_chain":1},{},{"dv_chain":1}]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|dv_kernel" | sed 's/"chunk.*//' | cut -c1-150
done
echo "## precision"; timeout 60 python3 scripts/probes/ll_stack_precision.py '[{}, {"dv_chain": 1}]' 2>&1 | grep -v -i warn
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 330 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel fwd,bwd --shapes quick --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ loglinear\|Wrote\|rror" | cut -c1-240
