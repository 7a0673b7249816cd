#!/usr/bin/env bash
# Round 120 (session 15): the selective-scan CUDA backward's SASS under ncu: opcode mix, the lines
# with the most stall samples, stall reasons and pipe use (round 119: 1.40e9 warp instructions,
# issue 62% busy, L1/TEX 79%, spills).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
NCU=$(python3 -c "from kernelgen.ncu import find_ncu; print(find_ncu())" 2>/dev/null || echo ncu)
S=batch=8,dim=2048,L=4096,N=16
timeout 240 $NCU --profile-from-start off --set full --import-source no -o /tmp/ss_bwd python3 scripts/probes/ncu_one.py selective_scan.bwd $S '{}' > $OUT/ncu.out 2>&1
tail -1 $OUT/ncu.out
$NCU -i /tmp/ss_bwd.ncu-rep --page source --csv --print-source sass > $OUT/source.csv 2> $OUT/source.err
python3 scripts/probes/ncu_source_summary.py 70
rm -f $OUT/source.csv
$NCU -i /tmp/ss_bwd.ncu-rep --page raw --csv > /tmp/raw.csv 2>&1
python3 - <<'PY'
import csv
rows = list(csv.reader(open("/tmp/raw.csv")))
h = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
names, units = rows[h], rows[h + 1]
for r in rows[h + 2:]:
    if "bwd_channel" not in r[names.index("Kernel Name")]:
        continue
    for n, u, v in zip(names, units, r):
        if (("stall" in n and "per_warp_active" in n and "pct" not in n) or "pipe_" in n and "pct_of_peak_sustained_active" in n
                or "bank_conflict" in n or "shared_op" in n and ".sum" in n or "local_op" in n):
            try:
                if float(v.replace(",", "")) == 0:
                    continue
            except ValueError:
                pass
            print(f"  {n[:90]:90s} {v} {u}")
PY
