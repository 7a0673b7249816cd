#!/usr/bin/env bash
# Round 22 (session 5): ncu of the selective-scan CUDA forward (stall reasons, pipe use).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
NCU=$(python3 -c "from kernelgen.ncu import find_ncu; print(find_ncu())" 2>/dev/null || echo ncu)
timeout 200 $NCU --profile-from-start off --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats --section ComputeWorkloadAnalysis --section InstructionStats --section SchedulerStats --metrics smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_wait_per_issue_active.ratio,smsp__average_warps_issue_stalled_not_selected_per_issue_active.ratio,smsp__average_warps_issue_stalled_selected_per_issue_active.ratio,smsp__average_warps_issue_stalled_dispatch_stall_per_issue_active.ratio,smsp__average_warps_issue_stalled_no_instruction_per_issue_active.ratio,smsp__average_warps_issue_stalled_lg_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_drain_per_issue_active.ratio,smsp__average_warps_issue_stalled_branch_resolving_per_issue_active.ratio,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_active,sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum,launch__registers_per_thread --csv --page details python3 scripts/probes/ss_ncu_target.py > $OUT/ncu.csv 2> $OUT/ncu.err; echo "rc $?"; tail -3 $OUT/ncu.err
python3 - <<'PY'
import csv, os
rows = list(csv.reader(open(os.environ["OUT"] + "/ncu.csv")))
head = next(i for i, r in enumerate(rows) if r and r[0] == "ID")
cols = rows[head]
for r in rows[head + 1:]:
    d = dict(zip(cols, r))
    name = d.get("Metric Name", "")
    if d.get("Section Name", "") in ("WarpStateStats", "Occupancy", "LaunchStats", "ComputeWorkloadAnalysis",
                                     "SpeedOfLight", "SchedulerStats", "InstructionStats") or "stalled" in name or "pipe" in name:
        print(f"{d.get('Kernel Name','')[:28]} | {name} = {d.get('Metric Value')} {d.get('Metric Unit','')}")
PY
