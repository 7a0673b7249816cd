#!/usr/bin/env bash
# Round 180 (session 19): the bench's sliding-window fwd+bwd rows with the B=8 D=128 backward entry
# on 2 dK/dV stages (round 167's tie rule) against 3 (session 18's entry), alternating tuned files
# on one machine, as round 176 did for the forward.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json /tmp/h100-s2.json
python3 - <<'PY'
import json
d = json.load(open("tuned/h100.json"))
for e in d["entries"]:
    if e["op"] == "sliding_window_attention" and e["kernel"] == "bwd" and e["shape"]["D"] == 128:
        e["config"]["stages_kv"] = 3
json.dump(d, open("/tmp/h100-s3.json", "w"), indent=1)
PY
for round in 1 2; do
for n in s2 s3; do
cp /tmp/h100-$n.json tuned/h100.json
echo "## $n"; timeout 130 python3 bench.py --op sliding_window_attention --mode fwd+bwd 2>&1 | grep "| kernelgen:" | cut -c1-160
done
done
cp /tmp/h100-s2.json tuned/h100.json
