#!/usr/bin/env bash
# Round 51 (session 8): loglinear_attention after round 50's race (two segments wrote the last
# chunk's decays) and with the segment code compiled out of whole-sequence passes: GPU tests,
# re-tune (fwd, bwd), then the loglinear bench with its peers.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
echo "## tests"; timeout 130 python3 -m pytest -q -x tests/test_loglinear_attention.py 2>&1 | tee $OUT/gpu-tests.log | tail -2
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 200 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel fwd,bwd --shapes quick --trials 8 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│\|Wrote" | cut -c1-220
cp $OUT/h100.json tuned/h100.json
echo "## bench"; timeout 150 python3 bench.py --quick --op loglinear_attention --json $OUT/bench-loglinear_attention.json 2>&1 | grep -v Warn | cut -c1-200 | tail -30
