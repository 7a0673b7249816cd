#!/usr/bin/env bash
# Round 241 (session 26): a two-phase reverse cumsum (cumsum_probe.py); the gated linear-attention
# backward's dq/dk passes at other key tiles (la_r_cost.py); host time after the op-level changes.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 120 python3 scripts/probes/cumsum_probe.py 2>&1 | tail -6
(cd scripts/probes && timeout 200 python3 la_r_cost.py '[{}, {"dq_block_k": 32}, {"dq_block_k": 32, "dg_rows": 0}, {"dq_block_k": 32, "dg_prefetch": 1}, {"dq_block_k": 128, "dq_warps": 8}, {"dq_block_k": 32, "x_early": 0}]' 2>&1 | grep -v "arn" | tail -18)
timeout 150 python3 scripts/probes/ss_host_parts.py 2>&1 | grep -v "^ *warn" | grep "op \|nop\|batch" | tail -14
