"""Helpers shared by the op tests: relative error against a float64 reference, table-driven
bad-input cases, the selective scan's positional call."""
import pytest
import torch

from kernelgen.tune.verify import relative_error


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out − ref‖ / ‖ref‖ in float64 (the tuner's own check); NaN anywhere in ``out`` gives inf."""
    return relative_error(out.detach().cpu(), ref.detach().cpu())


def assert_close(name: str, out: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    assert out.shape == ref.shape, f"{name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    err = rel_error(out, ref)
    assert err <= tol, f"{name}: relative error {err:.3e} > {tol:.1e}"


def expect_bad_call(bad_calls, case: str, device) -> None:
    """Run case ``case`` of a table of (name, error, message, call) rows built for ``device`` and
    expect that error with that message. Cases only the CPU table has (meta tensors standing in for
    a second device) are skipped on other devices."""
    calls = {name: (error, message, call) for name, error, message, call in bad_calls}
    if case not in calls:
        pytest.skip("a CPU-only case (meta tensors stand in for a second device)")
    error, message, call = calls[case]
    with pytest.raises(error, match=message):
        call()


def call_selective_scan(fn, inputs, **kwargs):
    """``fn`` (the op or a reference) called as mamba-ssm's selective_scan_fn is, from an inputs dict."""
    i = inputs
    return fn(i["u"], i["delta"], i["A"], i["B"], i["C"], i["D"], i["z"], i["delta_bias"],
              initial_state=i["initial_state"], **kwargs)


def require_grad(inputs: dict) -> dict:
    """Marks every tensor of ``inputs`` (None entries skipped) as an autograd leaf; returns inputs."""
    for value in inputs.values():
        if value is not None:
            value.requires_grad_(True)
    return inputs
