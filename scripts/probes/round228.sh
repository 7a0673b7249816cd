#!/usr/bin/env bash
# Round 228 (session 24): the final selective-scan code and entries: the gpu tests of the op's
# files, the mamba-ssm drop-in check, and bench.py's selective-scan rows.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## gpu tests op"; timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_selective_scan.py tests/test_double_backward.py -m "gpu or not gpu" -k "gpu or double or fwd_template or forward" 2>&1 | tail -2
echo "## drop-in"; timeout 120 python3 scripts/probes/ss_dropin_gpu.py 2>&1 | grep -v -i warn | grep -v "config_for" | tail -3
echo "## bench"; timeout 240 python3 bench.py --op selective_scan --json $OUT/session24-h100-selective_scan.json 2>&1 | tail -1
python3 - <<'PY'
import json, os
for r in json.load(open(os.environ["OUT"] + "/session24-h100-selective_scan.json")):
    if r["mode"] != "step" or r["provider"].startswith("kernelgen"):
        print(r["mode"], ",".join(f"{k}={v}" for k, v in r["shape"].items()), r["provider"], r["ms"] and round(r["ms"], 4))
PY
