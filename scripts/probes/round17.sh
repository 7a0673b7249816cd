#!/usr/bin/env bash
# Round 17 (session 5): the linear-attention tune (fwd at the target and T=65536, bwd at the
# target; g and no decay), then sliding-window forward probes with 32-key blocks (3 CTAs per SM).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
cp tuned/h100.json $OUT/h100.json
echo "## la tune fwd"; timeout 250 python3 -m kernelgen.cli tune --gpu h100 --op linear_attention --kernel fwd --flags g,none --shapes 'B=8,T=4096,H=16,K=128,V=128,F=128;B=1,T=65536,H=16,K=128,V=128,F=128' --trials 8 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | tail -14
echo "## la tune bwd"; timeout 220 python3 -m kernelgen.cli tune --gpu h100 --op linear_attention --kernel bwd --flags g,none --shapes quick --trials 8 --out $OUT/h100.json 2>&1 | grep -v Warn | grep -v "━" | tail -10
echo "## swa fwd"; timeout 80 $P --template sliding_window_attention.fwd --shape B=8,T=4096,HQ=16,H=16,D=128,W=512 --configs '[{"BLOCK_N":32},{"BLOCK_N":32,"num_stages":4},{"BLOCK_N":32,"num_stages":2}]' 2>&1 | grep -v Warn | cut -c1-200
