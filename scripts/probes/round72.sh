#!/usr/bin/env bash
# Round 72 (session 11): the loglinear GPU tests (session 10's last test had not run on a GPU);
# the sliding-window forward at its target shapes with 128-row query blocks (half the L2 -> SM
# bytes per pair) against the default 64; ncu of both (L2 throughput, tensor pipe, stalls).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## loglinear gpu tests"; timeout 240 python3 -m pytest -q -x tests/test_loglinear_attention.py -k gpu 2>&1 | tail -2
C='[{"BLOCK_M":128,"num_warps":8,"num_stages":2},{"BLOCK_M":128,"num_warps":8,"num_stages":3},{"BLOCK_M":128,"BLOCK_N":128,"num_warps":8,"num_stages":2},{"BLOCK_N":128,"num_stages":2},{},{"BLOCK_M":128,"num_warps":8,"num_stages":2}]'
for s in "B=8,T=4096,HQ=16,H=16,D=128,W=512" "B=1,T=65536,HQ=16,H=16,D=128,W=512"; do
  echo "## $s"; timeout 120 python3 -m kernelgen.tune.probe --template sliding_window_attention.fwd \
      --shape $s --configs "$C" 2>&1 | grep -v -i warn | grep " ms \|rror" | cut -c1-200
done
NCU=$(python3 -c "from kernelgen.ncu import find_ncu; print(find_ncu())" 2>/dev/null || echo ncu)
export M=lts__t_bytes.sum.per_second,lts__t_bytes.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_sector_hit_rate.pct,dram__bytes_read.sum,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active,gpu__time_duration.sum,sm__warps_active.avg.pct_of_peak_sustained_active,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,smsp__average_warps_issue_stalled_wait_per_issue_active.ratio,smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio,smsp__issue_active.avg.pct_of_peak_sustained_active,l1tex__throughput.avg.pct_of_peak_sustained_active,launch__registers_per_thread
for c in '{}' '{"BLOCK_M":128,"num_warps":8,"num_stages":2}'; do
  echo "## ncu $c"; timeout 120 $NCU --profile-from-start off --metrics $M --csv --page raw python3 scripts/probes/ncu_one.py sliding_window_attention.fwd B=8,T=4096,HQ=16,H=16,D=128,W=512 "$c" > $OUT/ncu.csv 2> $OUT/ncu.err
  python3 scripts/probes/ncu_rows.py
done
