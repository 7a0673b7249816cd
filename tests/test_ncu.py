"""Nsight Compute support on the CPU: CSV parsing of canned output, the runner against a fake ncu."""
import stat
import sys
import textwrap

import pytest

from kernelgen import ncu, profile, roofline

# What `ncu --csv --print-units base` writes for a launch of two kernels, with the program's and
# ncu's own chatter around it and a thousands separator in one value.
SAMPLE = textwrap.dedent('''\
    ==PROF== Connected to process 4242 (/usr/bin/python3.12)
    ==PROF== Profiling "chunk_fwd_kernel" - 0: 0%....50%....100% - 5 passes
    ==PROF== Profiling "state_pass_kernel" - 1: 0%....50%....100% - 5 passes
    ==PROF== Disconnected from process 4242
    "ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"
    "0","4242","python3.12","127.0.0.1","chunk_fwd_kernel","1","7","(128, 1, 1)","(1024, 8, 1)","0","9.0","Command line profiler metrics","dram__bytes_read.sum","byte","1,048,576"
    "0","4242","python3.12","127.0.0.1","chunk_fwd_kernel","1","7","(128, 1, 1)","(1024, 8, 1)","0","9.0","Command line profiler metrics","dram__bytes_write.sum","byte","524288"
    "0","4242","python3.12","127.0.0.1","chunk_fwd_kernel","1","7","(128, 1, 1)","(1024, 8, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","nsecond","30000"
    "0","4242","python3.12","127.0.0.1","chunk_fwd_kernel","1","7","(128, 1, 1)","(1024, 8, 1)","0","9.0","Command line profiler metrics","sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active","%","40.00"
    "0","4242","python3.12","127.0.0.1","chunk_fwd_kernel","1","7","(128, 1, 1)","(1024, 8, 1)","0","9.0","Command line profiler metrics","sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active","%","0"
    "1","4242","python3.12","127.0.0.1","state_pass_kernel","1","7","(64, 1, 1)","(64, 1, 1)","0","9.0","Command line profiler metrics","dram__bytes_read.sum","Kbyte","2.5"
    "1","4242","python3.12","127.0.0.1","state_pass_kernel","1","7","(64, 1, 1)","(64, 1, 1)","0","9.0","Command line profiler metrics","dram__bytes_write.sum","byte","500"
    "1","4242","python3.12","127.0.0.1","state_pass_kernel","1","7","(64, 1, 1)","(64, 1, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","usecond","10"
    "1","4242","python3.12","127.0.0.1","state_pass_kernel","1","7","(64, 1, 1)","(64, 1, 1)","0","9.0","Command line profiler metrics","sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active","%","n/a"
    "1","4242","python3.12","127.0.0.1","state_pass_kernel","1","7","(64, 1, 1)","(64, 1, 1)","0","9.0","Command line profiler metrics","sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active","%","0"
    ''')


def test_parse_canned_output():
    kernels = ncu.parse_csv(SAMPLE)
    assert [k.name for k in kernels] == ["chunk_fwd_kernel", "state_pass_kernel"]
    first, second = kernels
    assert first.metrics["dram__bytes_read.sum"] == 1_048_576
    assert first.metrics["gpu__time_duration.sum"] == pytest.approx(30e-6)
    assert second.metrics["dram__bytes_read.sum"] == pytest.approx(2500.0)      # Kbyte = 1000 bytes
    assert ncu.GMMA_METRIC not in second.metrics                              # "n/a" is left out


def test_summary_sums_bytes_and_weights_tensor_activity_by_time():
    found = ncu.summarize(ncu.parse_csv(SAMPLE))
    assert found.kernels == 2
    assert found.dram_bytes == pytest.approx(1_048_576 + 524_288 + 2_500 + 500)
    assert found.tensor_pct == pytest.approx((40.0 * 30 + 0.0 * 10) / 40)
    assert found.gpu_ms == pytest.approx(0.040)


def test_parse_without_a_table():
    assert ncu.parse_csv("==PROF== Connected\n==ERROR== no kernels were profiled\n") == []
    assert ncu.parse_value("n/a", "byte") is None
    assert ncu.parse_value("1.5", "Mbyte") == pytest.approx(1.5e6)


def test_metrics_follow_the_architecture():
    assert ncu.GMMA_METRIC in ncu.metrics_for((9, 0))
    assert ncu.GMMA_METRIC not in ncu.metrics_for((8, 0))
    assert set(ncu.DRAM_METRICS) <= set(ncu.metrics_for(None))


def test_command_profiles_one_launch_without_clock_control():
    cmd = ncu.command("/x/ncu", ["a", "b"], "/tmp/log.csv", {"template": "t"})
    joined = " ".join(cmd)
    assert "--clock-control none" in joined and "--profile-from-start off" in joined
    assert "--metrics a,b" in joined and "--log-file /tmp/log.csv" in joined
    assert cmd[-4:-1] == ["-m", "kernelgen.ncu", "child"]


