#!/usr/bin/env bash
# Round 213 (session 22): the channel forward's softplus without branches, and pipelined one sub-chunk ahead.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 400 python3 scripts/probes/ss_softplus_probe.py 2>&1 | tail -8
