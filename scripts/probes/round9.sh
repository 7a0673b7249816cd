#!/usr/bin/env bash
# Round 9 (session 4): the linear-attention backward as three forward-style passes: GPU tests
# (bf16), probes of its tiles against the state-carrying kernels, per-kernel breakdown.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
S=B=8,T=4096,H=16,K=128,V=128,F=128
timeout 120 python3 -m pytest -q -m gpu --durations=6 tests/test_linear_attention.py 2>&1 | grep -E "passed|failed|FAILED|Error |assert|s call" | tail -14
timeout 170 $P --template linear_attention.bwd --flags g --shape $S --configs '[{"chunk":32},{"dq_block_k":128,"dq_warps":8},{"block_v":128,"num_warps":8},{"num_stages":1},{"num_stages":3},{"dq_block_k":32},{"dq_block_k":0,"chunk":32,"block_v":128,"num_warps":8}]' 2>&1 | grep -v Warn
timeout 60 $P --template linear_attention.bwd --flags none --shape $S --configs '[{"chunk":32}]' 2>&1 | grep -v Warn
timeout 60 $P --template linear_attention.bwd --flags g --shape B=1,T=65536,H=16,K=128,V=128,F=128 --configs '[{"split_len":4096},{"split_len":16384}]' 2>&1 | grep -v Warn
timeout 90 python3 scripts/kernel_breakdown.py --op linear_attention --mode fwd+bwd 2>&1 | grep -v "Warn\|config =\|warn" | head -24
