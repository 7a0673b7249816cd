#!/usr/bin/env bash
# Round 3: GPU tests of what changed, the new backward knobs, linear_scan host overhead.
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
timeout 200 python3 -m pytest -q -x -m gpu tests/test_loglinear_attention.py tests/test_selective_scan.py tests/test_linear_attention.py tests/test_sliding_window_attention.py 2>&1 | grep -v Warn | tail -15
timeout 70 $P --template linear_attention.bwd --shape B=8,T=4096,H=16,K=128,V=128,F=128 --flags g --configs '[
 {"dkv_block_v":64,"dkv_warps":4},{"dkv_block_v":64,"dkv_warps":8},{"dkv_block_v":32,"dkv_warps":4},
 {"block_v":64,"num_warps":4},{"chunk":16,"dkv_block_v":64,"dkv_warps":4},{"chunk":64,"block_v":64,"num_warps":4,"dkv_block_v":64,"dkv_warps":4}]' 2>&1 | grep -v Warn
timeout 50 $P --template linear_attention.bwd --shape B=8,T=4096,H=16,K=128,V=128,F=128 --flags none --configs '[{"dkv_block_v":64,"dkv_warps":4}]' 2>&1 | grep -v Warn
timeout 50 $P --template linear_attention.fwd --shape B=8,T=4096,H=16,K=128,V=128,F=128 --flags none --configs '[]' 2>&1 | grep -v Warn
timeout 60 $P --template loglinear_attention.bwd --shape B=8,T=4096,H=16,K=128,V=128,L=13 --configs '[{"dqk_bv":64,"dqk_warps":8,"dqk_bk":32},{"dv_bk":128,"dv_bv":32}]' 2>&1 | grep -v Warn
timeout 60 $P --template selective_scan.fwd --shape batch=2,dim=1536,L=2048,N=16 --configs '[{"backend":"triton","scan":"seq","block_d":16,"block_l":16,"num_warps":1,"exp_fma":2},{"backend":"triton","scan":"seq","block_d":8,"block_l":16,"num_warps":1,"exp_fma":2}]' 2>&1 | grep -v Warn
timeout 60 python3 scripts/probes/overhead_bwd.py 2>&1 | grep -v Warn | head -90
