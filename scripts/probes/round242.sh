#!/usr/bin/env bash
# Round 242 (session 26): A/B of the host-side changes and the reverse cumsum's blocks (host_ab.py);
# GPU tests of chunk_common, linear_attention and the selective-scan op.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 150 python3 scripts/probes/host_ab.py 2>&1 | grep -v "^ *warn" | tail -8
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_chunk_common.py tests/test_linear_attention.py -m gpu 2>&1 | tail -3
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_selective_scan.py tests/test_double_backward.py tests/test_torch_compile.py -m "gpu or not gpu" -k "gpu or double or fwd_template or forward or compile" -x 2>&1 | tail -3
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_loglinear_attention.py -m gpu -x 2>&1 | tail -3
