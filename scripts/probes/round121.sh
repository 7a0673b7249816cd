#!/usr/bin/env bash
# Round 121 (session 15): the selective-scan channel backward with atomic block sums as its default
# (deterministic mode keeps partials): GPU tests, probe, re-tune of its two entries, the op's split;
# loglinear's dv_chain candidate against the default at both bwd shapes.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## ss gpu tests"; timeout 200 python3 -m pytest -q tests/test_selective_scan_cuda.py -k "gpu" 2>&1 | tail -2
S=batch=8,dim=2048,L=4096,N=16
echo "## ss probe"; timeout 100 python3 -m kernelgen.tune.probe --template selective_scan.bwd --shape $S --flags plain \
    --configs '[{"block_sum":"partials"},{}]' 2>&1 | grep -v -i warn | grep " ms \|rror" | cut -c1-200
cp tuned/h100.json $OUT/h100.json
echo "## ss tune"; timeout 200 python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --kernel bwd --flags plain,z --shapes $S --trials 3 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ selective\|Wrote\|rror" | cut -c1-240
echo "## ss split"; KERNELGEN_TUNED_DIR=$OUT timeout 100 python3 scripts/probes/ss_bwd_split.py 2>&1 | grep -v -i warn
for s in "B=8,T=4096,H=16,K=128,V=128,L=13" "B=8,T=4096,H=16,K=64,V=64,L=13"; do
  echo "## ll bwd $s"; timeout 150 python3 -m kernelgen.tune.probe --template loglinear_attention.bwd --shape $s \
      --configs '[{"dv_chain":1},{},{"dv_chain":1}]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|_dv_\|dqk" | cut -c1-200
done
