#!/usr/bin/env bash
# Round 77 (session 11): the loglinear forward at chunk 128 (half the blocks, 128-row products in
# the output kernel on 8 warps, 64-wide V tiles: what check_config admits) against the tuned chunk 64.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
C='[{"chunk":128,"out_warps":8,"out_bv":64},{"chunk":128,"out_warps":8,"out_bv":64,"scan_warps":8},{"chunk":128,"out_warps":8,"out_bv":64,"out_inline_l1":0},{"chunk":128,"out_warps":8,"out_bv":64,"num_stages":2}]'
s=B=8,T=4096,H=16,K=128,V=128,L=13
echo "## $s"; timeout 200 python3 -m kernelgen.tune.probe --template loglinear_attention.fwd --shape $s --configs "$C" --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|_kernel" | cut -c1-220
