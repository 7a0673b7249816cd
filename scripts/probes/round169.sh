#!/usr/bin/env bash
# Round 169 (session 19): selective_scan's entries went stale with the CUDA launcher and .cu edit
# (the channel forward reading pack_bc's rows by cp.async): re-tune its forward and backward at the
# stored shapes, then the CUDA GPU tests of the forward.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json $OUT/h100.json
T='batch=8,dim=2048,L=4096,N=16'
S="$T;batch=2,dim=1536,L=2048,N=16;batch=4,dim=1024,L=1024,N=64"
echo "## tune plain"; timeout 330 python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --kernel fwd,bwd --shapes "$S" --flags plain --trials 6 --out $OUT/h100.json 2>&1 | grep -v -i warn | grep -v "━━━━━━━━━━━━━━━━━━━" | grep "│\|Wrote" | cut -c1-220
echo "## tune z"; timeout 150 python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --kernel fwd,bwd --shapes "$T" --flags z --trials 6 --out $OUT/h100.json 2>&1 | grep -v -i warn | grep -v "━━━━━━━━━━━━━━━━━━━" | grep "│\|Wrote" | cut -c1-220
echo "## gpu tests"; timeout 100 python3 -m pytest -q -x tests/test_selective_scan.py -m gpu 2>&1 | tail -2
