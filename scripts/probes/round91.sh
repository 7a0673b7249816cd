#!/usr/bin/env bash
# Round 91 (session 12): the output kernel with one descriptor (blocks; the inline level-1 rows by
# pointer again: each descriptor costs the host a tensor-map encode per launch): registers under
# the cap, host time, the GPU tests, and the loglinear entries re-tuned.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## tests"; timeout 100 python3 -m pytest -q -x tests/test_loglinear_attention.py -k "gpu" 2>&1 | tail -1
for s in B=8,T=4096,H=16,K=128,V=128,L=13 B=8,T=4096,H=16,K=64,V=64,L=13; do
  echo "## fwd $s"; timeout 100 python3 -m kernelgen.tune.probe --template loglinear_attention.fwd --shape $s --configs '[]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|output_kernel" | sed 's/"scan_bk.*//' | cut -c1-150
  timeout 100 python3 scripts/probes/ll_host.py $s '[{}]' 2>&1 | grep -v -i "warn\|tuned" | cut -c1-300
done
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 330 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel fwd,bwd --shapes quick --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│\|Wrote\|rror" | cut -c1-240
