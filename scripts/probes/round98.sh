#!/usr/bin/env bash
# Round 98 (session 13): which part of the decay gradient's row / column terms costs the dq and dk
# passes: r_probe 1 = no x load (Σ ot², wrong on purpose), 2 = the x load without the product's
# reduction over keys (wrong on purpose), 0 = the real terms. Timing only.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cd scripts/probes
timeout 400 python3 la_r_cost.py '[{}, {"r_probe": 1}, {"r_probe": 2}, {"x_early": 0, "r_probe": 1}, {"chunk": 32, "r_probe": 1}, {"chunk": 32, "r_probe": 2}]' 2>&1 | grep -v -i warn | grep -v "no dg"
