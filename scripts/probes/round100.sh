#!/usr/bin/env bash
# Round 100 (session 13): is the decay gradient's cost in the dq / dk passes register pressure?
# Narrower key-column tiles (a smaller state a thread), the L2 prefetch off (its address registers).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cd scripts/probes
timeout 400 python3 la_r_cost.py '[{}, {"grad_prefetch": 0}, {"grad_prefetch": 0, "grad_rows": 1}, {"dq_block_k": 32}, {"dq_block_k": 32, "grad_rows": 1}, {"dq_block_k": 32, "grad_prefetch": 0}]' 2>&1 | grep -v -i warn
