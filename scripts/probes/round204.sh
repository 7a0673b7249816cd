#!/usr/bin/env bash
# Round 204 (session 22): the options CuPy passes to NVRTC.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
python3 scripts/probes/cupy_options.py 2>&1 | tail -20
