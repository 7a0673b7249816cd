#!/usr/bin/env bash
# Round 60 (session 10, branch next/loglinear-stack-pairs after round 59): memcheck of the config
# that hit an illegal address in round 59 (stack_pairs with 32-wide V tiles), then re-tune the
# loglinear fwd and bwd at the quick shapes. Copy $OUT/h100.json back to tuned/ afterwards.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
cp tuned/h100.json $OUT/h100.json
echo "## memcheck"; S=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
echo "sanitizer: $S"
[ -n "$S" ] && timeout 150 $S --tool memcheck --print-limit 5 python3 scripts/probes/ll_sanitize.py \
    '[{"stack_pairs":1,"scan_bv":32},{"stack_pairs":1,"scan_bv":32,"scan_bk":32},{"stack_pairs":1,"scan_bv":64}]' 2>&1 | grep -v -i "warn" | head -40
echo "## tune"; timeout 360 python3 -m kernelgen.cli tune --gpu h100 --op loglinear_attention --kernel fwd,bwd --shapes quick --trials 8 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│\|Wrote" | cut -c1-240
