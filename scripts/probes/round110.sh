#!/usr/bin/env bash
# Round 110 (session 14): dk and dv from one reverse pass over the whole V (_dkv_pass_kernel,
# dkv_fused) beside the dq pass taking only the state's share of the decay gradient's row term.
# Prediction: it reads q, k, v, dO once for both gradients (805 MB against 1.2 GB for the dk and
# dv passes), so the backward with g 0.887 -> ~0.75-0.80 ms if it runs near the passes' bandwidth.
# Offline (Triton 3.6, sm_90): chunk 64 / 8 warps spills 960 B (8 warps on 64-row tiles
# replicate them), chunk 32 / 8 warps 24 B. GPU tests first.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## tests"; timeout 240 python3 -m pytest -q -x tests/test_linear_attention.py -k "gpu" 2>&1 | tail -2
cd scripts/probes
echo "## agree"; timeout 150 python3 la_fused_agree.py 2>&1 | grep -v -i warn | tail -5
echo "## cost"; timeout 300 python3 la_r_cost.py '[{}, {"dkv_fused": 1, "dkv_fused_chunk": 32, "dkv_fused_warps": 8},
 {"dkv_fused": 1, "dkv_fused_chunk": 32, "dkv_fused_warps": 8, "dkv_fused_stages": 1},
 {"dkv_fused": 1, "dkv_fused_chunk": 64, "dkv_fused_warps": 8}, {"dkv_fused": 1, "dkv_fused_chunk": 16, "dkv_fused_warps": 8},
 {"dkv_fused": 1, "dkv_fused_chunk": 32, "dkv_fused_warps": 4}, {"dkv_fused": 1, "dkv_fused_chunk": 64, "dkv_fused_warps": 4, "dkv_fused_stages": 1}]' 2>&1 | grep -v -i warn | cut -c1-330
