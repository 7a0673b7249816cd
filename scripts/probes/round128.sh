#!/usr/bin/env bash
# Round 128 (session 15): where the op's fwd+bwd goes at batch 2, dim 1536, L 2048, N 16 with the
# new entries (warp-layout forward writing checkpoints in training; 1.03 ms in round 127's bench).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 120 python3 scripts/probes/ss_bwd_split.py 2 1536 2048 16 2>&1 | grep -v -i warn
