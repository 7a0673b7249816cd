#!/usr/bin/env bash
# Round 132 (session 16): the sliding-window forward with TILES query tiles per program as one
# flattened loop (the next tile's key blocks load while this one finishes), at the two forward
# target shapes; baseline repeated in the same run.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
C='[{"TILES":2,"num_stages":2},{"TILES":4,"num_stages":2},{"TILES":8,"num_stages":2},{"TILES":2},{"num_stages":2},{},{"TILES":4,"num_stages":2},{"TILES":8,"num_stages":2},{"TILES":16,"num_stages":2}]'
for S in B=8,T=4096,HQ=16,H=16,D=128,W=512 B=1,T=65536,HQ=16,H=16,D=128,W=512; do
  echo "## $S"
  timeout 200 python3 -m kernelgen.tune.probe --template sliding_window_attention.fwd --shape $S --configs "$C" --kernels 2>&1 | grep -v -i warn | cut -c1-200
done
