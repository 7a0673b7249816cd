#!/usr/bin/env bash
# Round 39 (session 7): the selective-scan backwards' sigmoid(z) by __fdividef (the IEEE division
# was a slow-path call per element). Backward GPU tests, re-tune (the .cu changed), bench, and the
# mamba-ssm drop-in check with the shipped configs (forward now two threads per channel).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
echo "## bwd tests"; timeout 150 python3 -m pytest -q -m gpu tests/test_selective_scan_cuda.py tests/test_selective_scan.py -k "bwd or backward or autograd or training" 2>&1 | tail -2
cp tuned/h100.json $OUT/h100.json
echo "## ss tune"; timeout 170 python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --kernel fwd,bwd --shapes quick --trials 8 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│\|Wrote" | cut -c1-200
cp $OUT/h100.json tuned/h100.json
echo "## bench"; timeout 60 python3 bench.py --quick --graphs --op selective_scan --json $OUT/bench-selective_scan.json 2>&1 | grep -v Warn | grep "kernelgen" | cut -c1-200
echo "## drop-in"; timeout 150 python3 scripts/probes/ss_dropin_gpu.py 2>&1 | grep -v Warn | tail -8
