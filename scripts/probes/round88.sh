#!/usr/bin/env bash
# Round 88 (session 12): descriptor blocks and the register cap in the forward's output kernel and
# descriptor blocks in the backward's dq/dk kernel (new defaults) changed the file: the GPU tests,
# then the loglinear forward and backward re-tuned at the quick shapes.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## tests"; timeout 100 python3 -m pytest -q -x tests/test_loglinear_attention.py -k "gpu" 2>&1 | tail -1
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 420 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel fwd,bwd --shapes quick --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│\|Wrote\|rror" | cut -c1-240
