#!/usr/bin/env bash
# Round 231 (session 25): round 230 showed the ragged-chunk change faster with the tuned config but
# 53% slower with the default one (128 threads): its read side raised registers (146 -> 174). Here
# the write side alone (scripts/probes/_writeonly.cu) against main (_main.cu) and both (templates/);
# if the write side alone is best and bitwise equal, it replaces templates/selective_scan.cu on the
# machine and the selective-scan entries are re-tuned (forward 3 trials, backward 1).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## variants"; timeout 200 python3 scripts/probes/ss_warp_variants.py main writeonly 2>&1 | grep -v -i warn | tail -6 | tee /tmp/probe.txt
grep -q "^best writeonly" /tmp/probe.txt && ! grep -q "bitwise equal False" /tmp/probe.txt || exit 0
cp scripts/probes/_writeonly.cu templates/selective_scan.cu
cp tuned/h100.json $OUT/h100.json
T='batch=8,dim=2048,L=4096,N=16'
S="$T;batch=2,dim=1536,L=2048,N=16;batch=4,dim=1024,L=1024,N=64"
tune() { python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --out $OUT/h100.json "$@" 2>&1 \
  | grep -v -i warn | grep -v "━━━━━━━━━━━━━━━━━━━" | grep "│\|Wrote" | cut -c1-200; }
echo "## fwd"; timeout 130 bash -c "$(declare -f tune); tune --kernel fwd --shapes '$S' --flags plain --trials 3; tune --kernel fwd --shapes '$T' --flags z --trials 3"
echo "## bwd"; timeout 90 bash -c "$(declare -f tune); tune --kernel bwd --shapes '$S' --flags plain --trials 1; tune --kernel bwd --shapes '$T' --flags z --trials 1"
