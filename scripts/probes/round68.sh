#!/usr/bin/env bash
# Round 68 (session 10, branch next/loglinear-flat-level-scan): the backward's level scans as one
# flat loop over each level's right-half chunks (loads pipelined), the decay walk only in the
# programs that store it; per kernel against main's template, GPU tests. Before the run (the
# copy travels untracked): git show 52f6dda:templates/loglinear_attention.py > scripts/probes/ll_template_main.py
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
echo "## tests"; timeout 150 python3 -m pytest -q -x tests/test_loglinear_attention.py -k "gpu" 2>&1 | tail -2
probe() {
  for s in "K=128,V=128" "K=64,V=64"; do
    timeout 100 python3 -m kernelgen.tune.probe --template loglinear_attention.bwd --kernels \
        --shape B=8,T=4096,H=16,$s,L=13 --configs '[{}]' 2>&1 | grep -v -i warn | grep " ms " | cut -c1-120
  done
}
echo "## branch"; probe
cp scripts/probes/ll_template_main.py templates/loglinear_attention.py
echo "## main"; probe
