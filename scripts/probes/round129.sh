#!/usr/bin/env bash
# Round 129 (session 15): the channel backward's smaller-block variants as candidates; the batch 2,
# dim 1536 backward re-tuned with them, then the op's split and the bench's selective_scan rows.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json $OUT/h100.json
echo "## tune"; timeout 200 python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --kernel bwd --flags plain --shapes 'batch=2,dim=1536,L=2048,N=16' --trials 6 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ selective\|Wrote\|rror" | cut -c1-240
echo "## split"; KERNELGEN_TUNED_DIR=$OUT timeout 100 python3 scripts/probes/ss_bwd_split.py 2 1536 2048 16 2>&1 | grep -v -i warn | grep "fwd\|ms x1  void sel"
echo "## bench"; KERNELGEN_TUNED_DIR=$OUT timeout 150 python3 bench.py --op selective_scan --mode fwd+bwd --json $OUT/session15-h100-selective_scan-round129.json 2>&1 | grep -v -i warn | grep " | kernelgen" | cut -c1-200
