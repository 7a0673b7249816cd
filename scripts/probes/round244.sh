#!/usr/bin/env bash
# Round 244 (session 26): linear_attention's gpu tests after the shape-knob dispatch change; the
# decode step's tests (B and C in either form) on the GPU.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 130 python3 -m pytest -q -p no:cacheprovider tests/test_linear_attention.py tests/test_dispatch.py -m "gpu or not gpu" -k "gpu or shape_knobs" 2>&1 | tail -2
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_selective_scan.py -m "gpu or not gpu" -k "decode or step or head_form" 2>&1 | tail -2
