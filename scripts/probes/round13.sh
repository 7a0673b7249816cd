#!/usr/bin/env bash
# Round 13 (session 5, first): GPU tests of the session-4 refactors; registers/spills of the
# linear-attention passes with the dg terms; sliding-window forward at T=65536 (TMA era);
# then the sliding-window tune (fwd at the two forward target shapes, bwd at the quick shape).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
echo "## gpu tests"; timeout 170 python3 -m pytest -q -m gpu tests/test_linear_attention.py tests/test_sliding_window_attention.py tests/test_selective_scan_cuda.py tests/test_selective_scan.py 2>&1 | grep -E "passed|failed|FAILED|Error |assert" | tail -12
echo "## la regs"; timeout 70 python3 scripts/probes/la_regs.py 2>&1 | grep -v Warn | cut -c1-260
echo "## swa T=65536"; timeout 70 $P --template sliding_window_attention.fwd --shape B=1,T=65536,HQ=16,H=16,D=128,W=512 --configs '[{"num_stages":2},{"num_stages":4},{"BLOCK_M":128,"num_warps":8},{"BLOCK_M":128,"BLOCK_N":128,"num_warps":8,"num_stages":2},{"BLOCK_N":128,"num_stages":2}]' 2>&1 | grep -v Warn | cut -c1-220
cp tuned/h100.json $OUT/h100.json
echo "## swa tune"; timeout 250 python3 -m kernelgen.cli tune --gpu h100 --op sliding_window_attention --kernel fwd,bwd --shapes 'B=8,T=4096,HQ=16,H=16,D=128,W=512;B=1,T=65536,HQ=16,H=16,D=128,W=512' --trials 10 --out $OUT/h100.json 2>&1 | grep -v Warn | tail -25
