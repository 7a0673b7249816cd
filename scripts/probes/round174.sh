#!/usr/bin/env bash
# Round 174 (session 19, branch wip/swa-dkdv-qrows): the dK/dV kernel with queries as the products'
# rows (QROWS: S = Q·Kᵀ on 64-query blocks, P and dS transposed into dV, dK) against the shipped
# keys-as-rows kernel, interleaved, B=8 D=128 W=512, by kernel.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
S=B=8,T=4096,HQ=16,H=16,D=128,W=512
A='{"QROWS":1,"BLOCK_M_KV":64,"BLOCK_N_KV":64,"warps_kv":8}'
B='{"QROWS":1,"BLOCK_M_KV":64,"BLOCK_N_KV":64,"warps_kv":8,"stages_kv":3}'
C='{"QROWS":1,"BLOCK_M_KV":64,"BLOCK_N_KV":32,"warps_kv":4}'
timeout 300 python3 -m kernelgen.tune.probe --template sliding_window_attention.bwd --shape $S --configs "[{},$A,$B,$C,{},$A,$B,$C]" --kernels 2>&1 | grep -v -i warn | cut -c1-200
