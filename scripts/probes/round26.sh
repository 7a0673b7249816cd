#!/usr/bin/env bash
# Round 26 (session 6): selective_scan re-tuned (the template's grid now walks one product per
# backend: its source hash changed), its GPU tests plus the packed-sequence (cu_seqlens) tests on
# CUDA, then the mamba-ssm drop-in check with the shipped tuned configs active.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
cp tuned/h100.json $OUT/h100.json
echo "## ss tune"; timeout 200 python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --kernel fwd,bwd --shapes quick --trials 8 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | tail -10
cp $OUT/h100.json tuned/h100.json
echo "## ss tests"; timeout 200 python3 -m pytest -q -m gpu tests/test_selective_scan.py tests/test_selective_scan_cuda.py tests/test_selective_scan_inputs.py tests/test_selective_scan_complex.py 2>&1 | tail -3
echo "## packed on cuda"; timeout 60 python3 -m pytest -q tests/test_selective_scan_inputs.py -k packed 2>&1 | tail -3
echo "## drop-in"; timeout 150 python3 scripts/probes/ss_dropin_gpu.py 2>&1 | grep -v Warn | tail -25
