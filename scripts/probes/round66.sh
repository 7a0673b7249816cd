#!/usr/bin/env bash
# Round 66 (session 10, main): the full loglinear bench after level-1 blocks became the output
# kernel's by default (round 61 ran with the re-tuned entries but the old default), and the GPU tests.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
echo "## bench"; timeout 300 python3 bench.py --op loglinear_attention --json $OUT/bench-loglinear_attention-full.json 2>&1 | grep -v -i warn | grep " | " | cut -c1-200
echo "## tests"; timeout 250 python3 -m pytest -q -x tests/test_loglinear_attention.py tests/test_loglinear_inputs.py -k "gpu" 2>&1 | tail -2
