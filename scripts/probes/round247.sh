#!/usr/bin/env bash
# Round 247 (session 27): where loglinear's fwd+bwd from a state goes (ll_state_profile.py), then
# bench.py --op linear_attention to its end with round 245's entries (round 243 stopped after 4 cases).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## ll state profile"; timeout 100 python3 scripts/probes/ll_state_profile.py 2>&1 | grep -v -i "warn\|config = " | cut -c1-190
echo "## bench la"; timeout 440 python3 bench.py --op linear_attention --json $OUT/session27-h100-linear_attention.json 2>&1 | tail -32
