#!/usr/bin/env bash
# Round 147 (session 17): the stacked block pass (fwd, and recomputed in bwd) runs 512 programs at
# 168 registers, three per SM: 1.29 waves (ncu, round 146). Capped at 128 (stack_maxnreg; 104
# spilled bytes offline) all fit in one wave. With the round-146 winners (scan_stages 3: level
# scans 0.401 -> 0.377; dqk_bv 128: dq 0.676 -> 0.639) combined.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cd scripts/probes
timeout 280 python3 ll_variants.py 0 --fwd='[{"stack_maxnreg":128}]' --bwd='[{"stack_maxnreg":128},{"scan_stages":3,"dqk_bv":128},{"scan_stages":3,"dqk_bv":128,"stack_maxnreg":128},{"scan_stages":3,"dqk_bv":128,"stack_maxnreg":128,"dqk_warps":8}]' 2>&1 | grep -v -i warn
