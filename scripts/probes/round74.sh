#!/usr/bin/env bash
# Round 74 (session 11): the loglinear dq/dk kernel's level loops flattened so their block loads
# pipeline: dqk_levels_outer 2 (dq/dλ over (level, V tile)) and dqk_flat_dk (dk over (V tile,
# later state)), against round 73's nested levels-outer loop (1) and the default. Both flat
# variants lost and were removed after this round: their knobs no longer exist.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## loglinear tests"; timeout 200 python3 -m pytest -q -x tests/test_loglinear_attention.py -k "gpu or levels_outer" 2>&1 | tail -1
C='[{"dqk_levels_outer":1},{"dqk_levels_outer":2},{"dqk_levels_outer":1,"dqk_flat_dk":1},{"dqk_levels_outer":2,"dqk_flat_dk":1},{"dqk_levels_outer":2,"dqk_flat_dk":1,"dqk_bv":128},{"dqk_levels_outer":2,"dqk_flat_dk":1,"num_stages":3}]'
s=B=8,T=4096,H=16,K=128,V=128,L=13
echo "## $s"; timeout 260 python3 -m kernelgen.tune.probe --template loglinear_attention.bwd --shape $s --configs "$C" --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|dqk_kernel" | cut -c1-250
s=B=8,T=4096,H=16,K=64,V=64,L=13
echo "## $s"; timeout 120 python3 -m kernelgen.tune.probe --template loglinear_attention.bwd --shape $s --configs '[{"dqk_levels_outer":2},{"dqk_levels_outer":2,"dqk_flat_dk":1},{"dqk_flat_dk":1},{}]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|dqk_kernel" | cut -c1-250
