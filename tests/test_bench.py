"""bench.py's cases: every family's bench module imports on the CPU and describes sane cases."""
import math

import pytest

import kernelgen
from kernelgen.bench import FAMILIES
from kernelgen.bench.runner import collect_cases


@pytest.mark.parametrize("quick", [True, False])
def test_every_family_contributes_cases(quick):
    cases = collect_cases("all", quick)
    assert {case.op.split("_step")[0] for case in cases} >= {"linear_scan", "selective_scan", "linear_attention",
                                                          "loglinear_attention", "sliding_window_attention"}
    for case in cases:
        assert case.op in kernelgen.__all__ or case.op in FAMILIES, case.op
        assert case.mode and case.dtype in ("bf16", "fp16", "fp32")
        assert math.isfinite(case.bytes) and case.bytes > 0, case.label
        assert math.isfinite(case.flops) and case.flops >= 0, case.label
        assert callable(case.make) and case.target_ms is None or case.target_ms > 0


def test_op_filter():
    cases = collect_cases("linear_scan", quick=True)
    assert cases and all(case.op == "linear_scan" for case in cases)


def test_mode_filter():
    both = collect_cases("sliding_window_attention", quick=True)
    backward = collect_cases("sliding_window_attention", quick=True, mode="fwd+bwd")
    assert backward and all(case.mode == "fwd+bwd" for case in backward)
    assert len(backward) < len(both)
