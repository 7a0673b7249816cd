#!/usr/bin/env bash
# Round 208 (session 22): after the re-tune (round 207), the selective-scan bench and the GPU tests
# of both its test files.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
python3 bench.py --op selective_scan --json $OUT/session22-h100-selective_scan.json 2>&1 | grep -v -i warn | tail -30 | cut -c1-230
timeout 250 python3 -m pytest -q -p no:cacheprovider tests/test_selective_scan.py tests/test_selective_scan_cuda.py -m gpu 2>&1 | tail -3
