#!/usr/bin/env bash
# Round 161 (session 18): the sliding-window backward re-tuned with session 5's winner (a third
# dK/dV stage) as a candidate, then the bench again (round 160's machine read every row 1-6% slower
# than round 158's with the same forward).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 300 python3 -m kernelgen.cli tune --gpu h100 --op sliding_window_attention --kernel bwd --shapes 'B=8,T=4096,HQ=16,H=16,D=128,W=512;B=1,T=65536,HQ=16,H=16,D=128,W=512' --trials 6 --out $OUT/h100.json 2>&1 | grep -v -i warn | grep "│ slid\|│  " | cut -c1-200
cp $OUT/h100.json tuned/h100.json
echo "## bench"; timeout 240 python3 bench.py --op sliding_window_attention --json $OUT/session18-h100-sliding_window_attention.json 2>&1 | grep "│" | grep -v "│  *│  *│  *│  *│ [a-z(]" | cut -c1-200
