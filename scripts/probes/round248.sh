#!/usr/bin/env bash
# Round 248 (session 27): loglinear's initial-state backward batched over each distance span's
# matrices (round 247: 92.8 ms fwd+bwd from position 258065, 2763 launches): the continuing-call
# timings and profile again, then the loglinear gpu and state tests on the GPU.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## ll continue"; timeout 80 python3 scripts/probes/ll_continue_probe.py 2>&1 | grep -v -i "warn\|config = " | tail -4
echo "## ll state profile"; timeout 80 python3 scripts/probes/ll_state_profile.py > /tmp/prof.txt 2>&1
grep -v -i "warn\|config = " /tmp/prof.txt | cut -c1-190 | grep -v "^---" | head -12
grep "launches\|Self CUDA time\|Self CPU time" /tmp/prof.txt
echo "## tests"; timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_loglinear_attention.py -k "gpu or state or split_sequence" 2>&1 | tail -2
