#!/usr/bin/env bash
# Round 62 (session 10): loglinear fwd at chunk 128 (the pair of 64-chunks that shares every block
# above level 1 becomes one chunk) per kernel, and memcheck per stack_pairs tile with V narrower
# than K (round 61: Triton 3.6 reports an out-of-range shared/local address at 64x32 tiles).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
echo "## fwd chunk 128"; timeout 200 python3 -m kernelgen.tune.probe --template loglinear_attention.fwd --kernels \
    --shape B=8,T=4096,H=16,K=128,V=128,L=13 \
    --configs '[{"out_inline_l1":1},{"chunk":128},{"chunk":128,"out_bv":64},{"chunk":128,"out_warps":8},{"chunk":128,"out_bv":64,"out_warps":8},{"chunk":128,"scan_warps":8,"out_warps":8}]' 2>&1 | grep -v -i warn
S=/usr/local/cuda/bin/compute-sanitizer
for c in '{"stack_pairs":1,"scan_bk":32,"scan_bv":32}' '{"stack_pairs":1,"scan_bk":128,"scan_bv":64}' '{"stack_pairs":1,"scan_bk":64,"scan_bv":32,"scan_warps":8}' '{"stack_pairs":1,"scan_bk":128,"scan_bv":32,"scan_warps":8}' '{"stack_pairs":1,"scan_bk":32,"scan_bv":64}'; do
  echo "## memcheck $c"; timeout 60 $S --tool memcheck --print-limit 1 python3 scripts/probes/ll_sanitize.py "[$c]" 2>&1 | grep "ERROR SUMMARY\|Out-of\|Invalid\|^ran" | head -3
done
