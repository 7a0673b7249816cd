#!/usr/bin/env bash
# Round 6 (session 3): the CUDA channel-layout forward of the selective scan: GPU tests, probes
# of its knobs against the Triton seq kernel, quick bench with the new default.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
timeout 200 python3 -m pytest -q -m gpu tests/test_selective_scan_cuda.py -k "channel or target_shape or fwd_dtypes" 2>&1 | grep -E "passed|failed|FAILED|Error|assert" | tail -12
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
S=batch=8,dim=2048,L=4096,N=16
timeout 150 $P --template selective_scan.fwd --shape $S --configs '[{"poly":1},{"poly":2},{"split":2},{"split":2,"poly":1},{"chunk":32},{"chunk":128},{"threads":64},{"threads":64,"split":2},{"occupancy":16,"split":2},{"backend":"triton","scan":"seq","block_d":16,"block_l":16,"num_warps":1,"exp_fma":2}]' 2>&1 | grep -v Warn
timeout 60 $P --template selective_scan.fwd --shape batch=2,dim=1536,L=2048,N=16 --configs '[{"layout":"channel","threads":32,"split":2,"chunk":64,"poly":0},{"layout":"channel","threads":64,"split":4,"chunk":64,"poly":0},{"layout":"channel","threads":32,"split":1,"chunk":64,"poly":1}]' 2>&1 | grep -v Warn
timeout 150 python3 -m pytest -q -m gpu tests/test_selective_scan.py 2>&1 | grep -E "passed|failed|FAILED|Error" | tail -8
timeout 100 python3 bench.py --quick --graphs --op selective_scan --json $OUT/bench-selective_scan.json 2>&1 | grep " | " | cut -c1-220
