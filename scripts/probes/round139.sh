#!/usr/bin/env bash
# Round 139 (session 16): which dk-in-dv tilings Triton 3.6 gets wrong on sm_90 (round 138: dv_bk 32
# on 4 warps at K = V = 64, summed states, dk 1.10 relative error, before this session's edit too).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
for S in B=2,T=2048,H=8,K=64,V=64,L=12 B=2,T=2048,H=8,K=128,V=128,L=12 B=2,T=2048,H=8,K=32,V=32,L=12; do
  V=$(echo $S | sed 's/.*V=\([0-9]*\).*/\1/')
  C="["; for chain in 0 1; do for bk in 16 32 64; do for w in 4 8; do
    C="$C{\"dk_with_dv\":1,\"dv_chain\":$chain,\"dv_bv\":$V,\"dv_bk\":$bk,\"dv_warps\":$w},"; done; done; done
  C="${C%,}]"
  echo "## $S"
  timeout 180 python3 -m kernelgen.tune.probe --template loglinear_attention.bwd --shape $S --configs "$C" 2>&1 | grep -v -i warn | sed 's/{"chunk.*"dv_bk": \([0-9]*\).*"dv_chain": \([01]\).*"dv_warps": \([48]\).*}/bk \1 chain \2 warps \3/' | cut -c1-200
done
