#!/usr/bin/env bash
# Round 164 (session 18): host time of the decode step after the host trims (kernelgen's lazy
# names cached, check_shape / check_one_device as plain loops, raw stream handles), then the GPU
# tests of the paths they touch: sliding-window decode workspace, selective-scan CUDA launches.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
python3 scripts/probes/swa_decode_hostprof.py 2>&1 | grep -v -i warn | grep "host"
python3 scripts/probes/swa_decode_host.py 2>&1 | grep -v -i warn | grep "ms"
echo "## gpu tests"; timeout 200 python3 -m pytest -q -x tests/test_sliding_window_attention.py tests/test_selective_scan_cuda.py -m gpu -k "decode or cuda or split" 2>&1 | tail -2
