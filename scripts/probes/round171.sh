#!/usr/bin/env bash
# Round 171 (session 19, branch wip/ss-fwd-chains): the channel forward's y sum as two chains
# (shipped), four chains (KG_FWD_VARIANT=1) or a tree over the products (2), interleaved.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
S=batch=8,dim=2048,L=4096,N=16
C='[{"backend":"cuda","layout":"channel","threads":128,"occupancy":8,"split":2,"chunk":64,"poly":0},{"backend":"cuda","layout":"channel","threads":128,"occupancy":8,"split":2,"chunk":64,"poly":1}]'
for round in 1 2; do
for v in 0 1 2; do
echo "## variant $v"; KG_FWD_VARIANT=$v timeout 100 python3 -m kernelgen.tune.probe --template selective_scan.fwd --shape $S --configs "$C" 2>&1 | grep -v -i warn | grep ms | cut -c1-150
done
done
