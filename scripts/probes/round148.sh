#!/usr/bin/env bash
# Round 148 (session 17): the block pass beside the level scans on a side stream (scan_overlap:
# the block pass's 512 programs are 1.29 waves at three per SM), or in segments (stack_segment)
# for more, shorter programs; on top of the round-147 winners (scan_stages 3, dqk_bv 128).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cd scripts/probes
timeout 280 python3 ll_variants.py 0 --fwd='[{"stack_segment":32},{"stack_segment":16}]' --bwd='[{"scan_stages":3,"dqk_bv":128},{"scan_stages":3,"dqk_bv":128,"scan_overlap":1},{"scan_stages":3,"dqk_bv":128,"stack_segment":32},{"scan_stages":3,"dqk_bv":128,"stack_segment":16},{"scan_stages":3,"dqk_bv":128,"scan_overlap":1,"stack_segment":32}]' 2>&1 | grep -v -i warn
