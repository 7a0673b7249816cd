#!/usr/bin/env bash
# Probe round 2: explicit Triton selective-scan configs, LA fwd/bwd tiles, SWA fwd/bwd, loglinear bwd.
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
SS='"backend":"triton","scan":"seq"'
ST='"backend":"triton","scan":"tile"'
timeout 100 $P --template selective_scan.fwd --shape batch=8,dim=2048,L=4096,N=16 --configs "[
 {$SS,\"block_d\":16,\"block_l\":16,\"num_warps\":1,\"exp_fma\":2},{$SS,\"block_d\":16,\"block_l\":8,\"num_warps\":1,\"exp_fma\":2},
 {$SS,\"block_d\":8,\"block_l\":16,\"num_warps\":1,\"exp_fma\":2},{$SS,\"block_d\":32,\"block_l\":16,\"num_warps\":1,\"exp_fma\":2},
 {$SS,\"block_d\":32,\"block_l\":16,\"num_warps\":2,\"exp_fma\":2},{$SS,\"block_d\":16,\"block_l\":16,\"num_warps\":1,\"exp_fma\":4},
 {$SS,\"block_d\":16,\"block_l\":16,\"num_warps\":1,\"exp_fma\":0},{$SS,\"block_d\":64,\"block_l\":16,\"num_warps\":2,\"exp_fma\":2},
 {$ST,\"block_d\":4,\"block_l\":16,\"num_warps\":1,\"exp_fma\":2},{$ST,\"block_d\":4,\"block_l\":32,\"num_warps\":2,\"exp_fma\":2},
 {$ST,\"block_d\":8,\"block_l\":32,\"num_warps\":4,\"exp_fma\":2},{$ST,\"block_d\":2,\"block_l\":64,\"num_warps\":2,\"exp_fma\":2}]" 2>&1 | grep -v Warn
timeout 60 $P --template selective_scan.bwd --shape batch=8,dim=2048,L=4096,N=16 --configs '[
 {"block_d":16},{"block_d":8,"num_warps":1},{"block_d":32,"num_warps":2},{"chunk":8},{"chunk":2},{"exp_fma":2},{"channel_sum":"mma"}]' 2>&1 | grep -v Warn
timeout 80 $P --template linear_attention.fwd --shape B=8,T=4096,H=16,K=128,V=128,F=128 --flags g --configs '[
 {"block_v":64,"num_warps":4},{"block_v":64,"num_warps":4,"num_stages":3},{"block_v":32,"num_warps":4},{"block_v":32,"num_warps":2},
 {"block_v":64,"num_warps":2},{"chunk":32,"block_v":64,"num_warps":4},{"block_v":128,"num_warps":4},{"chunk":128,"block_v":32,"num_warps":4}]' 2>&1 | grep -v Warn
timeout 50 $P --template linear_attention.fwd --shape B=1,T=65536,H=16,K=128,V=128,F=128 --flags g --configs '[
 {"block_v":64,"num_warps":4,"split_len":4096},{"block_v":64,"num_warps":4,"split_len":8192},{"block_v":32,"num_warps":4,"split_len":4096},
 {"block_v":64,"num_warps":4,"split_len":2048},{"block_v":128,"num_warps":8,"split_len":4096}]' 2>&1 | grep -v Warn
timeout 50 $P --template linear_attention.fwd_taylor2 --shape B=8,T=4096,H=16,K=16,V=128,F=273 --flags none+taylor2 --configs '[
 {"block_v":32,"num_warps":4},{"block_v":16,"num_warps":4},{"block_v":64,"num_warps":8},{"chunk":32,"block_v":32,"num_warps":4},{"block_v":32,"num_warps":8,"num_stages":3}]' 2>&1 | grep -v Warn
timeout 80 $P --template linear_attention.bwd --shape B=8,T=4096,H=16,K=128,V=128,F=128 --flags g --configs '[
 {"block_v":64,"num_warps":4},{"block_v":64,"num_warps":8},{"chunk":32,"block_v":64,"num_warps":4},{"chunk":32,"block_v":128,"num_warps":8},
 {"block_v":32,"num_warps":4},{"chunk":64,"block_v":64,"num_warps":4}]' 2>&1 | grep -v Warn
timeout 70 $P --template sliding_window_attention.fwd --shape B=8,T=4096,HQ=16,H=16,D=128,W=512 --configs '[
 {"BLOCK_M":64,"num_warps":4,"num_stages":4},{"BLOCK_M":64,"num_warps":4,"num_stages":2},{"BLOCK_M":64,"BLOCK_N":32,"num_warps":4,"num_stages":3},
 {"BLOCK_M":64,"num_warps":8,"num_stages":3},{"BLOCK_M":128,"BLOCK_N":64,"num_warps":4,"num_stages":3},{"BLOCK_M":64,"num_warps":4,"num_stages":3,"FUSED":0}]' 2>&1 | grep -v Warn
timeout 40 $P --template sliding_window_attention.fwd --shape B=1,T=65536,HQ=16,H=16,D=128,W=512 --configs '[
 {"BLOCK_M":64,"BLOCK_N":64,"num_warps":4,"num_stages":3},{"BLOCK_M":128,"BLOCK_N":128,"num_warps":8,"num_stages":3}]' 2>&1 | grep -v Warn
timeout 60 $P --template sliding_window_attention.bwd --shape B=8,T=4096,HQ=16,H=16,D=128,W=512 --configs '[
 {"BLOCK_M_KV":32,"BLOCK_N_KV":128,"warps_kv":8,"stages_kv":1,"BLOCK_M_Q":64,"BLOCK_N_Q":64,"warps_q":4,"stages_q":2},
 {"BLOCK_M_KV":64,"BLOCK_N_KV":64,"warps_kv":4,"stages_kv":2},{"BLOCK_M_KV":32,"BLOCK_N_KV":64,"warps_kv":4,"stages_kv":2},
 {"BLOCK_M_Q":64,"BLOCK_N_Q":64,"warps_q":4,"stages_q":3},{"BLOCK_M_Q":128,"BLOCK_N_Q":64,"warps_q":8,"stages_q":2}]' 2>&1 | grep -v Warn
timeout 80 $P --template loglinear_attention.bwd --shape B=8,T=4096,H=16,K=128,V=128,L=13 --configs '[
 {"dqk_bk":128,"dqk_bv":32,"dqk_warps":8},{"dqk_bv":64,"dqk_warps":8},{"dqk_warps":4},{"dqk_bk":32,"dqk_bv":32,"dqk_warps":4},
 {"dv_warps":4},{"chunk":32}]' 2>&1 | grep -v Warn
