#!/usr/bin/env bash
# Round 243 (session 26): the long-sequence backward's segments (la_long_bwd.py); bench of
# linear_attention and selective_scan with this session's changes.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 100 python3 scripts/probes/la_long_bwd.py 2>&1 | grep -v "^ *warn" | tail -3
timeout 220 python3 bench.py --op linear_attention --json $OUT/session26-h100-linear_attention.json 2>&1 | tail -30
timeout 200 python3 bench.py --op selective_scan --json $OUT/session26-h100-selective_scan.json 2>&1 | tail -24
