#!/usr/bin/env bash
# Round 172 (session 19): after the cp.async channel forward and the re-tuned entries, the
# mamba-ssm drop-in check with the shipped configs and the CUDA backend's whole GPU test file.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## drop-in"; timeout 200 python3 scripts/probes/ss_dropin_gpu.py 2>&1 | grep -v -i warn | grep -v "config_for" | tail -4
echo "## gpu tests"; timeout 330 python3 -m pytest -q tests/test_selective_scan_cuda.py -m gpu 2>&1 | tail -2
