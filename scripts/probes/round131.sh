#!/usr/bin/env bash
# Round 131 (session 16): where the log-linear dq/dk kernel's 1.46 ms goes (K = V = 128): the
# backward split by kernel with dk left in the dq/dk kernel (default) or moved to the dv kernel
# (dq alone: its time without dk), and ncu on the dq/dk kernel (occupancy, stalls, pipes).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cd scripts/probes
echo "## split"
timeout 200 python3 ll_variants.py 0 --bwd='[{"dk_with_dv":1,"dv_bv":128,"dv_bk":32,"dv_warps":4},{"dk_with_dv":1,"dv_bv":128,"dv_bk":64,"dv_warps":8},{"dk_with_dv":1,"dv_bv":128,"dv_bk":32,"dv_warps":8,"dqk_bk":64},{"dk_with_dv":1,"dv_bv":128,"dv_bk":32,"dv_warps":8,"dqk_warps":4}]' 2>&1 | grep -v -i warn
cd ../..
NCU=$(python3 -c "from kernelgen.ncu import find_ncu; print(find_ncu())" 2>/dev/null || echo ncu)
S=B=8,T=4096,H=16,K=128,V=128,L=13
timeout 200 $NCU --profile-from-start off --set full --import-source no -k regex:dqk -o /tmp/ll_dqk python3 scripts/probes/ncu_one.py loglinear_attention.bwd $S '{}' > $OUT/ncu.out 2>&1
tail -2 $OUT/ncu.out
$NCU -i /tmp/ll_dqk.ncu-rep --page details --csv > /tmp/details.csv 2>&1
python3 - <<'PY'
import csv
rows = list(csv.reader(open("/tmp/details.csv")))
head = rows[0]
for r in rows[1:]:
    d = dict(zip(head, r))
    sec = d.get("Section Name", "")
    if any(w in sec for w in ("Speed", "Occupancy", "Launch", "Memory Workload", "Compute", "Scheduler", "Warp State")):
        print(f'{sec[:24]:24s} {d.get("Metric Name","")[:48]:48s} {d.get("Metric Value","")} {d.get("Metric Unit","")}')
PY
$NCU -i /tmp/ll_dqk.ncu-rep --page source --csv --print-source sass > $OUT/source.csv 2> /dev/null
python3 scripts/probes/ncu_source_summary.py 40
rm -f $OUT/source.csv
