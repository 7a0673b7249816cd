#!/usr/bin/env bash
# Round 168 (session 19): the channel-layout CUDA forward reading pack_bc's fp32 rows through
# cp.async (no staging registers, conversions or clamps; the checkpoint test a countdown; the
# ragged-step mask only on a partial sub-chunk) against the previous kernel (old_tree/, a copy of
# HEAD's kernelgen + templates), interleaved, at the shape; then its GPU tests.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
S=batch=8,dim=2048,L=4096,N=16
OLD='[{"backend":"cuda","layout":"channel","threads":128,"occupancy":8,"split":2,"chunk":8,"poly":0}]'
NEW='[{"backend":"cuda","layout":"channel","threads":128,"occupancy":8,"split":2,"chunk":8,"poly":0},{"backend":"cuda","layout":"channel","threads":128,"occupancy":8,"split":2,"chunk":32,"poly":0},{"backend":"cuda","layout":"channel","threads":128,"occupancy":8,"split":2,"chunk":64,"poly":0},{"backend":"cuda","layout":"channel","threads":128,"occupancy":8,"split":2,"chunk":32,"poly":1},{"backend":"cuda","layout":"channel","threads":256,"occupancy":8,"split":2,"chunk":32,"poly":0},{"backend":"cuda","layout":"channel","threads":64,"occupancy":8,"split":2,"chunk":32,"poly":0}]'
for round in 1 2; do
for F in "" z; do
echo "## old $F"; PYTHONPATH=$PWD/old_tree:$PYTHONPATH KERNELGEN_CACHE_DIR=/tmp/kg-old timeout 100 python3 -m kernelgen.tune.probe --template selective_scan.fwd --shape $S --flags "${F:-plain}" --configs "$OLD" 2>&1 | grep -v -i warn | grep ms | cut -c1-160
echo "## new $F"; timeout 150 python3 -m kernelgen.tune.probe --template selective_scan.fwd --shape $S --flags "${F:-plain}" --configs "$NEW" 2>&1 | grep -v -i warn | grep ms | cut -c1-160
done
done
echo "## gpu tests"; timeout 200 python3 -m pytest -q -x tests/test_selective_scan_cuda.py -m gpu -k "channel or checkpoint" 2>&1 | tail -2
