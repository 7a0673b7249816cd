#!/usr/bin/env bash
# Round 246 (session 27): with round 245's entries, linear attention at B=1 T=65536 fwd+bwd (the
# backward's passes now split as the forward does), loglinear continuing from a far position, and
# the gpu tests of the changed families (and selective_scan's dim 0 / group-run paths).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json $OUT/h100.json
# round 245's loglinear tune stopped at its limit before the K=V=64 backward
echo "## ll bwd K=64"; timeout 170 python3 -m kernelgen.cli tune --gpu h100 --out $OUT/h100.json --op loglinear_attention --kernel bwd --shapes 'B=8,T=4096,H=16,K=64,V=64,L=13' --trials 3 2>&1 | grep -v -i warn | grep -v "━━━━━━━━━━━━━━━━━━━" | grep "│\|Wrote\|rror" | cut -c1-200
cp $OUT/h100.json tuned/h100.json
python3 -c "import json; from kernelgen.templates import get_template as t; d=json.load(open('tuned/h100.json')); print('stale entries:', [(e['op'], e['kernel'], e['shape']) for e in d['entries'] if t(e['op'] + '.' + e['kernel']).source_hash() != e['template_hash']])"
echo "## la long"; timeout 100 python3 scripts/probes/la_long_bwd.py 2>&1 | grep -v "^ *warn" | tail -3
echo "## ll continue"; timeout 100 python3 scripts/probes/ll_continue_probe.py 2>&1 | grep -v -i warn | tail -4
echo "## tests"
timeout 130 python3 -m pytest -q -p no:cacheprovider tests/test_reverse_cumsum.py tests/test_linear_attention.py tests/test_loglinear_attention.py tests/test_dispatch.py -m gpu 2>&1 | tail -2
timeout 110 python3 -m pytest -q -p no:cacheprovider tests/test_selective_scan.py -k "gpu or without_channels or beyond_the_grid or either_form or expanded or batch_over" 2>&1 | tail -2
