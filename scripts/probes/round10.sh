#!/usr/bin/env bash
# Round 10 (session 4): the linear-attention passes' parts; sliding-window backward TMA / FUSED
# probes and GPU tests; dg precision of both backward paths at T=65536.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
timeout 80 python3 scripts/probes/la_bwd_parts.py 2>&1 | grep -v Warn
timeout 150 $P --template sliding_window_attention.bwd --shape B=8,T=4096,HQ=16,H=16,D=128,W=512 --configs '[{"TMA":0},{"TMA":1,"stages_kv":2},{"FUSED":1,"TMA":0},{"FUSED":1,"TMA":1},{"FUSED":1,"TMA":1,"stages_kv":2},{"FUSED":1,"TMA":1,"BLOCK_N_KV":64,"warps_kv":4,"stages_kv":2},{"FUSED":1,"TMA":1,"BLOCK_M_Q":128,"warps_q":8},{"FUSED":1,"TMA":1,"stages_q":3}]' 2>&1 | grep -v Warn
timeout 60 $P --template sliding_window_attention.bwd --shape B=2,T=8192,HQ=32,H=8,D=128,W=4096 --configs '[{"TMA":0},{"FUSED":1},{"FUSED":1,"TMA":0}]' 2>&1 | grep -v Warn
timeout 100 $P --template linear_attention.bwd --flags g --shape B=1,T=65536,H=16,K=128,V=128,F=128 --configs '[{"dq_block_k":0,"chunk":32,"block_v":128,"num_warps":8},{"dq_block_k":0,"chunk":32,"block_v":128,"num_warps":8}]' 2>&1 | grep -v Warn
timeout 100 python3 -m pytest -q -m gpu tests/test_sliding_window_attention.py 2>&1 | grep -E "passed|failed|FAILED|Error |assert" | tail -8
