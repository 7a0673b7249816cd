#!/usr/bin/env bash
# Round 16 (session 5): why the linear-attention dg terms cost 0.38 ms (ncu of the passes with and
# without NEED_R), the backward's parts after the decay-gradient scan rewrite, GPU tests.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
echo "## la parts"; timeout 90 python3 scripts/probes/la_bwd_parts.py 2>&1 | grep -v Warn | head -6
echo "## ncu"; NCU=$(python3 -c "from kernelgen.ncu import find_ncu; print(find_ncu())" 2>/dev/null || echo ncu); timeout 240 $NCU --profile-from-start off --kernel-name "regex:_fwd_kernel|_reverse_cumsum" --section SpeedOfLight --section WarpStateStats --section MemoryWorkloadAnalysis_Tables --section LaunchStats --section Occupancy --metrics l1tex__t_sectors_pipe_lsu_mem_local_op_ld.sum,l1tex__t_sectors_pipe_lsu_mem_local_op_st.sum,smsp__inst_executed.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum --csv --page details python3 scripts/probes/la_ncu_target.py > $OUT/ncu.csv 2> $OUT/ncu.err; echo "rc $?"; tail -3 $OUT/ncu.err
python3 - <<'PY'
import csv, os
rows = list(csv.reader(open(os.environ["OUT"] + "/ncu.csv")))
head = next(i for i, r in enumerate(rows) if r and r[0] == "ID")
cols = rows[head]
want = ("Duration", "Registers Per Thread", "Achieved Occupancy", "Compute (SM) Throughput", "Memory Throughput",
        "Stall", "Warp Cycles Per Issued Instruction", "local_op", "inst_executed", "bank_conflicts", "Shared Memory")
seen = {}
for r in rows[head + 1:]:
    d = dict(zip(cols, r))
    key = (d.get("ID"), d.get("Kernel Name", "")[:20])
    name = d.get("Metric Name", "")
    if any(w in name for w in want):
        seen.setdefault(key, []).append(f"{name}={d.get('Metric Value')}")
for key, vals in seen.items():
    print(key, "; ".join(vals)[:1500])
PY
echo "## la tests"; timeout 150 python3 -m pytest -q -m gpu tests/test_linear_attention.py 2>&1 | tail -3
