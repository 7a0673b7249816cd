"""Tests run the real Triton kernels: on the GPU when there is one, else under the interpreter."""
import os

import pytest

try:
    import torch
    _has_cuda = torch.cuda.is_available()
except Exception:  # pragma: no cover
    _has_cuda = False

if not _has_cuda:
    # Must be set before triton is imported anywhere.
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICE = "cuda" if _has_cuda else "cpu"


def pytest_collection_modifyitems(config, items):
    if _has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def device():
    return DEVICE


@pytest.fixture(autouse=True)
def _fresh_dispatch(tmp_path, monkeypatch):
    """Each test sees an empty tuned/ folder unless it sets one, and a clean dispatch cache."""
    from kernelgen import dispatch
    monkeypatch.setenv("KERNELGEN_TUNED_DIR", str(tmp_path / "tuned-empty"))
    monkeypatch.setenv("KERNELGEN_CACHE_DIR", str(tmp_path / "cache"))
    dispatch.reset()
    yield
    dispatch.reset()
