#!/usr/bin/env bash
# Round 157 (session 18): the sliding-window GPU tests with the anchored forward (mode 2 dropped),
# then both forward entries re-tuned (the forward's hash moved).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## gpu tests"; timeout 200 python3 -m pytest -q -x tests/test_sliding_window_attention.py -m gpu 2>&1 | tail -2
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 330 python3 -m kernelgen.cli tune --gpu h100 --op sliding_window_attention --kernel fwd --shapes 'B=8,T=4096,HQ=16,H=16,D=128,W=512;B=1,T=65536,HQ=16,H=16,D=128,W=512' --trials 6 --out $OUT/h100.json 2>&1 | grep -v -i warn | tail -30 | cut -c1-220
