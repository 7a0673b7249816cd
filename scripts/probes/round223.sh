#!/usr/bin/env bash
# Round 223 (session 23): the final selective-scan code and entries: the checkpoint cost at op
# level, the gpu tests of the selective-scan files, the mamba-ssm drop-in check.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## checkpoint cost"; timeout 100 python3 scripts/probes/ss_ckpt_cost.py 2>&1 | grep -v -i warn | tail -1
echo "## gpu tests cuda"; timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_selective_scan_cuda.py -m gpu 2>&1 | tail -2
echo "## gpu tests op"; timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_selective_scan.py tests/test_double_backward.py -m "gpu or not gpu" -k "gpu or double or fwd_template or forward" 2>&1 | tail -2
echo "## drop-in"; timeout 150 python3 scripts/probes/ss_dropin_gpu.py 2>&1 | grep -v -i warn | grep -v "config_for" | tail -3
