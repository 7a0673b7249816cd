#!/usr/bin/env bash
# Round 42 (session 7): linear_scan fwd+bwd at the target shape, bench.py --quick in three separate
# processes on one host (eager is host-bound there: how much does it spread?).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
for run in 1 2 3; do
  timeout 100 python3 bench.py --quick --graphs --op linear_scan --mode fwd+bwd --json $OUT/bench-fwdbwd-$run.json 2>&1 \
    | grep -v Warn | grep "kernelgen\|fla chunk" | cut -c1-160
done
