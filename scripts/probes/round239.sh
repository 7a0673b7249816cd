#!/usr/bin/env bash
# Round 239 (session 26): the eager fwd+bwd's host time piece by piece (ss_host_parts.py).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 250 python3 scripts/probes/ss_host_parts.py 2>&1 | grep -v "^ *warn" | tail -40
