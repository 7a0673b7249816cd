#!/usr/bin/env bash
# Round 209 (session 22): the selective-scan forward at 16 steps a sub-chunk under ncu (where the
# time goes now), and its neighbours (split, steps, threads, poly) at the target, twice each.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
NCU=$(python3 -c "from kernelgen.ncu import find_ncu; print(find_ncu())" 2>/dev/null || echo ncu)
S=batch=8,dim=2048,L=4096,N=16
timeout 150 $NCU --profile-from-start off --set full --import-source no -o /tmp/ss_fwd python3 scripts/probes/ncu_one.py selective_scan.fwd $S '{}' > $OUT/ncu.out 2>&1
tail -1 $OUT/ncu.out
$NCU -i /tmp/ss_fwd.ncu-rep --page raw --csv > /tmp/raw.csv 2>&1
python3 - <<'PY'
import csv
rows = list(csv.reader(open("/tmp/raw.csv")))
h = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
names, units = rows[h], rows[h + 1]
for r in rows[h + 2:]:
    if "fwd_channel" not in r[names.index("Kernel Name")]:
        continue
    for n, u, v in zip(names, units, r):
        if (("stall" in n and "per_warp_active" in n and "pct" not in n) or "pipe_" in n and "pct_of_peak_sustained_active" in n
                or "issue_active" in n or "warps_active.avg.per_cycle_active" in n
                or "gpu__time_duration.sum" in n or "inst_executed.sum" in n and "smsp__inst" in n):
            try:
                if float(v.replace(",", "")) < 0.02:
                    continue
            except ValueError:
                pass
            print(f"  {n[:80]:80s} {v} {u}")
PY
C='[{"split":1},{"split":1,"steps":32},{"steps":32,"threads":64},{"split":4,"occupancy":16},{"threads":64},{"poly":1},{},{"split":1},{"split":1,"steps":32},{"steps":32,"threads":64},{"split":4,"occupancy":16},{"threads":64},{"poly":1}]'
timeout 300 python3 -m kernelgen.tune.probe --template selective_scan.fwd --shape $S --flags plain --configs "$C" 2>&1 | grep -v -i warn | cut -c1-200
