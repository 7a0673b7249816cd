"""Helpers shared by the op tests: relative error against a float64 reference."""
import torch

from kernelgen.tune.verify import relative_error


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out − ref‖ / ‖ref‖ in float64 (the tuner's own check); NaN anywhere in ``out`` gives inf."""
    return relative_error(out.detach().cpu(), ref.detach().cpu())


def assert_close(name: str, out: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    assert out.shape == ref.shape, f"{name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    err = rel_error(out, ref)
    assert err <= tol, f"{name}: relative error {err:.3e} > {tol:.1e}"
