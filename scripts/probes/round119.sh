#!/usr/bin/env bash
# Round 119 (session 15): the selective-scan CUDA backward (2.31 ms at the issue's shape against
# ~1.1 ms predicted from its instruction count) under ncu for the first time: pipes, stalls and the
# SASS lines that hold the stall samples; and the op's fwd+bwd split by kernel.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## split"; timeout 150 python3 scripts/probes/ss_bwd_split.py 2>&1 | grep -v -i warn
NCU=$(python3 -c "from kernelgen.ncu import find_ncu; print(find_ncu())" 2>/dev/null || echo ncu)
echo "## ncu $NCU"
S=batch=8,dim=2048,L=4096,N=16
timeout 240 $NCU --profile-from-start off --set full --import-source no -o $OUT/ss_bwd python3 scripts/probes/ncu_one.py selective_scan.bwd $S '{}' > $OUT/ncu.out 2>&1
tail -3 $OUT/ncu.out
$NCU -i $OUT/ss_bwd.ncu-rep --page details --csv > $OUT/details.csv 2>&1
python3 - <<'PY'
import csv, os
rows = list(csv.reader(open(os.environ["OUT"] + "/details.csv")))
head = rows[0]
for r in rows[1:]:
    d = dict(zip(head, r))
    if "bwd_channel" not in d.get("Kernel Name", ""):
        continue
    print(f'{d.get("Section Name","")[:28]:28s} {d.get("Metric Name","")[:52]:52s} {d.get("Metric Value","")} {d.get("Metric Unit","")}')
PY
$NCU -i $OUT/ss_bwd.ncu-rep --page source --csv --print-source sass > $OUT/source.csv 2> $OUT/source.err || $NCU -i $OUT/ss_bwd.ncu-rep --page source --csv > $OUT/source.csv 2>> $OUT/source.err
wc -l $OUT/source.csv; head -c 600 $OUT/source.err
