#!/usr/bin/env bash
# Round 134 (session 16): log-linear dk in a kernel of its own (dk_kernel: the dv kernel's chained
# form mirrored), dq alone in the dq/dk kernel; per-kernel split against the default.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cd scripts/probes
D='"dk_kernel":1'
timeout 250 python3 ll_variants.py 0 --bwd="[{$D,\"dk_bk\":128,\"dk_bv\":128,\"dk_warps\":4},{$D,\"dk_bk\":128,\"dk_bv\":64,\"dk_warps\":4},{$D,\"dk_bk\":64,\"dk_bv\":128,\"dk_warps\":4},{$D,\"dk_bk\":128,\"dk_bv\":128,\"dk_warps\":8},{$D,\"dk_bk\":128,\"dk_bv\":128,\"dk_warps\":4,\"dqk_tma\":0},{$D,\"dk_bk\":64,\"dk_bv\":64,\"dk_warps\":4}]" 2>&1 | grep -v -i warn
timeout 150 python3 ll_variants.py 1 --bwd="[{$D,\"dk_bk\":64,\"dk_bv\":64,\"dk_warps\":4},{$D,\"dk_bk\":64,\"dk_bv\":64,\"dk_warps\":4,\"dqk_warps\":8}]" 2>&1 | grep -v -i warn
