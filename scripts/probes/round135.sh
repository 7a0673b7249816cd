#!/usr/bin/env bash
# Round 135 (session 16): log-linear dk and dv in one chained kernel (dk_with_dv with dv_chain: one
# (k decayed)·RBlock and one (v decayed)·RBlockᵀ product per later-query state, whole V per
# program) against dk in its own kernel (round 134) and the default; K = V = 128.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cd scripts/probes
D='"dk_with_dv":1,"dv_chain":1,"dv_bv":128'
timeout 300 python3 ll_variants.py 0 --bwd="[{$D,\"dv_bk\":128,\"dv_warps\":8},{$D,\"dv_bk\":128,\"dv_warps\":8,\"dqk_tma\":0},{$D,\"dv_bk\":64,\"dv_warps\":8},{$D,\"dv_bk\":64,\"dv_warps\":4},{\"dk_kernel\":1,\"dk_bk\":128,\"dk_bv\":128,\"dk_warps\":4,\"dqk_tma\":0},{$D,\"dv_bk\":128,\"dv_warps\":8,\"num_stages\":2}]" 2>&1 | grep -v -i warn
timeout 150 python3 ll_variants.py 1 --bwd="[{$D,\"dv_bk\":64,\"dv_bv\":64,\"dv_warps\":8},{$D,\"dv_bk\":64,\"dv_bv\":64,\"dv_warps\":4}]" 2>&1 | grep -v -i warn
