#!/usr/bin/env bash
# Round 200 (session 22): every other test file on CUDA, in 15 parallel shards.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
files=$(ls tests/test_*.py | grep -v -E "_inputs|selective_scan_complex")
python3 scripts/probes/gpu_shards.py 15 540 $files
