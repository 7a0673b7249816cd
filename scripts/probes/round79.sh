#!/usr/bin/env bash
# Round 79 (session 11): live blocks read back from the stored blocks (stack_in_blocks, now the
# default) changed the file again: the loglinear forward and backward re-tuned at the quick shapes,
# then the full loglinear bench with those entries.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 300 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel fwd,bwd --shapes quick --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│\|Wrote\|rror" | cut -c1-240
cp $OUT/h100.json tuned/h100.json
echo "## bench"; timeout 270 python3 bench.py --op loglinear_attention --json $OUT/bench-loglinear_attention-full.json 2>&1 | grep -v -i warn | grep " | " | cut -c1-200
