#!/usr/bin/env bash
# Round 154 (session 17): sliding-window forward tiles the tuner's 10-trial studies may not have
# sampled since TMA loads landed: 128-row tiles on 8 warps (two warpgroups share each K/V tile)
# at 2 and 3 stages, 32-key blocks under 128 rows, 2 stages at 64 rows; both target shapes.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
C='[{"BLOCK_M":128,"num_warps":8,"num_stages":2},{"BLOCK_M":128,"num_warps":8,"num_stages":3},{"BLOCK_M":128,"BLOCK_N":32,"num_warps":8,"num_stages":3},{"num_stages":2},{"BLOCK_M":128,"num_warps":8,"num_stages":2,"BLOCK_N":128}]'
for S in B=8,T=4096,HQ=16,H=16,D=128,W=512 B=1,T=65536,HQ=16,H=16,D=128,W=512; do
echo "## $S"; timeout 200 python3 -m kernelgen.tune.probe --template sliding_window_attention.fwd --shape $S --configs "$C" --kernels 2>&1 | grep -v -i warn | cut -c1-220
done
