#!/usr/bin/env bash
# Round 108 (session 13): round 107's normalised forwards through the v = 1 launch failed on the GPU
# for elu1 / relu at K = 128 / 64 (illegal address, wrong result) though the interpreter passed;
# that change is reverted. The normalised forwards as committed (v = 1 launch for identity and
# taylor2 only), across maps and widths, on the GPU.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 200 python3 -m pytest -q -x tests/test_linear_attention.py -k "gpu_normalised_forward or gpu_feature_maps" 2>&1 | tail -3
