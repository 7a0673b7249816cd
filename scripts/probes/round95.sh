#!/usr/bin/env bash
# Round 95 (session 12): the sliding-window forward is latency-bound at two programs per SM,
# limited by shared memory (session 11's ncu). 32-key blocks with 3 stages (64 KB: three programs
# by shared memory) under a 168-register cap, and neighbours; the tuned config side by side. The
# cap ran through a launcher passthrough (config key maxnreg) that was not kept: none won.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
T='{"BLOCK_M":64,"BLOCK_N":64,"FUSED":1,"SPLITS":1,"TMA":1,"num_stages":3,"num_warps":4'
for s in B=8,T=4096,HQ=16,H=16,D=128,W=512 B=1,T=65536,HQ=16,H=16,D=128,W=512; do
  echo "## fwd $s"; timeout 200 python3 -m kernelgen.tune.probe --template sliding_window_attention.fwd --shape $s --configs "[$T},$T,\"BLOCK_N\":32,\"maxnreg\":168},$T,\"BLOCK_N\":32},$T,\"BLOCK_N\":32,\"num_stages\":2,\"maxnreg\":128},$T,\"num_stages\":2,\"maxnreg\":168},$T,\"BLOCK_N\":32,\"num_stages\":4,\"maxnreg\":168},$T}]" --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|_fwd_kernel" | sed 's/"FUSED.*"TMA": 1, //' | cut -c1-150
done
