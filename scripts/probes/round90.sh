#!/usr/bin/env bash
# Round 90 (session 12): bench's forward at K = V = 64 (0.335 ms, 0.448 at B=2 T=16384) against the
# probe's 0.254 / 0.284: host-bound? (do_bench vs CUDA graph vs host time per call.)
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
for s in B=8,T=4096,H=16,K=64,V=64,L=13 B=2,T=16384,H=16,K=64,V=64,L=15 B=8,T=4096,H=16,K=128,V=128,L=13; do
  echo "## $s"; timeout 150 python3 scripts/probes/ll_host.py $s '[{}, {"out_tma": 0}, {"out_maxnreg": 0}, {"out_tma": 0, "out_maxnreg": 0}]' 2>&1 | grep -v -i warn | cut -c1-300
done
