#!/usr/bin/env bash
# Round 34 (session 7): the selective-scan CUDA forward reads B_t / C_t as 16-byte vectors (32 scalar
# shared loads per step shared the MIO queue with the step's 16 exps) and silu's division is
# __fdividef. Probe it against the old config's neighbours, run the GPU tests, re-tune (the .cu
# changed, so every selective_scan entry is stale), bench.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
S=batch=8,dim=2048,L=4096,N=16
echo "## probe"; timeout 150 $P --template selective_scan.fwd --shape $S --configs '[{"split":2},{"chunk":16},{"chunk":64},{"occupancy":16}]' 2>&1 | grep -v Warn
timeout 60 $P --template selective_scan.fwd --shape $S --flags z 2>&1 | grep -v Warn
echo "## ss tests"; timeout 170 python3 -m pytest -q -m gpu tests/test_selective_scan.py tests/test_selective_scan_cuda.py 2>&1 | tail -3
cp tuned/h100.json $OUT/h100.json
echo "## ss tune"; timeout 170 python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --kernel fwd,bwd --shapes quick --trials 8 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | tail -10
cp $OUT/h100.json tuned/h100.json
echo "## bench"; timeout 90 python3 bench.py --quick --graphs --op selective_scan --json $OUT/bench-selective_scan.json 2>&1 | grep -v Warn | grep "kernelgen" | cut -c1-220
