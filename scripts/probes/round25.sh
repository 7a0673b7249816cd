#!/usr/bin/env bash
# Round 25 (session 6): linear_scan re-tuned (its launcher's host-side ceil-division changed the
# template's source hash, so the old entries are stale), then bench.py for the scan, eager, with
# fla's hgrn ops side by side.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 240 python3 -m kernelgen.cli tune --gpu h100 --op linear_scan --trials 16 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | tail -14
cp $OUT/h100.json tuned/h100.json
echo "## bench"; timeout 250 python3 bench.py --op linear_scan --json $OUT/bench-linear_scan.json 2>&1 | grep -v Warn | tail -30
