#!/usr/bin/env bash
# Round 117 (session 14): the cached launch now also caches calls that leave defaulted constexprs
# out (round 116: linear_attention's three backward passes took Triton's binding path on every
# launch). GPU tests of the launcher and linear_attention, the host profile again, and the
# fwd+bwd bench with CUDA graphs. Prediction: plain fwd+bwd host time per call -200..300 us, the
# eager bench rows back within ~5% of the graph ones.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## tests"; timeout 150 python3 -m pytest -q tests/test_launch.py tests/test_linear_attention.py -k "gpu" 2>&1 | tail -2
echo "## host"; timeout 120 python3 scripts/probes/host_profile.py 2>&1 | grep "##"
echo "## bench"; timeout 300 python3 bench.py --op linear_attention --mode fwd+bwd --graphs --json $OUT/la_graphs.json 2>&1 | grep -v -i warn | grep "|" | grep -v skipped | cut -c1-200
