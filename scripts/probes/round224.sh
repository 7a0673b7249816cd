#!/usr/bin/env bash
# Round 224 (session 23): the warp-layout forward reads and writes unaligned rows as shifted
# aligned vectors. Old against new (kernel alone, bitwise); if it gains and is bitwise equal,
# re-tune selective_scan's entries (the .cu changed; forward 3 trials, backward 1) and run the
# gpu tests of test_selective_scan_cuda.py.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## probe"; timeout 120 python3 scripts/probes/ss_warp_probe.py 2>&1 | grep -v -i warn | tail -6 | tee /tmp/probe.txt
GAIN=$(grep "^gain" /tmp/probe.txt | cut -d' ' -f2)
if python3 -c "import sys; sys.exit(0 if float('${GAIN:--1}') > 0.02 else 1)"; then
  cp tuned/h100.json $OUT/h100.json
  T='batch=8,dim=2048,L=4096,N=16'
  S="$T;batch=2,dim=1536,L=2048,N=16;batch=4,dim=1024,L=1024,N=64"
  tune() { python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --out $OUT/h100.json "$@" 2>&1 \
    | grep -v -i warn | grep -v "━━━━━━━━━━━━━━━━━━━" | grep "│\|Wrote" | cut -c1-200; }
  echo "## fwd"; timeout 120 bash -c "$(declare -f tune); tune --kernel fwd --shapes '$S' --flags plain --trials 3; tune --kernel fwd --shapes '$T' --flags z --trials 3"
  echo "## bwd"; timeout 80 bash -c "$(declare -f tune); tune --kernel bwd --shapes '$S' --flags plain --trials 1; tune --kernel bwd --shapes '$T' --flags z --trials 1"
  cp $OUT/h100.json tuned/h100.json
  echo "## gpu tests cuda"; timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_selective_scan_cuda.py -m gpu 2>&1 | tail -2
fi
