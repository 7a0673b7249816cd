#!/usr/bin/env bash
# Round 225 (session 24): the warp-layout forward's unaligned rows with B's and C's loads issued
# before either is shifted (KgRunUnaligned), against HEAD 7c51242 (kernel alone, bitwise); ncu of
# the warp layout at batch 2 (aligned and not); then re-tune selective_scan's entries (the .cu
# changed; forward 3 trials, backward 1) and run the gpu tests of test_selective_scan_cuda.py.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## probe"; timeout 150 python3 scripts/probes/ss_warp_split_probe.py 2>&1 | grep -v -i warn | tail -6 | tee /tmp/probe.txt
GAIN=$(grep "^gain" /tmp/probe.txt | cut -d' ' -f2)
echo "## ncu"
NCU=$(python3 -c "from kernelgen.ncu import find_ncu; print(find_ncu())" 2>/dev/null || echo ncu)
timeout 150 $NCU --profile-from-start off --set full --import-source no -o /tmp/ss_w python3 scripts/probes/ss_warp_ncu.py > $OUT/ncu.out 2>&1
tail -1 $OUT/ncu.out
$NCU -i /tmp/ss_w.ncu-rep --page raw --csv > /tmp/raw.csv 2>&1
cp /tmp/raw.csv $OUT/raw.csv
python3 - <<'PY'
import csv
rows = list(csv.reader(open("/tmp/raw.csv")))
h = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
names, units = rows[h], rows[h + 1]
kern = [r for r in rows[h + 2:] if "fwd_kernel" in r[names.index("Kernel Name")]]
want = lambda n: (("stall" in n and "per_warp_active" in n and "pct" not in n) or ("pipe_" in n and "pct_of_peak_sustained_active" in n)
                  or "issue_active" in n or "warps_active.avg.per_cycle_active" in n or "gpu__time_duration.sum" in n
                  or ("inst_executed.sum" in n and "smsp__inst" in n) or n.startswith("dram__bytes")
                  or "registers_per_thread" in n or "l1tex__t_sector_hit_rate" in n or "lts__t_sector_hit_rate" in n
                  or ("l1tex__t_sectors_pipe_lsu_mem_global" in n and n.endswith(".sum")) or ("l1tex__t_requests_pipe_lsu_mem_global" in n and n.endswith(".sum"))
                  or ("l1tex__data_pipe_lsu_wavefronts" in n and n.endswith(".sum")) or ("lts__t_sectors_srcunit_tex_op" in n and n.endswith(".sum"))
                  or "lts__t_bytes.sum.per_second" in n or "l1tex__throughput" in n or "lts__throughput" in n)
for j, n in enumerate(names):
    if not want(n):
        continue
    vals = [r[j] for r in kern]
    try:
        if max(abs(float(v.replace(",", ""))) for v in vals) < 0.02:
            continue
    except ValueError:
        pass
    print(f"  {n[:78]:78s} " + " | ".join(f"{v:>14s}" for v in vals) + f" {units[j]}")
PY
cp tuned/h100.json $OUT/h100.json
T='batch=8,dim=2048,L=4096,N=16'
S="$T;batch=2,dim=1536,L=2048,N=16;batch=4,dim=1024,L=1024,N=64"
tune() { python3 -m kernelgen.cli tune --gpu h100 --op selective_scan --out $OUT/h100.json "$@" 2>&1 \
  | grep -v -i warn | grep -v "━━━━━━━━━━━━━━━━━━━" | grep "│\|Wrote" | cut -c1-200; }
echo "## fwd"; timeout 130 bash -c "$(declare -f tune); tune --kernel fwd --shapes '$S' --flags plain --trials 3; tune --kernel fwd --shapes '$T' --flags z --trials 3"
echo "## bwd"; timeout 90 bash -c "$(declare -f tune); tune --kernel bwd --shapes '$S' --flags plain --trials 1; tune --kernel bwd --shapes '$T' --flags z --trials 1"
cp $OUT/h100.json tuned/h100.json
echo "## gpu tests cuda"; timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_selective_scan_cuda.py -m gpu 2>&1 | tail -2
