#!/usr/bin/env bash
# Round 127 (session 15): selective_scan tuned at the bench's other shapes (each study now measures
# every backend's default), then its bench with the shipped entries.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 260 python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --kernel fwd,bwd --flags plain --shapes 'batch=2,dim=1536,L=2048,N=16;batch=4,dim=1024,L=1024,N=64' --trials 5 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ selective\|Wrote\|rror" | cut -c1-240
echo "## bench"; KERNELGEN_TUNED_DIR=$OUT timeout 200 python3 bench.py --op selective_scan --json $OUT/session15-h100-selective_scan.json 2>&1 | grep -v -i warn | grep " | kernelgen" | cut -c1-200
