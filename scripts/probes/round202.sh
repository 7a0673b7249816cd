#!/usr/bin/env bash
# Round 202 (session 22): which NVRTC the CI check picked; round 201's failures again, in two
# processes (round 201's were out of GPU memory or fixed in the tests since).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
python3 scripts/probes/nvrtc_versions.py 2>&1 | tail -12
TB=short python3 scripts/probes/gpu_shards.py 2 420 scripts/probes/round202_ids.txt
