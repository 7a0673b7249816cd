#!/usr/bin/env bash
# Round 14 (session 5): where the linear-attention decay gradient's terms come from (dg_terms:
# inline in the dq/dk passes, in the dv pass, or a row kernel), verified and timed by probe;
# GPU tests; the selective-scan tune; op-level fwd+bwd with the tuned sliding-window entries.
# Ran at commit 5bf34a8; the dg_terms knob was removed afterwards (docs/PERF.md, session 5).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
LA=B=8,T=4096,H=16,K=128,V=128
echo "## la dg_terms"; timeout 120 $P --template linear_attention.bwd --shape $LA --flags g --configs '[{"dg_terms":"inline"},{"dg_terms":"dv"},{"dg_terms":"kernel"},{"dg_terms":"dv","x_early":0},{"dg_terms":"dv","num_stages":3}]' 2>&1 | grep -v Warn | cut -c1-240
echo "## la none"; timeout 60 $P --template linear_attention.bwd --shape $LA --flags none --configs '[{"num_stages":3},{"chunk":128,"block_v":32}]' 2>&1 | grep -v Warn | cut -c1-240
echo "## op check"; timeout 60 python3 scripts/probes/op_check.py 2>&1 | grep -v Warn
echo "## gpu tests"; timeout 200 python3 -m pytest -q -m gpu -x tests/test_linear_attention.py tests/test_sliding_window_attention.py 2>&1 | tail -4
cp tuned/h100.json $OUT/h100.json
echo "## ss tune"; timeout 150 python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --kernel fwd,bwd --shapes quick --trials 8 --out $OUT/h100.json 2>&1 | grep -v Warn | tail -14
