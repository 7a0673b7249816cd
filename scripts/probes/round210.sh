#!/usr/bin/env bash
# Round 210 (session 22): the channel backward's neighbours at the target (split, steps, occupancy,
# threads): does more work per thread pay here as 16 forward steps did?
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
S=batch=8,dim=2048,L=4096,N=16
C='[{"split":2,"occupancy":8},{"steps":16,"occupancy":8},{"split":4,"steps":16,"occupancy":8},{"split":8},{"split":8,"steps":16},{"threads":64},{"threads":256},{"split":2,"steps":4},{"split":4,"steps":4},{}]'
timeout 400 python3 -m kernelgen.tune.probe --template selective_scan.bwd --shape $S --flags plain --configs "$C" 2>&1 | grep -v -i warn | cut -c1-220
