#!/usr/bin/env bash
# Round 155 (session 18): the sliding-window forward with its row max anchored on the diagonal
# blocks (ANCHOR: no rescale in the rest of the window) against the online loop, at the issue's
# shapes; then the sliding-window GPU tests with the new default.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
C='[{"ANCHOR":0},{"ANCHOR":1},{"ANCHOR":1,"num_stages":2},{"ANCHOR":1,"BLOCK_N":128,"num_stages":2}]'
for S in B=8,T=4096,HQ=16,H=16,D=128,W=512 B=1,T=65536,HQ=16,H=16,D=128,W=512 B=8,T=4096,HQ=16,H=16,D=64,W=128 B=4,T=4096,HQ=8,H=8,D=256,W=1024; do
echo "## $S"; timeout 150 python3 -m kernelgen.tune.probe --template sliding_window_attention.fwd --shape $S --configs "$C" --kernels 2>&1 | grep -v -i warn | cut -c1-220
done
echo "## gpu tests"; timeout 240 python3 -m pytest -q -x tests/test_sliding_window_attention.py -m gpu 2>&1 | tail -5
