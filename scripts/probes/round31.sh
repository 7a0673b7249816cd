#!/usr/bin/env bash
# Round 31 (session 7): linear_scan's look-back numbers its tiles by program id by default now (the
# atomic ticket is a knob): re-tune its six studies, run its GPU tests, bench it with fla side by side.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 260 python3 -m kernelgen.cli tune --gpu h100 --op linear_scan --trials 16 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | tail -14
cp $OUT/h100.json tuned/h100.json
echo "## gpu tests"; timeout 120 python3 -m pytest -q -m gpu tests/test_linear_scan.py 2>&1 | tail -3
echo "## bench"; timeout 150 python3 bench.py --op linear_scan --json $OUT/bench-linear_scan.json 2>&1 | grep -v Warn | tail -30
