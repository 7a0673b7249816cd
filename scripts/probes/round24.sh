#!/usr/bin/env bash
# Round 24 (session 6): the cached launch (kernelgen/launch.py). Host microseconds per launch and
# per linear_scan call before/after (scripts/probes/overhead_launch.py), then every GPU test with
# every family's kernels launched through it.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
echo "## overhead"; timeout 100 python3 scripts/probes/overhead_launch.py 2>&1 | grep -v Warning | grep -v "config_for" | head -24
echo "## gpu tests"; timeout 440 python3 -m pytest -q -m gpu tests 2>&1 | tee $OUT/gpu-tests.log | tail -4
