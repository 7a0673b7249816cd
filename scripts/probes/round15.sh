#!/usr/bin/env bash
# Round 15 (session 5): the decay-gradient terms' placement (probe: verified + timed; op level),
# then the sliding-window benches with FlexAttention side by side (tuned entries from round 13).
# Ran at commit 5bf34a8; the dg_terms knob was removed afterwards (docs/PERF.md, session 5).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
LA=B=8,T=4096,H=16,K=128,V=128,F=128
echo "## la dg_terms"; timeout 150 $P --template linear_attention.bwd --shape $LA --flags g --configs '[{"dg_terms":"inline"},{"dg_terms":"dv"},{"dg_terms":"kernel"},{"dg_terms":"dv","x_early":0},{"dg_terms":"dv","num_stages":3}]' 2>&1 | grep -v Warn | cut -c1-260
echo "## la op"; timeout 90 python3 scripts/probes/la_dg_terms.py 2>&1 | grep -v "Warn\|config_for"
echo "## la none"; timeout 60 $P --template linear_attention.bwd --shape $LA --flags none --configs '[{"num_stages":3},{"num_stages":1}]' 2>&1 | grep -v Warn | cut -c1-260
for mode in fwd fwd+bwd; do
  echo "## swa bench $mode"; timeout 110 python3 bench.py --quick --graphs --mode $mode --op sliding_window_attention --json $OUT/bench-swa-$mode.json 2>&1 | grep " | " | cut -c1-220
done
