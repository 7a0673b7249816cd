#!/usr/bin/env bash
# Round 227 (session 24): the warp layout's unaligned loads with the select-based byte window,
# C shifted before (cand_c) or after (cand_b) the lane scan, against the committed switch; the
# faster becomes templates/selective_scan.cu here, then selective_scan's entries are re-tuned
# (forward 3 trials, backward 1) and the gpu tests of test_selective_scan_cuda.py run.
# The two candidates were untracked copies of templates/selective_scan.cu; cand_c won and is the
# committed source (comments aside); cand_b moved its C take after the lane scan (see PERF.md).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## variants"; timeout 150 python3 scripts/probes/ss_warp_variants.py cand_b cand_c 2>&1 | grep -v -i warn | tail -6 | tee /tmp/probe.txt
BEST=$(grep "^best" /tmp/probe.txt | cut -d' ' -f2)
[ "$BEST" = "cand_b" ] || BEST=cand_c
cp scripts/probes/_$BEST.cu templates/selective_scan.cu; echo "using $BEST"
cp tuned/h100.json $OUT/h100.json
T='batch=8,dim=2048,L=4096,N=16'
S="$T;batch=2,dim=1536,L=2048,N=16;batch=4,dim=1024,L=1024,N=64"
tune() { python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --out $OUT/h100.json "$@" 2>&1 \
  | grep -v -i warn | grep -v "━━━━━━━━━━━━━━━━━━━" | grep "│\|Wrote" | cut -c1-200; }
echo "## fwd"; timeout 130 bash -c "$(declare -f tune); tune --kernel fwd --shapes '$S' --flags plain --trials 3; tune --kernel fwd --shapes '$T' --flags z --trials 3"
echo "## bwd"; timeout 90 bash -c "$(declare -f tune); tune --kernel bwd --shapes '$S' --flags plain --trials 1; tune --kernel bwd --shapes '$T' --flags z --trials 1"
cp $OUT/h100.json tuned/h100.json
echo "## gpu tests cuda"; timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_selective_scan_cuda.py -m gpu 2>&1 | tail -2
