#!/usr/bin/env bash
# Round 47 (session 8): loglinear_attention with the output kernel's row weights back after the
# product (round 46's in-place form cost ~0.08 ms at out_bv 64) and the stacked block pass
# prefetching the next chunk: the file's GPU tests, the default candidates per shape, then
# out_bv 32 at K = V = 64 alone (an illegal address in round 46).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
timeout 200 python3 -m pytest -q tests/test_loglinear_attention.py 2>&1 | tee $OUT/gpu-tests.log | tail -3
timeout 220 python3 scripts/probes/ll_out.py --short 0 1 2 3 2>&1 | tee $OUT/ll_out.log
CUDA_LAUNCH_BLOCKING=1 timeout 60 python3 scripts/probes/ll_out.py --bv32 1 2>&1 | tail -5 | tee $OUT/ll_bv32.log
