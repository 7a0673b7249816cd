#!/usr/bin/env bash
# Round 207 (session 22): the channel forward's steps a sub-chunk became a knob (template argument),
# so selective_scan's entries went stale: re-tune the forward (6 trials) and the backward (2: the
# default and the stored winner; its kernels did not change) at the stored shapes.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json $OUT/h100.json
T='batch=8,dim=2048,L=4096,N=16'
S="$T;batch=2,dim=1536,L=2048,N=16;batch=4,dim=1024,L=1024,N=64"
tune() { python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --out $OUT/h100.json "$@" 2>&1 \
  | grep -v -i warn | grep -v "━━━━━━━━━━━━━━━━━━━" | grep "│\|Wrote" | cut -c1-240; }
echo "## fwd plain"; timeout 250 bash -c "$(declare -f tune); tune --kernel fwd --shapes '$S' --flags plain --trials 6"
echo "## fwd z"; timeout 90 bash -c "$(declare -f tune); tune --kernel fwd --shapes '$T' --flags z --trials 6"
echo "## bwd"; timeout 200 bash -c "$(declare -f tune); tune --kernel bwd --shapes '$S' --flags plain --trials 2; tune --kernel bwd --shapes '$T' --flags z --trials 2"
