#!/usr/bin/env bash
# Round 240 (session 26): the selective-scan backward's host time (ss_host_bwd.py).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 200 python3 scripts/probes/ss_host_bwd.py 2>&1 | grep -v "^ *warn\|UserWarning\|_warn_once" | tail -70
