#!/usr/bin/env bash
# Round 205 (session 22): borrowed configs on the real GPU; the mamba-ssm drop-in check at HEAD.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## borrow"; timeout 240 python3 scripts/probes/borrow_check.py 2>&1 | tail -6
echo "## drop-in"; timeout 240 python3 scripts/probes/ss_dropin_gpu.py 2>&1 | grep -v -i warn | grep -v "config_for" | tail -4
