#!/usr/bin/env bash
# Round 235 (session 25): the decode op's 0.146 ms at batch 32, dim 2048, N 128 (bench round 234).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 100 python3 scripts/probes/ss_step_host.py 2>&1 | grep -v "^ *warn" | tail -12
