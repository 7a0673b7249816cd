#!/usr/bin/env bash
# Round 80 (session 11): the loglinear output kernel (0.415 of the 0.634 ms forward at K = V = 128):
# 8 warps on the whole V tile, two stages; ncu of it (what bounds it).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
s=B=8,T=4096,H=16,K=128,V=128,L=13
echo "## $s"; timeout 150 python3 -m kernelgen.tune.probe --template loglinear_attention.fwd --shape $s --configs '[{"out_warps":8},{"out_warps":8,"num_stages":2},{"num_stages":2},{}]' --kernels 2>&1 | grep -v -i warn | grep " ms \|rror\|output_kernel" | cut -c1-150
NCU=$(python3 -c "from kernelgen.ncu import find_ncu; print(find_ncu())" 2>/dev/null || echo ncu)
export M=lts__t_bytes.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_sector_hit_rate.pct,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,gpu__time_duration.sum,sm__warps_active.avg.pct_of_peak_sustained_active,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,smsp__average_warps_issue_stalled_wait_per_issue_active.ratio,smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio,smsp__issue_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread,launch__occupancy_limit_registers,launch__occupancy_limit_shared_mem
echo "## ncu output kernel"; timeout 150 $NCU --profile-from-start off -k regex:output --metrics $M --csv --page raw python3 scripts/probes/ncu_one.py loglinear_attention.fwd $s '{}' > $OUT/ncu.csv 2> $OUT/ncu.err
python3 scripts/probes/ncu_rows.py
