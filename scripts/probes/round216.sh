#!/usr/bin/env bash
# Round 216 (session 22): batch 2 fwd+bwd read 1.35 ms in round 215 against 1.02 in round 208 (its
# torch rows 13-31% slower too): the same rows with CUDA-graph replay beside the eager ones, twice.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
for run in 1 2; do
timeout 120 python3 bench.py --op selective_scan --mode fwd+bwd --graphs --json $OUT/fwdbwd$run.json > /dev/null 2>&1
python3 -c "
import json
for r in json.load(open('$OUT/fwdbwd$run.json')):
    if r['provider'] == 'kernelgen': print($run, r['shape'], 'eager', round(r['ms'], 4), 'graph', r.get('graph_ms'))
"
done
