#!/usr/bin/env bash
# Round 233 (session 25): the warp-layout forward's default is now one channel a block, 16 steps a
# lane, one state (at >= 2048 channels); selective_scan_cuda.py is hashed whole, so the entries are
# re-tuned again (forward 3 trials, backward 1); then the CUDA file's gpu tests.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json $OUT/h100.json
T='batch=8,dim=2048,L=4096,N=16'
S="$T;batch=2,dim=1536,L=2048,N=16;batch=4,dim=1024,L=1024,N=64"
tune() { python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --out $OUT/h100.json "$@" 2>&1 \
  | grep -v -i warn | grep -v "━━━━━━━━━━━━━━━━━━━" | grep "│\|Wrote" | cut -c1-200; }
echo "## fwd"; timeout 130 bash -c "$(declare -f tune); tune --kernel fwd --shapes '$S' --flags plain --trials 3; tune --kernel fwd --shapes '$T' --flags z --trials 3"
echo "## bwd"; timeout 90 bash -c "$(declare -f tune); tune --kernel bwd --shapes '$S' --flags plain --trials 1; tune --kernel bwd --shapes '$T' --flags z --trials 1"
cp $OUT/h100.json tuned/h100.json
echo "## gpu tests cuda"; timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_selective_scan_cuda.py -m gpu 2>&1 | tail -2
