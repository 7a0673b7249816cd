#!/usr/bin/env bash
# Round 116 (session 14): where the host time of an eager fwd+bwd goes (host_profile.py).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
timeout 200 python3 scripts/probes/host_profile.py 2>&1 | grep -v -i warn | grep "##\|[0-9] .*(" | sed 's|/usr/[^ ]*/site-packages/||; s|/root/[^ ]*/kernelgen|kernelgen|' | cut -c1-170
