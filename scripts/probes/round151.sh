#!/usr/bin/env bash
# Round 151 (session 17): the backward's level scans on their own tiles (rscan_bk / rscan_bv;
# round 150: 64 x 128 on 4 warps 0.362 ms vs 0.377 at 64 x 64, but the block pass spilled on those
# tiles, 0.21 -> 1.01), on top of scan_stages 3 + dqk_bv 128. dv_inline_l1 was dropped (round 150:
# level scans -0.074 ms, dv +0.084: 98 spilled registers).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cd scripts/probes
B='{"scan_stages":3,"dqk_bv":128'
timeout 280 python3 ll_variants.py 0 --bwd="[$B},$B,\"rscan_bv\":128},$B,\"rscan_bk\":128},$B,\"rscan_bv\":128,\"scan_stages\":2},$B,\"rscan_bv\":128,\"rscan_bk\":128,\"scan_warps\":8},$B,\"rscan_bv\":32,\"rscan_bk\":128}]" 2>&1 | grep -v -i warn
