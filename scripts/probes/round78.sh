#!/usr/bin/env bash
# Round 78 (session 11): the block pass reading its live blocks back from the stored (bf16) blocks
# instead of an fp32 stack (stack_in_blocks): time (forward and backward, K = V = 128 and 64) and
# precision against the float64 reference.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## tests"; timeout 200 python3 -m pytest -q -x tests/test_loglinear_attention.py -k "gpu or stack_pass" 2>&1 | tail -1
echo "## precision"; timeout 120 python3 scripts/probes/ll_stack_precision.py '[{}, {"stack_in_blocks": 1}, {"stack_in_blocks": 1, "stack_pairs": 1, "scan_warps": 8}]' 2>&1 | grep -v -i warn
for k in fwd bwd; do for s in B=8,T=4096,H=16,K=128,V=128,L=13 B=8,T=4096,H=16,K=64,V=64,L=13; do
  echo "## $k $s"; timeout 100 python3 -m kernelgen.tune.probe --template loglinear_attention.$k --shape $s --configs '[{"stack_in_blocks":1},{},{"stack_in_blocks":1}]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|block_stack" | cut -c1-150
done; done
