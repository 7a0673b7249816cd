#!/usr/bin/env bash
# Round 175 (session 19): a second sliding-window bench run of the same code and entries as round
# 170 (another machine draw), for the spread of the rows near their targets.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 280 python3 bench.py --op sliding_window_attention --json $OUT/session19-h100-sliding_window_attention-run2.json 2>&1 | grep -v -i warn | grep "| kernelgen:\|flex" | cut -c1-200