def test_find_ncu_honours_the_override(monkeypatch, tmp_path):
    monkeypatch.setenv("KERNELGEN_NCU", str(tmp_path / "missing"))
    assert ncu.find_ncu() is None
    fake = _fake_ncu(tmp_path, "ok")
    monkeypatch.setenv("KERNELGEN_NCU", fake)
    assert ncu.find_ncu() == fake


def _fake_ncu(folder, mode: str) -> str:
    """An 'ncu' that writes SAMPLE to --log-file; mode 'no-gmma' fails when asked for the GMMA metric,
    'fail' always fails."""
    sample_file = folder / "sample.csv"
    sample_file.write_text(SAMPLE)
    script = folder / f"ncu-{mode}"
    script.write_text(textwrap.dedent(f'''\
        #!{sys.executable}
        import sys
        args = sys.argv[1:]
        metrics = args[args.index("--metrics") + 1]
        log = args[args.index("--log-file") + 1]
        if {mode!r} == "fail":
            print("==ERROR== The application returned an error code (1).", file=sys.stderr)
            sys.exit(1)
        if {mode!r} == "no-gmma" and "{ncu.GMMA_METRIC}" in metrics:
            print("==ERROR== Failed to find metric {ncu.GMMA_METRIC}", file=sys.stderr)
            sys.exit(1)
        open(log, "w").write(open({str(sample_file)!r}).read())
        '''))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_measure_through_a_fake_ncu(tmp_path):
    found = ncu.measure(_fake_ncu(tmp_path, "ok"), "x.fwd", {"N": 1}, "bf16", "", (9, 0))
    assert found.kernels == 2 and found.dram_bytes == pytest.approx(1_575_864)


def test_measure_retries_without_an_unknown_metric(tmp_path):
    found = ncu.measure(_fake_ncu(tmp_path, "no-gmma"), "x.fwd", {"N": 1}, "bf16", "", (9, 0))
    assert found.kernels == 2


def test_measure_failure_carries_ncus_words(tmp_path):
    with pytest.raises(ncu.NcuError, match="returned an error code"):
        ncu.measure(_fake_ncu(tmp_path, "fail"), "x.fwd", {"N": 1}, "bf16", "", (9, 0))


def test_rows_get_model_error(tmp_path):
    row = roofline.Row(template="x.fwd", op="x", kernel="fwd", shape={"N": 1}, dtype="bf16", bytes=1_733_450.4)
    broken = roofline.Row(template="y.fwd", op="y", kernel="fwd", shape={"N": 1}, dtype="bf16", error="boom")
    profile.add_ncu_measurements([row, broken], _fake_ncu(tmp_path, "ok"), (9, 0))
    assert row.dram_bytes == pytest.approx(1_575_864) and row.model_error_pct == pytest.approx(10.0)
    assert row.ncu_kernels == 2 and broken.dram_bytes is None
    failing = roofline.Row(template="x.fwd", op="x", kernel="fwd", shape={"N": 1}, dtype="bf16", bytes=1.0)
    profile.add_ncu_measurements([failing], _fake_ncu(tmp_path, "fail"), (9, 0))
    assert "returned an error code" in failing.ncu_error and failing.model_error_pct is None


def test_an_unusable_ncu_is_given_up_after_two_rows(tmp_path):
    rows = [roofline.Row(template="x.fwd", op="x", kernel="fwd", shape={"N": n}, dtype="bf16", bytes=1.0)
            for n in range(4)]
    profile.add_ncu_measurements(rows, _fake_ncu(tmp_path, "fail"), (9, 0))
    assert all("returned an error code" in r.ncu_error for r in rows[:2])
    assert all(r.ncu_error == "not run: ncu failed on the first rows" for r in rows[2:])


@pytest.mark.gpu
def test_ncu_measures_a_copy_like_template_on_the_gpu():
    """On the GPU machine: ncu's DRAM bytes for a real template are within 50% of its model."""
    path = ncu.find_ncu()
    if path is None:
        pytest.skip(ncu.NCU_HINT)
    from kernelgen import templates
    found = sorted(templates.all_templates().values(), key=lambda t: t.name)
    if not found:
        pytest.skip("no templates registered")
    import torch
    template = found[0]
    shape = template.workload[0]
    dtype = template.dtypes[0]
    result = ncu.measure(path, template.name, shape, dtype, template.flags[0],
                         torch.cuda.get_device_capability())
    model = template.bytes(shape, dtype, template.flags[0])
    assert result.dram_bytes and abs(roofline.model_error_pct(model, result.dram_bytes)) < 50
