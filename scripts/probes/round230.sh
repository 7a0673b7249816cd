#!/usr/bin/env bash
# Round 230 (prepared in session 24 on branch wip/warp-partial-chunk, run in session 25): the warp
# layout's ragged last chunk with its whole runs read and written as vectors, against main's code
# carried as scripts/probes/_main.cu (`git show main:templates/selective_scan.cu > ...`: the GPU
# machine's .git is stale); then, if it is bitwise equal and faster, re-tune selective_scan's
# entries (the .cu changed; forward 3 trials, backward 1) (round 231 runs the gpu tests and bench).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## variants"; timeout 150 python3 scripts/probes/ss_warp_variants.py main 2>&1 | grep -v -i warn | tail -6 | tee /tmp/probe.txt
grep -q "^best new" /tmp/probe.txt && ! grep -q "bitwise equal False" /tmp/probe.txt || exit 0
cp tuned/h100.json $OUT/h100.json
T='batch=8,dim=2048,L=4096,N=16'
S="$T;batch=2,dim=1536,L=2048,N=16;batch=4,dim=1024,L=1024,N=64"
tune() { python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --out $OUT/h100.json "$@" 2>&1 \
  | grep -v -i warn | grep -v "━━━━━━━━━━━━━━━━━━━" | grep "│\|Wrote" | cut -c1-200; }
echo "## fwd"; timeout 130 bash -c "$(declare -f tune); tune --kernel fwd --shapes '$S' --flags plain --trials 3; tune --kernel fwd --shapes '$T' --flags z --trials 3"
echo "## bwd"; timeout 90 bash -c "$(declare -f tune); tune --kernel bwd --shapes '$S' --flags plain --trials 1; tune --kernel bwd --shapes '$T' --flags z --trials 1"
