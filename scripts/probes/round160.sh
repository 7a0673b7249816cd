#!/usr/bin/env bash
# Round 160 (session 18): the sliding-window backward entries re-tuned (the template file's kernels
# are one hash: the forward's edit staled them), then the sliding-window bench with every entry
# current.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 300 python3 -m kernelgen.cli tune --gpu h100 --op sliding_window_attention --kernel bwd --shapes 'B=8,T=4096,HQ=16,H=16,D=128,W=512;B=1,T=65536,HQ=16,H=16,D=128,W=512' --trials 6 --out $OUT/h100.json 2>&1 | grep -v -i warn | tail -12 | cut -c1-220
cp $OUT/h100.json tuned/h100.json
echo "## bench"; timeout 240 python3 bench.py --op sliding_window_attention --json $OUT/session18-h100-sliding_window_attention.json 2>&1 | grep "│" | grep -v "│  *│  *│  *│  *│ [a-z(]" | cut -c1-200
