#!/usr/bin/env bash
# Round 59 (next session, branch next/loglinear-stack-pairs): the stacked block pass two chunks a
# step (config stack_pairs) and level-1 blocks built by the output kernel (out_inline_l1) against
# the defaults: GPU tests, each candidate's per-kernel split (probe --kernels). Then re-tune fwd
# and bwd at the quick shapes (the kernels changed) and bench.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
echo "## tests"; timeout 170 python3 -m pytest -q -x tests/test_loglinear_attention.py 2>&1 | tail -2
echo "## fwd"; timeout 120 python3 -m kernelgen.tune.probe --template loglinear_attention.fwd --kernels \
    --shape B=8,T=4096,H=16,K=128,V=128,L=13 \
    --configs '[{"stack_pairs":1,"scan_warps":8},{"stack_pairs":1,"scan_bv":32},{"scan_warps":8},{"out_inline_l1":1},{"stack_pairs":1,"scan_warps":8,"out_inline_l1":1}]' 2>&1 | grep -v -i warn
echo "## bwd"; timeout 150 python3 -m kernelgen.tune.probe --template loglinear_attention.bwd --kernels \
    --shape B=8,T=4096,H=16,K=128,V=128,L=13 \
    --configs '[{"dk_with_dv":1,"dv_bk":32,"dv_warps":4},{"dk_with_dv":1,"dv_bk":64,"dv_warps":8},{"stack_pairs":1,"scan_warps":8}]' 2>&1 | grep -v -i warn
