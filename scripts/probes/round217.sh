#!/usr/bin/env bash
# Round 217 (session 22): the final selective-scan code and entries: the mamba-ssm drop-in check and
# the gpu tests of test_selective_scan.py.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## drop-in"; timeout 200 python3 scripts/probes/ss_dropin_gpu.py 2>&1 | grep -v -i warn | grep -v "config_for" | tail -3
echo "## gpu tests"; timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_selective_scan.py tests/test_double_backward.py -m "gpu or not gpu" -k "gpu or double or fwd_template or forward" 2>&1 | tail -2
