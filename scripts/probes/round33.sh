#!/usr/bin/env bash
# Round 33 (session 7): (1) the selective-scan CUDA forward with more threads per channel (split 4
# and 8: 4x / 8x the warps per scheduler, per-step work repeated per thread) at the shape;
# (2) bench.py --graphs for linear_scan (eager was host-bound on this lease's host in round 31).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
S=batch=8,dim=2048,L=4096,N=16
echo "## selective_scan fwd"
timeout 240 $P --template selective_scan.fwd --shape $S --configs '[{"split":2},{"split":4},{"split":4,"threads":256},{"split":4,"chunk":16},{"split":4,"occupancy":16},{"split":8},{"split":8,"threads":256},{"split":8,"occupancy":16},{"split":4,"chunk":64}]' 2>&1 | grep -v Warn
echo "## linear_scan bench --graphs"
timeout 200 python3 bench.py --graphs --op linear_scan --json $OUT/bench-linear_scan-graphs.json 2>&1 | grep -v Warn | grep "kernelgen\|fla chunk" | cut -c1-250
