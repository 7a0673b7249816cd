#!/usr/bin/env bash
# Round 32 (session 7): bench.py gave linear_scan fwd+bwd 0.878 ms eager after round 31 (0.456 in
# session 6) while its kernels sum to 0.447: host time or GPU time? (scripts/probes/ls_fwdbwd.py)
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
timeout 200 python3 scripts/probes/ls_fwdbwd.py 2>&1 | grep -v Warn
timeout 200 python3 scripts/probes/overhead_launch.py 2>&1 | grep -v Warn | head -40
