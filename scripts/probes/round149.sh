#!/usr/bin/env bash
# Round 149 (session 17): scan_overlap (round 148) gave nothing (1.932 vs 1.931 ms: both passes
# are bandwidth-bound together), segments neither. Now: the stacked block pass on other tiles
# (fwd: the scan tiles only shape that pass), and the dq/dv kernels' stages and warps on top of
# scan_stages 3 + dqk_bv 128.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cd scripts/probes
timeout 280 python3 ll_variants.py 0 --fwd='[{"scan_bv":32},{"scan_bk":32},{"scan_bv":128,"scan_warps":8},{"scan_bk":128,"scan_warps":8},{"scan_bk":32,"scan_bv":32,"scan_warps":2}]' --bwd='[{"scan_stages":3,"dqk_bv":128},{"scan_stages":3,"dqk_bv":128,"num_stages":2},{"scan_stages":3,"dqk_bv":128,"dv_warps":8},{"scan_stages":3,"dqk_bv":128,"scan_warps":2,"scan_bk":32}]' 2>&1 | grep -v -i warn
