#!/usr/bin/env bash
# Round 86 (session 12): register caps elsewhere in the log-linear passes: the stacked block pass
# (512 programs at B=8 H=16 K=V=128 on 64x64 tiles: 1.3 waves at three per SM, one at four), the
# backward's level scans, dq/dk and dv kernels.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
for s in B=8,T=4096,H=16,K=128,V=128,L=13 B=8,T=4096,H=16,K=64,V=64,L=13; do
  echo "## fwd $s"; timeout 200 python3 -m kernelgen.tune.probe --template loglinear_attention.fwd --shape $s --configs '[{},{"scan_maxnreg":128},{"scan_maxnreg":128,"stack_segment":32},{"stack_segment":32},{"scan_maxnreg":96},{}]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|_kernel" | sed 's/"scan_bk.*//' | cut -c1-150
  echo "## bwd $s"; timeout 250 python3 -m kernelgen.tune.probe --template loglinear_attention.bwd --shape $s --configs '[{},{"scan_maxnreg":128},{"rscan_maxnreg":128},{"dv_maxnreg":168},{"dv_maxnreg":128},{"dqk_warps":4,"dqk_maxnreg":168}]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|_kernel" | sed 's/"chunk.*//' | cut -c1-150
done
