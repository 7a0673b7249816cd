#!/usr/bin/env bash
# Round 218 (session 23): the channel forward reads and writes rows that are not 16-byte aligned as
# shifted aligned vectors. Old (fc96b62) against new, timed interleaved with outputs compared;
# memcheck of the unaligned paths; the gpu tests of test_selective_scan_cuda.py (entries still stale).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
echo "## probe"; timeout 200 python3 scripts/probes/ss_shifted_probe.py 2>&1 | grep -v -i warn | tail -8
echo "## memcheck"; S=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout 170 $S --tool memcheck --print-limit 5 python3 scripts/probes/ss_shifted_sanitize.py 2>&1 | grep -v -i "warn" | tail -12
echo "## gpu tests"; timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_selective_scan_cuda.py -m gpu 2>&1 | tail -4
