#!/usr/bin/env bash
# Round 48 (session 8): loglinear_attention backward kernels per config with real registers (the
# template's register model rejected the forward's best output config in round 47).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
timeout 400 python3 scripts/probes/ll_bwd.py 0 2>&1 | tee $OUT/ll_bwd0.log
timeout 150 python3 scripts/probes/ll_bwd.py 1 2>&1 | tee $OUT/ll_bwd1.log
