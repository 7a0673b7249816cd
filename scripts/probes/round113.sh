#!/usr/bin/env bash
# Round 113 (session 14): sliding_window forward tuned longer at its two D = 128 target shapes (30
# TPE trials each, earlier sessions ran 10): its 0.35 / 0.75 ms targets sit 2-3% away, inside the
# run-to-run band. Prediction: nothing below the default by more than that band.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json $OUT/h100.json
echo "## swa tune fwd"; timeout 540 python3 -m kernelgen.cli tune --gpu h100 --op sliding_window_attention --kernel fwd --shapes 'B=8,T=4096,HQ=16,H=16,D=128,W=512;B=1,T=65536,HQ=16,H=16,D=128,W=512' --trials 30 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | grep "│ sliding\|Wrote\|rror" | cut -c1-260
