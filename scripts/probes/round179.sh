#!/usr/bin/env bash
# Round 179 (session 19): the sliding-window bench replayed from CUDA graphs (device time), for the
# rows whose eager time is host time on a busy host (D=64 fwd+bwd, decode).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 280 python3 bench.py --op sliding_window_attention --graphs --json $OUT/session19-h100-sliding_window_attention-graphs.json 2>&1 | grep -v -i warn | grep "| kernelgen" | cut -c1-200
