#!/usr/bin/env bash
# Round 201 (session 22): round 200's files again in eight shards (fifteen ran out of GPU memory),
# every failure listed, each shard's output with short tracebacks under $OUT.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
files=$(ls tests/test_*.py | grep -v -E "_inputs|selective_scan_complex")
TB=short python3 scripts/probes/gpu_shards.py 8 540 $files
