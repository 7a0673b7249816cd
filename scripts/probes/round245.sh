#!/usr/bin/env bash
# Round 245 (session 27): reverse_cumsum's walk as the block-suffix kernel over one block (A/B
# against the old walk), then the re-tune that the hash change needs: linear_attention and
# loglinear_attention both carry chunk_common.py and now reverse_cumsum.py (and loglinear's own
# level-scan change from the continuing-call branch). 3 trials a study: the kernels the entries
# measure are unchanged but for the walk and the level scan's start.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json $OUT/h100.json
echo "## cumsum"; timeout 90 python3 scripts/probes/cumsum_walk_ab.py 2>&1 | grep -v -i warn
tune() { python3 -m kernelgen.cli tune --gpu h100 --out $OUT/h100.json "$@" 2>&1 \
  | grep -v -i warn | grep -v "━━━━━━━━━━━━━━━━━━━" | grep "│\|Wrote\|rror" | cut -c1-200; }
LA='B=8,T=4096,H=16,K=128,V=128,F=128'
echo "## la fwd"; timeout 150 bash -c "$(declare -f tune); tune --op linear_attention --kernel fwd --flags g,none --shapes '$LA;B=1,T=65536,H=16,K=128,V=128,F=128' --trials 3"
echo "## la bwd"; timeout 130 bash -c "$(declare -f tune); tune --op linear_attention --kernel bwd --flags g,none --shapes '$LA' --trials 3"
echo "## ll"; timeout 200 bash -c "$(declare -f tune); tune --op loglinear_attention --kernel fwd,bwd --shapes quick --trials 3"
cp $OUT/h100.json tuned/h100.json
python3 -c "import json; from kernelgen.templates import get_template; d=json.load(open('tuned/h100.json')); print('stale:', [n for n,h in d['templates'].items() if get_template(n).source_hash()!=h])"
