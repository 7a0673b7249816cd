#!/usr/bin/env bash
# Round 101 (session 13): dg_rows + no L2 prefetch in the passes that take the decay gradient's
# terms (round 100: 1.045 -> 0.882 ms for the backward) with the other pass knobs around it.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cd scripts/probes
R='"dg_rows": 1, "dg_prefetch": 0'
timeout 400 python3 la_r_cost.py "[{$R}, {$R, \"x_early\": 0}, {$R, \"num_stages\": 3}, {$R, \"chunk\": 32}, {$R, \"dq_block_k\": 128, \"dq_warps\": 8}, {\"dg_rows\": 1, \"dg_prefetch\": 0, \"num_stages\": 1}]" 2>&1 | grep -v -i warn | grep -v "no dg"
