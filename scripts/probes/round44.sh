#!/usr/bin/env bash
# Round 44 (session 7): the mamba-ssm drop-in check again with the shipped configs, after round 43's
# transpose-reduced forward output.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
timeout 200 python3 scripts/probes/ss_dropin_gpu.py 2>&1 | grep -v Warn | grep -v "config_for" | tail -6
