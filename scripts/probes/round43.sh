#!/usr/bin/env bash
# Round 43 (session 7): with split threads per channel, the forward's y shares meet in a
# transpose-reduce (each thread finishes, gates and stores kItems / split of the steps) instead of
# a full xor-sum per step. Probe (compare round 38-39: 0.528 / z 0.603), forward GPU tests,
# re-tune, bench.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
S=batch=8,dim=2048,L=4096,N=16
echo "## probe"; timeout 100 $P --template selective_scan.fwd --shape $S --configs '[{"split":4},{"split":1,"chunk":16}]' 2>&1 | grep -v Warn
timeout 60 $P --template selective_scan.fwd --shape $S --flags z 2>&1 | grep -v Warn
echo "## fwd tests"; timeout 150 python3 -m pytest -q -m gpu tests/test_selective_scan_cuda.py tests/test_selective_scan.py -k "fwd or forward or op or step or stream" 2>&1 | tail -2
cp tuned/h100.json $OUT/h100.json
echo "## ss tune"; timeout 170 python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --kernel fwd,bwd --shapes quick --trials 8 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│\|Wrote" | cut -c1-200
echo "## bench"; timeout 60 python3 bench.py --quick --graphs --op selective_scan --json $OUT/bench-selective_scan.json 2>&1 | grep -v Warn | grep "kernelgen" | cut -c1-200
