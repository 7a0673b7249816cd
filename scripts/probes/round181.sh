#!/usr/bin/env bash
# Round 181 (session 19): the sliding-window bench with the final entries (round 180: the B=8 D=128
# backward entry on 3 dK/dV stages again; round 176: the D=128 forward entries on 32-key blocks).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 280 python3 bench.py --op sliding_window_attention --json $OUT/session19-h100-sliding_window_attention.json 2>&1 | grep -v -i warn | grep "| kernelgen:\|flex\|fla " | cut -c1-200
