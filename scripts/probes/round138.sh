#!/usr/bin/env bash
# Round 138 (session 16): why the unchained dk-in-dv candidate (dv_bk 32, 4 warps, K = V = 64)
# failed round 137's check: the probe's full reason, with this session's template and HEAD's
# (HEAD's was carried as an untracked copy for the run: both fail the same way, dk 1.10 relative).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
C='[{"dk_with_dv":1,"dv_chain":0,"dv_bv":64,"dv_bk":32,"dv_warps":4},{"dk_with_dv":1,"dv_chain":0,"dv_bv":64,"dv_bk":64,"dv_warps":4}]'
S=B=8,T=4096,H=16,K=64,V=64,L=13
for which in session head; do
  echo "## $which"
  if [ $which = head ]; then cp templates/loglinear_attention.py /tmp/new.py; cp scripts/probes/ll_head_template.txt templates/loglinear_attention.py; fi
  timeout 150 python3 -m kernelgen.tune.probe --template loglinear_attention.bwd --shape $S --configs "$C" 2>&1 | grep -v -i warn | sed 's/{"chunk.*"dv_chain": \([01]\).*"dv_warps": \([48]\).*}/chain \1 warps \2/' | cut -c1-400
done
cp /tmp/new.py templates/loglinear_attention.py
