#!/usr/bin/env bash
# Round 133 (session 16): the log-linear dq kernel alone (dk moved out: dk_with_dv, whose dv+dk
# kernel time is not the question here) under other tiles, warps and stages, K = V = 128.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cd scripts/probes
D='"dk_with_dv":1,"dv_bv":128,"dv_bk":32,"dv_warps":4'
timeout 400 python3 ll_variants.py 0 --bwd="[{$D},{$D,\"dqk_bv\":128},{$D,\"dqk_bv\":32},{$D,\"dqk_bk\":64,\"dqk_warps\":4},{$D,\"dqk_bk\":64,\"dqk_bv\":128,\"dqk_warps\":4},{$D,\"num_stages\":2},{$D,\"num_stages\":1},{$D,\"dq_inline_l1\":0},{$D,\"dqk_tma\":0}]" 2>&1 | grep -v -i warn
