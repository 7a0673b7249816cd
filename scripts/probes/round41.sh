#!/usr/bin/env bash
# Round 41 (session 7): the selective-scan CUDA backward's neighbours of its default (split 4, steps 8,
# occupancy 16: 24 bytes of spills at 128 registers), which 8 TPE trials per study may have missed.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
S=batch=8,dim=2048,L=4096,N=16
timeout 400 $P --template selective_scan.bwd --shape $S --configs '[{"occupancy":8},{"steps":4},{"split":8,"steps":8},{"split":8,"steps":16},{"split":2,"steps":4},{"split":2,"steps":8,"occupancy":8},{"threads":256},{"threads":64},{"block_sum":"atomic"}]' 2>&1 | grep -v Warn
