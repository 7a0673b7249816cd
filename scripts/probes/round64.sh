#!/usr/bin/env bash
# Round 64 (session 10, branch next/loglinear-scaled-q, dropped: no gain at K = V = 128, slower at 64):
# q scaled by each level's weights before its product, accumulated into o on the tensor cores
# (config out_scale_q): GPU tests, then the output kernel per config.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
echo "## tests"; timeout 200 python3 -m pytest -q -x tests/test_loglinear_attention.py -k "gpu" 2>&1 | tail -2
for s in "K=128,V=128" "K=64,V=64"; do
echo "## fwd $s"; timeout 120 python3 -m kernelgen.tune.probe --template loglinear_attention.fwd --kernels \
    --shape B=8,T=4096,H=16,$s,L=13 \
    --configs '[{"out_scale_q":1},{"out_scale_q":1,"out_warps":8},{"out_scale_q":1,"out_bv":64},{"out_scale_q":1,"num_stages":2}]' 2>&1 | grep -v -i warn
done
