#!/usr/bin/env bash
# Round 46 (session 8): loglinear_attention forward kernels one by one (output kernel, stacked and
# per-level block passes) per tile/warps/chunk, with registers and spills. (A fused one-pass
# forward ran in an earlier round 46 attempt: 1.456 ms, 255 registers, 16 spills; not kept.)
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
timeout 280 python3 scripts/probes/ll_out.py 0 2>&1 | tee $OUT/ll_out0.log
timeout 250 python3 scripts/probes/ll_out.py 1 2 3 2>&1 | tee $OUT/ll_out123.log
