#!/usr/bin/env bash
# Round 130 (session 15): round 129's op split at batch 2, dim 1536 in full (1.38 ms against 0.63 of
# its two scan kernels: which kernel or host time is the rest?).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 100 python3 scripts/probes/ss_bwd_split.py 2 1536 2048 16 2>&1 | grep -v -i warn
timeout 100 python3 scripts/probes/ss_bwd_split.py 2 1536 2048 16 2>&1 | grep -v -i warn | grep "fwd"
