#!/usr/bin/env bash
# Round 238 (session 26): where the eager fwd+bwd's host time goes (selective_scan, gated
# linear_attention, tiny shapes): cProfile dumps and torch op tables under $OUT.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 200 python3 scripts/probes/host_dump.py 2>&1 | grep -v "^ *warn" | tail -8
