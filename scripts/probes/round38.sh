#!/usr/bin/env bash
# Round 38 (session 7): the channel-layout forward shares silu(z) per channel too, and its default
# is two threads per channel with 8-step chunks (round 37: 0.534 vs 0.572 ms). Probe, GPU tests,
# re-tune (selective_scan_cuda.py changed), bench.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
S=batch=8,dim=2048,L=4096,N=16
echo "## probe"; timeout 100 $P --template selective_scan.fwd --shape $S --configs '[{"split":1,"chunk":16},{"chunk":16}]' 2>&1 | grep -v Warn
timeout 80 $P --template selective_scan.fwd --shape $S --flags z --configs '[{"split":1,"chunk":16}]' 2>&1 | grep -v Warn
echo "## ss tests"; timeout 200 python3 -m pytest -q -m gpu tests/test_selective_scan_cuda.py tests/test_selective_scan.py 2>&1 | tail -2
cp tuned/h100.json $OUT/h100.json
echo "## ss tune"; timeout 170 python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --kernel fwd,bwd --shapes quick --trials 8 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│\|Wrote" | cut -c1-200
cp $OUT/h100.json tuned/h100.json
echo "## bench"; timeout 70 python3 bench.py --quick --graphs --op selective_scan --json $OUT/bench-selective_scan.json 2>&1 | grep -v Warn | grep "kernelgen" | cut -c1-200
