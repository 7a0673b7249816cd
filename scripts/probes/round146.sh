#!/usr/bin/env bash
# Round 146 (session 17): the log-linear backward (K = V = 128) needs ~45 µs for fwd+bwd ≤ 2.5 ms
# (round 145: 2.544). Split by kernel for scan-tile / warps / stages and dq-tile variants, and
# ncu on the level-scan and block-stack kernels (memory- or latency-bound?).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cd scripts/probes
echo "## split"
timeout 260 python3 ll_variants.py 0 --bwd='[{"scan_stages":3},{"scan_warps":8},{"scan_bk":128,"scan_bv":64,"scan_warps":8},{"scan_bk":128,"scan_bv":128,"scan_warps":8},{"scan_bk":32,"scan_bv":64},{"num_stages":2},{"dqk_bv":128},{"dqk_bv":32}]' 2>&1 | grep -v -i warn
cd ../..
NCU=$(python3 -c "from kernelgen.ncu import find_ncu; print(find_ncu())" 2>/dev/null || echo ncu)
S=B=8,T=4096,H=16,K=128,V=128,L=13
timeout 150 $NCU --profile-from-start off --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats --section SchedulerStats --section WarpStateStats -k regex:"level_scan|block_stack" -o /tmp/ll_scan python3 scripts/probes/ncu_one.py loglinear_attention.bwd $S '{}' > $OUT/ncu.out 2>&1
tail -2 $OUT/ncu.out
$NCU -i /tmp/ll_scan.ncu-rep --page details --csv > /tmp/details.csv 2>&1
python3 - <<'PY'
import csv
rows = list(csv.reader(open("/tmp/details.csv")))
head = rows[0]
for r in rows[1:]:
    d = dict(zip(head, r))
    sec = d.get("Section Name", "")
    if any(w in sec for w in ("Speed", "Occupancy", "Launch", "Memory Workload", "Scheduler", "Warp State")):
        print(f'{d.get("Kernel Name","")[:22]:22s} {sec[:20]:20s} {d.get("Metric Name","")[:44]:44s} {d.get("Metric Value","")} {d.get("Metric Unit","")}')
PY
