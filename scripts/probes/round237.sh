#!/usr/bin/env bash
# Round 237 (session 26): torch.compile on the GPU stack (aot_eager tests, inductor probe); the
# gated linear-attention backward's per-kernel split now.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_torch_compile.py 2>&1 | tail -4
timeout 150 python3 scripts/probes/compile_inductor.py 2>&1 | tail -6
cd scripts/probes && timeout 150 python3 la_r_cost.py 2>&1 | tail -6
