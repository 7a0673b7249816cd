#!/usr/bin/env bash
# Probe round 1 (2026-11-25): candidate configs at the issue targets, plus where the time goes.
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
timeout 120 $P --template selective_scan.fwd --shape batch=8,dim=2048,L=4096,N=16 --configs '[
 {"block_d":16,"num_warps":1},{"block_d":32,"num_warps":1},{"block_d":64,"num_warps":2},{"block_d":16,"num_warps":1,"exp_fma":0},
 {"scan":"tile","block_d":4,"block_l":16,"num_warps":1},{"scan":"tile","block_d":4,"block_l":32,"num_warps":2},
 {"scan":"tile","block_d":8,"block_l":16,"num_warps":2},{"scan":"tile","block_d":4,"block_l":64,"num_warps":4},
 {"scan":"tile","block_d":4,"block_l":32,"num_warps":2,"exp_fma":0},{"scan":"tile","block_d":4,"block_l":32,"num_warps":2,"exp_fma":4},
 {"backend":"triton","scan":"seq","block_d":16,"block_l":16,"num_warps":1,"exp_fma":2},
 {"backend":"cuda","threads":128,"items_per_thread":8,"state_unroll":2,"occupancy":8},
 {"backend":"cuda","threads":128,"items_per_thread":16,"state_unroll":2,"occupancy":8},
 {"backend":"cuda","threads":64,"items_per_thread":8,"state_unroll":2,"occupancy":16}]' 2>&1 | grep -v Warning
timeout 100 $P --template linear_attention.fwd --shape B=8,T=4096,H=16,K=128,V=128,F=128 --flags g --configs '[
 {"block_v":128,"num_warps":8},{"block_v":128,"num_warps":8,"num_stages":3},{"block_v":128,"num_warps":8,"num_stages":1},
 {"block_v":64,"num_warps":4},{"block_v":64,"num_stages":3},{"chunk":32,"block_v":128,"num_warps":8},
 {"split_len":1024},{"split_len":2048,"block_v":128},{"chunk":128,"block_v":64,"num_warps":8}]' 2>&1 | grep -v Warning
timeout 90 $P --template sliding_window_attention.fwd --shape B=8,T=4096,HQ=16,H=16,D=128,W=512 --configs '[
 {"BLOCK_N":128,"num_stages":2},{"BLOCK_N":128,"num_stages":3},{"BLOCK_M":64,"num_warps":4},{"BLOCK_M":64,"BLOCK_N":128,"num_warps":4,"num_stages":2},
 {"num_stages":2},{"num_stages":4},{"FUSED":0},{"BLOCK_N":32,"num_stages":4}]' 2>&1 | grep -v Warning
timeout 100 $P --template loglinear_attention.fwd --shape B=8,T=4096,H=16,K=128,V=128,L=13 --configs '[
 {"out_bv":128},{"scan_bk":128},{"scan_bv":128},{"scan_warps":8},{"chunk":32},{"chunk":128,"out_bv":32},{"num_stages":3},{"out_warps":4}]' 2>&1 | grep -v Warning
timeout 50 $P --template linear_scan.fwd --shape B=2,T=65536,D=2048 --configs '[
 {"block_d":512,"num_warps":8},{"block_d":128,"num_warps":2},{"block_t":64},{"block_t":64,"num_warps":8},{"block_d":512,"block_t":16,"num_warps":8},{"inclusive_every":2}]' 2>&1 | grep -v Warning
timeout 40 python3 scripts/probes/overhead.py 2>&1 | grep -v Warning
timeout 110 python3 scripts/kernel_breakdown.py --mode fwd+bwd 2>&1 | grep -v Warning
