#!/usr/bin/env bash
# Round 206 (session 22): the channel forward's steps per sub-chunk, 8 / 16 / 32.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 400 python3 scripts/probes/ss_items_probe.py 2>&1 | tail -12
