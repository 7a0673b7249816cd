#!/usr/bin/env bash
# Round 165 (session 19): (1) the selective-scan CUDA forward (channel layout, split 2, the tuned
# config) under ncu: opcode mix, stall lines, pipe use and shared-memory wavefronts (is the B/C
# broadcast read a wavefront per quarter-warp?); (2) branch wip/swa-qo-tma's forward (q, o by
# descriptor) against the shipped anchored config at both target shapes, interleaved.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
NCU=$(python3 -c "from kernelgen.ncu import find_ncu; print(find_ncu())" 2>/dev/null || echo ncu)
S=batch=8,dim=2048,L=4096,N=16
timeout 200 $NCU --profile-from-start off --set full --import-source no -o /tmp/ss_fwd python3 scripts/probes/ncu_one.py selective_scan.fwd $S '{}' > $OUT/ncu.out 2>&1
tail -2 $OUT/ncu.out
$NCU -i /tmp/ss_fwd.ncu-rep --page source --csv --print-source sass > $OUT/source.csv 2> $OUT/source.err
python3 scripts/probes/ncu_source_summary.py 45
rm -f $OUT/source.csv
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
                or "bank_conflict" in n or "shared" in n and ".sum" in n or "issue_active" in n or "warps_active" in n
                or "gpu__time_duration" in n or "inst_executed.sum" in n or "sm__cycles_elapsed.avg" in n):
            try:
                if float(v.replace(",", "")) == 0:
                    continue
            except ValueError:
                pass
            print(f"  {n[:90]:90s} {v} {u}")
PY
git show wip/swa-qo-tma:templates/sliding_window_attention.py > templates/sliding_window_attention.py; git show wip/swa-qo-tma:tests/test_sliding_window_attention.py > tests/test_sliding_window_attention.py  # ran from copies of the branch's files
C='[{"ANCHOR":1,"BLOCK_N":32},{"ANCHOR":1,"BLOCK_N":32,"QO_TMA":1},{"ANCHOR":1,"BLOCK_N":32},{"ANCHOR":1,"BLOCK_N":32,"QO_TMA":1},{"ANCHOR":1,"BLOCK_N":32},{"ANCHOR":1,"BLOCK_N":32,"QO_TMA":1}]'
for S in B=8,T=4096,HQ=16,H=16,D=128,W=512 B=1,T=65536,HQ=16,H=16,D=128,W=512; do
echo "## $S"; timeout 150 python3 -m kernelgen.tune.probe --template sliding_window_attention.fwd --shape $S --configs "$C" 2>&1 | grep -v -i warn | cut -c1-150
done
echo "## gpu tests (qo_tma branch)"; timeout 120 python3 -m pytest -q -x tests/test_sliding_window_attention.py -m gpu -k "fwd or forward" 2>&1 | tail -2
