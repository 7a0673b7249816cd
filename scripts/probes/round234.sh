#!/usr/bin/env bash
# Round 234 (session 25): the final selective-scan code and entries: bench.py's selective-scan rows,
# the mamba-ssm drop-in check, the op's gpu tests; then the loglinear tests round 229 had no time for.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## bench"; timeout 240 python3 bench.py --op selective_scan --json $OUT/session25-h100-selective_scan.json 2>&1 | tail -1
python3 - <<'PY'
import json, os
for r in json.load(open(os.environ["OUT"] + "/session25-h100-selective_scan.json")):
    if r["mode"] != "step" or r["provider"].startswith("kernelgen"):
        print(r["mode"], ",".join(f"{k}={v}" for k, v in r["shape"].items()), r["provider"], r["ms"] and round(r["ms"], 4))
PY
echo "## drop-in"; timeout 100 python3 scripts/probes/ss_dropin_gpu.py 2>&1 | grep -v -i warn | grep -v "config_for" | tail -3
echo "## gpu tests op"; timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_selective_scan.py tests/test_double_backward.py -m "gpu or not gpu" -k "gpu or double or fwd_template or forward" 2>&1 | tail -2
echo "## loglinear rest"; timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_loglinear_attention.py -m "not gpu" -k "save_blocks or initial_state_and_final or final_state_only or varlen_state or state_gradients_fp16 or bad_inputs or template_cpu_workload or check_config or varlen_forward or decode_steps or inference_call or lambda_one or ragged_and_unequal" 2>&1 | tail -2
