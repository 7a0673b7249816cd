#!/usr/bin/env bash
# One device-machine session: the stages that belong together, logs under $OUT, short tables last.
#   source .whl/env.sh; bash scripts/gpu_session.sh tests bench          (stages run in the order given)
# Stages: tests (gpu-marked pytest), calibrate, tune[:OP], compare, bench[:OP], quick[:OP], profile, ncu
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export KERNELGEN_CACHE_DIR=${KERNELGEN_CACHE_DIR:-/tmp/kernelgen-cache}
TRIALS=${TRIALS:-24}
for stage in "$@"; do
  name=${stage%%:*}; arg=${stage#*:}; [ "$arg" = "$stage" ] && arg=""
  echo "=== $stage  $(date +%T)"
  case $name in
    tests)     timeout ${TEST_TIMEOUT:-300} python3 -m pytest -q -m gpu ${TEST_FILES:-tests} ${arg:+-k "$arg"} 2>&1 \
                 | tee "$OUT/gpu-tests.log" | grep -E "passed|failed|FAILED|ERROR|Error" | tail -40 ;;
    calibrate) python3 -m kernelgen calibrate --gpu h100 2>&1 | tee "$OUT/calibrate.log" | tail -12; cp profiles/h100.json "$OUT/" ;;
    tune)      python3 -m kernelgen tune --gpu h100 ${arg:+--op $arg} --trials "$TRIALS" 2>&1 | tee "$OUT/tune-${arg:-all}.log" | tail -40
               cp tuned/h100.json "$OUT/h100.json" ;;
    compare)   python3 -m kernelgen.tune.compare --template linear_scan.fwd --shape B=8,T=4096,D=2048 --trials 16 --seeds 3 \
                 --json "$OUT/tpe_vs_grid.json" 2>&1 | tail -20 ;;
    bench)     timeout ${BENCH_TIMEOUT:-300} python3 bench.py ${arg:+--op $arg} --json "$OUT/bench-${arg:-all}.json" 2>&1 | tee "$OUT/bench-${arg:-all}.log" | tail -80 ;;
    quick)     python3 bench.py --quick ${arg:+--op $arg} --json "$OUT/bench-quick.json" 2>&1 | tee "$OUT/bench-quick.log" | tail -60 ;;
    profile)   python3 -m kernelgen profile --op all --plot "$OUT/roofline.png" --json "$OUT/roofline.json" \
                 --markdown "$OUT/roofline.md" 2>&1 | tee "$OUT/profile.log" | tail -40 ;;
    ncu)       for op in linear_scan linear_attention; do
                 python3 -m kernelgen profile --op $op --kernel fwd --shapes quick --ncu --json "$OUT/ncu-$op.json" 2>&1 | tail -8
               done ;;
    *) echo "unknown stage $stage" ;;
  esac
done
echo "=== done $(date +%T)"
