#!/usr/bin/env bash
# Round 150 (session 17): dv_inline_l1 (an even chunk's level-1 later-query state from the next
# chunk's rows in the dv kernel; the level scans skip level 1: 1/7 of their 0.38 ms at K = V =
# 128). Offline: dv spills 152 -> 392 bytes. Also 64x128 level-scan tiles on 4 and 8 warps.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cd scripts/probes
timeout 280 python3 ll_variants.py 0 --bwd='[{"scan_stages":3,"dqk_bv":128},{"scan_stages":3,"dqk_bv":128,"dv_inline_l1":1},{"scan_stages":3,"dqk_bv":128,"scan_bv":128},{"scan_stages":3,"dqk_bv":128,"scan_bv":128,"scan_warps":8}]' 2>&1 | grep -v -i warn
