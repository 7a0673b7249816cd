#!/usr/bin/env bash
# Round 7: channel-layout forward v2 (branch-free softplus and B/C staging, raw prefetch of u/delta/z).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
S=batch=8,dim=2048,L=4096,N=16
timeout 150 $P --template selective_scan.fwd --shape $S --configs '[{"poly":1},{"poly":2},{"split":2},{"split":2,"poly":1},{"chunk":32},{"split":2,"chunk":32},{"occupancy":16,"split":2},{"backend":"triton","scan":"seq","block_d":16,"block_l":16,"num_warps":1,"exp_fma":2}]' 2>&1 | grep -v Warn
timeout 200 python3 -m pytest -q -m gpu tests/test_selective_scan_cuda.py -k "channel or target_shape" 2>&1 | grep -E "passed|failed|FAILED|Error |assert" | tail -12
timeout 100 python3 bench.py --quick --graphs --op selective_scan --json $OUT/bench-selective_scan.json 2>&1 | grep " | " | grep -v "torch ref\|mamba" | cut -c1-220
