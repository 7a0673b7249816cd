#!/usr/bin/env bash
# Round 35 (session 7): the selective-scan CUDA forward's default chunk is 16 now (round 34's probe:
# 0.572 vs 0.600 ms at 32) and 8 joined the space: probe 8 / 16 / 32, run the CUDA GPU tests,
# re-tune (selective_scan_cuda.py changed, so its entries are stale), bench the op.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
S=batch=8,dim=2048,L=4096,N=16
echo "## probe"; timeout 120 $P --template selective_scan.fwd --shape $S --configs '[{"chunk":8},{"chunk":32}]' 2>&1 | grep -v Warn
timeout 80 $P --template selective_scan.fwd --shape $S --flags z --configs '[{"chunk":32}]' 2>&1 | grep -v Warn
echo "## ss tests"; timeout 170 python3 -m pytest -q -m gpu tests/test_selective_scan_cuda.py tests/test_selective_scan.py 2>&1 | tail -2
cp tuned/h100.json $OUT/h100.json
echo "## ss tune"; timeout 170 python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --kernel fwd,bwd --shapes quick --trials 8 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│\|Wrote" | cut -c1-200
cp $OUT/h100.json tuned/h100.json
echo "## bench"; timeout 70 python3 bench.py --quick --graphs --op selective_scan --json $OUT/bench-selective_scan.json 2>&1 | grep -v Warn | grep "kernelgen" | cut -c1-200
