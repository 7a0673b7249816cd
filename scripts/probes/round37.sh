#!/usr/bin/env bash
# Round 37 (session 7): the channel-layout forward with kSplit > 1 now computes each step's softplus
# once per channel (each of the kSplit threads takes kItems / kSplit steps, shuffles hand them
# round): split 2 doubles the warps per scheduler without repeating the softplus. Probe split 1 / 2
# / 4 at chunk 8, 16, 32, and the GPU tests of the CUDA forward.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
S=batch=8,dim=2048,L=4096,N=16
timeout 200 $P --template selective_scan.fwd --shape $S --configs '[{"split":2},{"split":2,"chunk":8},{"split":2,"chunk":32},{"split":2,"threads":256},{"split":4},{"split":4,"chunk":8},{"split":2,"occupancy":16}]' 2>&1 | grep -v Warn
timeout 60 $P --template selective_scan.fwd --shape $S --flags z --configs '[{"split":2}]' 2>&1 | grep -v Warn
echo "## tests"; timeout 200 python3 -m pytest -q -m gpu tests/test_selective_scan_cuda.py -k "channel or fwd" 2>&1 | tail -2
