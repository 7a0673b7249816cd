#!/usr/bin/env bash
# Round 212 (session 22): the 16-step forward's chunk and occupancy at the target, twice each.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
S=batch=8,dim=2048,L=4096,N=16
C='[{"chunk":128},{"chunk":32},{"chunk":128,"threads":64},{"occupancy":16},{"chunk":128,"steps":32,"threads":64},{},{"chunk":128},{"chunk":32},{"chunk":128,"threads":64},{"occupancy":16},{"chunk":128,"steps":32,"threads":64}]'
timeout 300 python3 -m kernelgen.tune.probe --template selective_scan.fwd --shape $S --flags plain --configs "$C" 2>&1 | grep -v -i warn | cut -c1-200
