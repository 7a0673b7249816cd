#!/usr/bin/env bash
# Round 143 (session 16, branch wip/ll-dq-intra-first): the dq kernel with its in-chunk pairs
# before the levels (dq_intra_first: dA and k not live through them; sm_90 SASS: 246 registers
# either way on 8 warps, 672 -> 232 spilled bytes on 4), K = V = 128.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cd scripts/probes
timeout 200 python3 ll_variants.py 0 --bwd='[{"dq_intra_first":1},{"dq_intra_first":1,"dqk_warps":4},{"dq_intra_first":1,"dqk_warps":4,"dqk_bv":32}]' 2>&1 | grep -v -i warn
