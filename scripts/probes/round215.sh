#!/usr/bin/env bash
# Round 215 (session 22): softplus as the channel forward's template flag (no branch around the
# steps' dt) and branch-free element loads/stores for whole sub-chunks of unaligned rows: the .cu
# changed, so re-tune selective_scan's entries (forward 4 trials, backward 2), then its bench and
# the gpu tests of both its test files.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json $OUT/h100.json
T='batch=8,dim=2048,L=4096,N=16'
S="$T;batch=2,dim=1536,L=2048,N=16;batch=4,dim=1024,L=1024,N=64"
tune() { python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --out $OUT/h100.json "$@" 2>&1 \
  | grep -v -i warn | grep -v "━━━━━━━━━━━━━━━━━━━" | grep "│\|Wrote" | cut -c1-200; }
echo "## fwd"; timeout 150 bash -c "$(declare -f tune); tune --kernel fwd --shapes '$S' --flags plain --trials 4; tune --kernel fwd --shapes '$T' --flags z --trials 4"
echo "## bwd"; timeout 100 bash -c "$(declare -f tune); tune --kernel bwd --shapes '$S' --flags plain --trials 2; tune --kernel bwd --shapes '$T' --flags z --trials 2"
cp $OUT/h100.json tuned/h100.json
echo "## bench"; timeout 150 python3 bench.py --op selective_scan --json $OUT/session22-h100-selective_scan.json 2>&1 | tail -1
echo "## gpu tests"; timeout 170 python3 -m pytest -q -p no:cacheprovider tests/test_selective_scan_cuda.py -m gpu 2>&1 | tail -2
