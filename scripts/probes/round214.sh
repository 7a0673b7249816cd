#!/usr/bin/env bash
# Round 214 (session 22): unaligned rows without per-element branches; the branchless softplus.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 400 python3 scripts/probes/ss_unaligned_probe.py 2>&1 | tail -8
