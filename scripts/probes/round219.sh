#!/usr/bin/env bash
# Round 219 (session 23): where the unaligned channel forward's time goes (ncu: aligned, offset
# views, L 4093), and memcheck after the row's last vector is read by element.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
NCU=$(python3 -c "from kernelgen.ncu import find_ncu; print(find_ncu())" 2>/dev/null || echo ncu)
timeout 200 $NCU --profile-from-start off --set full --import-source no -o /tmp/ss_un python3 scripts/probes/ss_shifted_ncu.py > $OUT/ncu.out 2>&1
tail -1 $OUT/ncu.out
$NCU -i /tmp/ss_un.ncu-rep --page raw --csv > /tmp/raw.csv 2>&1
cp /tmp/raw.csv $OUT/raw.csv
python3 - <<'PY'
import csv
rows = list(csv.reader(open("/tmp/raw.csv")))
h = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
names, units = rows[h], rows[h + 1]
kern = [r for r in rows[h + 2:] if "fwd_channel" in r[names.index("Kernel Name")]]
want = lambda n: (("stall" in n and "per_warp_active" in n and "pct" not in n) or ("pipe_" in n and "pct_of_peak_sustained_active" in n)
                  or "issue_active" in n or "warps_active.avg.per_cycle_active" in n or "gpu__time_duration.sum" in n
                  or ("inst_executed.sum" in n and "smsp__inst" in n) or n.startswith("dram__bytes")
                  or ("l1tex__t_sectors_pipe_lsu_mem_global" in n and n.endswith(".sum")) or ("l1tex__t_requests_pipe_lsu_mem_global" in n and n.endswith(".sum"))
                  or ("l1tex__data_pipe_lsu_wavefronts" in n and n.endswith(".sum")) or ("lts__t_sectors_srcunit_tex_op" in n and n.endswith(".sum")))
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
echo "## memcheck"; S=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout 170 $S --tool memcheck --print-limit 3 python3 scripts/probes/ss_shifted_sanitize.py > $OUT/memcheck.txt 2>&1
grep -v -i warn $OUT/memcheck.txt | grep -v "Host Frame" | grep -v "moduleUnload\|check_status\|NoneType\|Traceback\|cupy.cuda.function" | tail -40 | cut -c1-200
