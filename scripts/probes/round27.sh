#!/usr/bin/env bash
# Round 27 (session 6): bench.py --quick (eager) for the attention families and the selective scan
# with every Triton kernel on the cached launch, peers side by side; rows to $OUT.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
for op in ${OPS:-linear_attention sliding_window_attention}; do
  echo "## $op"; timeout ${BENCH_TIMEOUT:-260} python3 bench.py --quick --op $op --json $OUT/bench-$op.json 2>&1 \
    | grep -v Warn | grep -E "^│|^┃" | cut -c1-230
done
