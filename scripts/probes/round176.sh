#!/usr/bin/env bash
# Round 176 (session 19): the bench's sliding-window forward rows with the B=8 / T=65536 forward
# entries on 64-key blocks (shipped by round 167's tie rule) against 32-key blocks (session 18's
# entries), alternating tuned files on one machine.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json /tmp/h100-64.json
python3 - <<'PY'
import json
d = json.load(open("tuned/h100.json"))
for e in d["entries"]:
    if e["op"] == "sliding_window_attention" and e["kernel"] == "fwd" and e["shape"]["D"] == 128:
        e["config"]["BLOCK_N"] = 32
json.dump(d, open("/tmp/h100-32.json", "w"), indent=1)
PY
for round in 1 2; do
for n in 64 32; do
cp /tmp/h100-$n.json tuned/h100.json
echo "## BLOCK_N $n"; timeout 100 python3 bench.py --op sliding_window_attention --mode fwd 2>&1 | grep "| kernelgen:" | cut -c1-160
done
done
cp /tmp/h100-64.json tuned/h100.json
