#!/usr/bin/env bash
# Round 123 (session 15): bench rows for selective_scan (atomic block sums) and loglinear_attention
# (dv_chain at K = V = 128) with the re-tuned entries.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 240 python3 bench.py --op selective_scan --json $OUT/session15-h100-selective_scan.json 2>&1 | grep -v -i warn | grep "│\|rror" | cut -c1-250
timeout 300 python3 bench.py --op loglinear_attention --json $OUT/session15-h100-loglinear_attention.json 2>&1 | grep -v -i warn | grep "│\|rror" | cut -c1-250
