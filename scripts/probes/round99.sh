#!/usr/bin/env bash
# Round 99 (session 13): the dq / dk passes with their tile built tokens-along-rows (grad_rows: the
# decay gradient's row terms summed within a thread's quad, the state staged in shared memory).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## tests"; timeout 120 python3 -m pytest -q -x tests/test_linear_attention.py -k "gpu" 2>&1 | tail -1
cd scripts/probes
timeout 400 python3 la_r_cost.py '[{}, {"grad_rows": 1}, {"grad_rows": 1, "x_early": 0}, {"grad_rows": 1, "chunk": 32}, {"grad_rows": 1, "num_stages": 3}]' 2>&1 | grep -v -i warn
