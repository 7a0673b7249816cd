#!/usr/bin/env bash
# Round 30 (session 7): linear_scan's look-back at the long-T target against torch's elementwise
# ceilings of the same traffic; ticket-free and streaming-cache variants (scripts/probes/ls_longt.py).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
timeout 400 python3 scripts/probes/ls_longt.py 2>&1 | grep -v Warn
