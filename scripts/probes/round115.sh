#!/usr/bin/env bash
# Round 115 (session 14): round 114's plain (no decay) fwd+bwd read 1.000 ms against 0.892 in
# session 13 with the same kernels and configs. Eager against CUDA-graph replay (device time
# without the host) to tell host time from device time. Prediction: device ~0.89, host the rest.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## bench"; timeout 560 python3 bench.py --op linear_attention --mode fwd+bwd --graphs --json $OUT/la_graphs.json 2>&1 | grep -v -i warn | grep "|" | cut -c1-200
