#!/usr/bin/env bash
# Round 102 (session 13): with dg_rows the state reaches the products through shared memory, not as a
# register operand, so 8 warps no longer replicate it: the dq / dk passes on 8 warps.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cd scripts/probes
R='"dg_rows": 1, "dg_prefetch": 0'
timeout 400 python3 la_r_cost.py "[{$R}, {$R, \"dq_warps\": 8}, {$R, \"dq_warps\": 8, \"x_early\": 0}, {$R, \"dq_warps\": 8, \"num_stages\": 3}, {\"dg_rows\": 1, \"dg_prefetch\": 1, \"dq_warps\": 8}, {$R, \"dq_warps\": 8, \"chunk\": 128}]" 2>&1 | grep -v -i warn | grep -v "no dg"
