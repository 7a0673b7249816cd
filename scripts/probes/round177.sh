#!/usr/bin/env bash
# Round 177 (session 19): the sliding-window bench with the D=128 forward entries back on 32-key
# blocks (round 176's alternating A/B), the session's final entries.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 280 python3 bench.py --op sliding_window_attention --json $OUT/session19-h100-sliding_window_attention.json 2>&1 | grep -v -i warn | grep "| kernelgen:\|flex\|fla " | cut -c1-200
