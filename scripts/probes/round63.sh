#!/usr/bin/env bash
# Round 63 (session 10): block-pass tiles with level-1 blocks inline (the pass is near the HBM
# floor: k/v re-read per tile plus the fp32 stack), per kernel.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
timeout 300 python3 -m kernelgen.tune.probe --template loglinear_attention.fwd --kernels \
    --shape B=8,T=4096,H=16,K=128,V=128,L=13 \
    --configs '[{"scan_bv":32},{"scan_bk":32},{"scan_bk":128,"scan_bv":32},{"scan_bk":128,"scan_warps":8},{"scan_bk":128,"scan_bv":128,"scan_warps":8},{"scan_bv":32,"scan_warps":2},{"scan_bk":32,"scan_bv":32,"scan_warps":2}]' 2>&1 | grep -v -i warn
