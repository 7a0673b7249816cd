#!/usr/bin/env bash
# Round 11 (session 4, last): the CUDA channel-layout selective-scan backward (GPU tests, knob
# probes vs the Triton backward); the linear-attention passes' variants; sliding-window backward
# GPU tests and GQA; linear-attention quick bench with fla side by side.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
P="python3 -m kernelgen.tune.probe --json $OUT/probe.jsonl"
S=batch=8,dim=2048,L=4096,N=16
echo "## ss tests"; timeout 150 python3 -m pytest -q -m gpu tests/test_selective_scan_cuda.py -k "bwd_channel or op_training_with_the_channel_backward" 2>&1 | grep -E "passed|failed|FAILED|Error |assert" | tail -10
echo "## ss probe"; timeout 130 $P --template selective_scan.bwd --shape $S --configs '[{"backend":"cuda"},{"backend":"cuda","block_sum":"atomic"},{"backend":"cuda","split":8},{"backend":"cuda","split":8,"occupancy":8},{"backend":"cuda","occupancy":8},{"backend":"cuda","steps":16,"occupancy":8},{"backend":"cuda","threads":64}]' 2>&1 | grep -v Warn
echo "## la parts"; timeout 75 python3 scripts/probes/la_bwd_parts.py 2>&1 | grep -v Warn
echo "## swa tests"; timeout 90 python3 -m pytest -q -m gpu -x tests/test_sliding_window_attention.py -k "gpu_bf16_forward_backward or loops_and_loads" 2>&1 | grep -E "passed|failed|FAILED|Error |assert" | tail -6
echo "## la tests"; timeout 45 python3 -m pytest -q -m gpu tests/test_linear_attention.py -k "bf16_forward_backward or feature_maps" 2>&1 | grep -E "passed|failed|FAILED|Error |assert" | tail -6
echo "## swa gqa"; timeout 40 $P --template sliding_window_attention.bwd --shape B=2,T=8192,HQ=32,H=8,D=128,W=4096 --configs '[{"TMA":0,"FUSED":0}]' 2>&1 | grep -v Warn
echo "## la bench"; timeout 90 python3 bench.py --quick --graphs --op linear_attention --json $OUT/bench-linear_attention.json 2>&1 | grep " | " | cut -c1-200
