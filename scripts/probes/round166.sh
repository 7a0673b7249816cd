#!/usr/bin/env bash
# Round 166 (session 19): the D=64 W=128 bench shape had no entry of its own (dispatch borrowed the
# nearest one, tuned for D=128 W=512): tune its forward and backward.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json $OUT/h100.json
S='B=8,T=4096,HQ=16,H=16,D=64,W=128'
echo "## tune fwd"; timeout 280 python3 -m kernelgen.cli tune --gpu h100 --op sliding_window_attention --kernel fwd --shapes "$S" --trials 16 --out $OUT/h100.json 2>&1 | grep -v -i warn | tail -25 | cut -c1-220
echo "## tune bwd"; timeout 260 python3 -m kernelgen.cli tune --gpu h100 --op sliding_window_attention --kernel bwd --shapes "$S" --trials 10 --out $OUT/h100.json 2>&1 | grep -v -i warn | tail -25 | cut -c1-220
