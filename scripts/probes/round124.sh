#!/usr/bin/env bash
# Round 124 (session 15): the mamba-ssm drop-in check with the new shipped entries (atomic block
# sums in the channel backward); the selective-scan forward's channel-layout knobs around the
# tuned config (is anything near the 0.40 ms target?).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## dropin"; timeout 150 python3 scripts/probes/ss_dropin_gpu.py 2>&1 | grep -v -i warn | tail -4
C='[{"split":4},{"split":4,"occupancy":16},{"split":1},{"chunk":16},{"chunk":32},{"threads":64},{"threads":256},{"occupancy":16},{"poly":1},{"poly":2},{"split":4,"chunk":16,"occupancy":16},{"split":4,"poly":1}]'
echo "## ss fwd probe"; timeout 300 python3 -m kernelgen.tune.probe --template selective_scan.fwd --shape batch=8,dim=2048,L=4096,N=16 --flags plain \
    --configs "$C" 2>&1 | grep -v -i warn | grep " ms \|rror\|fail" | cut -c1-220
