#!/usr/bin/env bash
# Round 222 (session 23): the channel forward's checkpoints as vector stores, against HEAD; if it
# gains over 10 µs, re-tune selective_scan's entries (the .cu changed) and run its bench.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## probe"; timeout 150 python3 scripts/probes/ss_ckpt_probe.py 2>&1 | grep -v -i warn | tail -2 | tee /tmp/probe.txt
GAIN=$(grep "^gain" /tmp/probe.txt | cut -d' ' -f2)
if python3 -c "import sys; sys.exit(0 if float('${GAIN:-0}') > 0.010 else 1)"; then
  cp tuned/h100.json $OUT/h100.json
  T='batch=8,dim=2048,L=4096,N=16'
  S="$T;batch=2,dim=1536,L=2048,N=16;batch=4,dim=1024,L=1024,N=64"
  tune() { python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --out $OUT/h100.json "$@" 2>&1 \
    | grep -v -i warn | grep -v "━━━━━━━━━━━━━━━━━━━" | grep "│\|Wrote" | cut -c1-200; }
  echo "## fwd"; timeout 150 bash -c "$(declare -f tune); tune --kernel fwd --shapes '$S' --flags plain --trials 4; tune --kernel fwd --shapes '$T' --flags z --trials 4"
  echo "## bwd"; timeout 100 bash -c "$(declare -f tune); tune --kernel bwd --shapes '$S' --flags plain --trials 2; tune --kernel bwd --shapes '$T' --flags z --trials 2"
  cp $OUT/h100.json tuned/h100.json
  echo "## bench"; timeout 220 python3 bench.py --op selective_scan --json $OUT/session23-h100-selective_scan.json 2>&1 | tail -1
  python3 - <<'PY'
import json, os
for r in json.load(open(os.environ["OUT"] + "/session23-h100-selective_scan.json")):
    if r["provider"] in ("kernelgen", "kernelgen cuda") and r["mode"] != "step":
        print(r["mode"], ",".join(f"{k}={v}" for k, v in r["shape"].items()), r["provider"], f"{r['ms']:.4f}")
PY
fi
