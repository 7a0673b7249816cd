#!/usr/bin/env bash
# Round 140 (session 16): the dv kernel with its scores and Aᵀ·dO first (dv_at_first: sm_90 SASS
# 464 -> 8 spilled bytes for the shared dk/dv kernel, 254 -> 209 registers for dv alone), K = V =
# 128 and 64.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cd scripts/probes
timeout 250 python3 ll_variants.py 0 --bwd='[{"dv_at_first":1},{"dv_at_first":1,"dv_bk":128},{"dv_at_first":1,"dv_warps":8,"dv_bk":128},{"dk_with_dv":0,"dv_bk":128},{"dk_with_dv":0,"dv_bk":128,"dv_at_first":1},{}]' 2>&1 | grep -v -i warn
timeout 150 python3 ll_variants.py 1 --bwd='[{"dv_at_first":1},{"dv_at_first":1,"dk_with_dv":1,"dv_chain":1},{"dk_with_dv":1,"dv_chain":1}]' 2>&1 | grep -v -i warn
