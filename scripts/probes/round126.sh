#!/usr/bin/env bash
# Round 126 (session 15): the warp-layout forward writes the backwards' checkpoints (training runs
# it instead of falling back to the Triton forward); both templates' candidates are every backend's
# default. GPU tests, then selective_scan's target entries re-tuned (the .cu is in their hash).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## tests"; timeout 290 python3 -m pytest -q tests/test_selective_scan_cuda.py tests/test_selective_scan.py -k "gpu" 2>&1 | grep -E "passed|failed|FAILED|Error" | head -12
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 280 python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --kernel fwd,bwd --flags plain,z --shapes batch=8,dim=2048,L=4096,N=16 --trials 5 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ selective\|Wrote\|rror" | cut -c1-240
