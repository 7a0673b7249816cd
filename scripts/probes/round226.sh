#!/usr/bin/env bash
# Round 226 (session 24): two variants of the warp layout's unaligned loads against the committed
# one; the gpu tests of test_selective_scan_cuda.py on the re-tuned code (round 225 ran out of time).
# The variants were untracked copies of the source (described in ss_warp_variants.py and PERF.md).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## variants"; timeout 150 python3 scripts/probes/ss_warp_variants.py 2>&1 | grep -v -i warn | tail -5
echo "## gpu tests cuda"; timeout 330 python3 -m pytest -q -p no:cacheprovider tests/test_selective_scan_cuda.py -m gpu 2>&1 | tail -3
