#!/usr/bin/env bash
# Round 203 (session 22): NVRTC routes compared; the packaging test without PYTHONPATH.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
python3 scripts/probes/nvrtc_cupy.py 2>&1 | tail -12
python3 -m pytest -q -p no:cacheprovider --tb=short tests/test_packaging.py 2>&1 | tail -15
