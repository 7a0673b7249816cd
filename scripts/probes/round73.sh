#!/usr/bin/env bash
# Round 73 (session 11): the loglinear dq/dk kernel with each level's dO·Blockᵀ summed over the V
# tiles before its dq update and dλ row reduction (dqk_levels_outer) against the default (one per
# level and V tile); per-kernel times; ncu of the dq/dk kernel both ways. ({} was the old layout
# then; levels outer became the default after round 74.)
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## loglinear gpu tests"; timeout 200 python3 -m pytest -q -x tests/test_loglinear_attention.py -k "gpu or levels_outer" 2>&1 | tail -1
C='[{"dqk_levels_outer":1},{"dqk_levels_outer":1,"dqk_bv":32},{"dqk_levels_outer":1,"dqk_bv":128},{},{"dqk_levels_outer":1}]'
s=B=8,T=4096,H=16,K=128,V=128,L=13
echo "## $s"; timeout 200 python3 -m kernelgen.tune.probe --template loglinear_attention.bwd --shape $s --configs "$C" --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|_kernel" | cut -c1-200
s=B=8,T=4096,H=16,K=64,V=64,L=13
echo "## $s"; timeout 100 python3 -m kernelgen.tune.probe --template loglinear_attention.bwd --shape $s --configs '[{"dqk_levels_outer":1},{"dqk_levels_outer":1,"dqk_bv":32},{}]' 2>&1 | grep -v -i warn | grep " ms \|rror" | cut -c1-200
NCU=$(python3 -c "from kernelgen.ncu import find_ncu; print(find_ncu())" 2>/dev/null || echo ncu)
export M=lts__t_bytes.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active,sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active,gpu__time_duration.sum,sm__warps_active.avg.pct_of_peak_sustained_active,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,smsp__average_warps_issue_stalled_wait_per_issue_active.ratio,smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_lg_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio,smsp__issue_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum,launch__registers_per_thread
for c in '{}' '{"dqk_levels_outer":1}'; do
  echo "## ncu dqk $c"; timeout 150 $NCU --profile-from-start off -k regex:dqk --metrics $M --csv --page raw python3 scripts/probes/ncu_one.py loglinear_attention.bwd B=8,T=4096,H=16,K=128,V=128,L=13 "$c" > $OUT/ncu.csv 2> $OUT/ncu.err
  python3 scripts/probes/ncu_rows.py
done
