#!/usr/bin/env bash
# Round 61 (session 10): the full loglinear bench with its peers after round 60's re-tune.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
echo "## bench"; timeout 300 python3 bench.py --op loglinear_attention --json $OUT/bench-loglinear_attention-full.json 2>&1 | grep -v -i warn | grep " | " | cut -c1-200
echo "## memcheck"; S=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
[ -n "$S" ] && timeout 200 $S --tool memcheck --print-limit 5 python3 scripts/probes/ll_sanitize.py \
    '[{"stack_pairs":1,"scan_bv":32},{"stack_pairs":1,"scan_bv":32,"scan_bk":32},{"stack_pairs":1,"scan_bv":64}]' 2>&1 | grep -v -i "warn" | head -40
