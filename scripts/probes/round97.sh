#!/usr/bin/env bash
# Round 97 (session 13): what the linear-attention decay gradient's row / column terms cost the
# dq and dk passes now (per-kernel time, registers, spills), default and tile overrides.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cd scripts/probes
timeout 400 python3 la_r_cost.py '[{}, {"x_early": 0}, {"dq_warps": 8}, {"chunk": 32}, {"dq_block_k": 128, "dq_warps": 8}, {"num_stages": 1}, {"num_stages": 3}]' 2>&1 | grep -v -i warn
