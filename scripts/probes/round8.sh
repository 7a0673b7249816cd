#!/usr/bin/env bash
# Round 8 (session 4): GPU tests of the session-3 changes left unverified (softplus, channel layout,
# linear-attention routing, SWA TMA), per-kernel breakdowns of the two slow backwards, and probes
# for the linear scan's long shape and the linear-attention backward.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
timeout 200 python3 -m pytest -q -m gpu -x tests/test_selective_scan_cuda.py tests/test_linear_attention.py tests/test_sliding_window_attention.py 2>&1 | grep -E "passed|failed|FAILED|Error |assert" | tail -12
timeout 90 python3 scripts/kernel_breakdown.py --op linear_attention --mode fwd+bwd 2>&1 | grep -v Warn | head -40
timeout 60 python3 scripts/kernel_breakdown.py --op sliding_window_attention --mode fwd+bwd 2>&1 | grep -v Warn | head -30
timeout 100 $P --template linear_scan.fwd --shape B=2,T=65536,D=2048 --configs '[{"block_t":16},{"block_t":64,"block_d":128,"num_warps":2},{"block_d":128,"num_warps":2},{"block_d":512,"num_warps":4},{"algorithm":"chunked","splits":4},{"algorithm":"chunked","splits":16},{"algorithm":"chunked","splits":16,"block_d":128,"num_warps":2}]' 2>&1 | grep -v Warn
timeout 150 $P --template linear_attention.bwd --flags g --shape B=8,T=4096,H=16,K=128,V=128,F=128 --configs '[{"split_len":1024},{"split_len":2048},{"chunk":64},{"chunk":64,"block_v":64,"num_warps":4,"dkv_block_v":64,"dkv_warps":4},{"dkv_block_v":64,"dkv_warps":4},{"num_stages":1},{"num_stages":3}]' 2>&1 | grep -v Warn
