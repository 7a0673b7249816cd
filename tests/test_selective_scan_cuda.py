"""The CUDA backend of the selective scan (templates/selective_scan.cu + selective_scan_cuda.py).

Without a GPU the kernels are still checked three ways:
  * nvcc compiles every instantiation family (CI fails on a broken template);
  * NVRTC (the compiler CuPy uses) compiles them too, when libnvrtc is installed;
  * the kernels *run* under a small CPU emulation of CUDA (g++, one std::thread per CUDA thread,
    warp shuffles through a per-warp barrier), launched by the real Python launchers on CPU
    tensors, and are compared with a float64 reference written from the math.
GPU tests (marked gpu) run the same comparisons through CuPy on the device.
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kernelgen import cuda_jit
from kernelgen.templates import selective_scan as ss
from kernelgen.templates import selective_scan_cuda as ssc
from reference_utils import assert_close

TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 2e-2}


# --- float64 reference, from the math ---------------------------------------------------------

def ref_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, initial_state=None):
    """y [batch, dim, L] and the last state [batch, dim, N], in float64.
    dt = delta + bias (softplus); h_t = exp(dt A) h + dt B_t u_t; y_t = C_t . h_t + D u_t; y *= silu(z)."""
    batch, dim, length = u.shape
    groups, n_states = B.shape[1], B.shape[2]
    dt = delta.double() + (delta_bias.double()[:, None] if delta_bias is not None else 0)
    if delta_softplus:
        dt = F.softplus(dt)
    u64, A64 = u.double(), A.double()
    Bx = B.double().repeat_interleave(dim // groups, dim=1)   # [batch, dim, N, L]
    Cx = C.double().repeat_interleave(dim // groups, dim=1)
    h = initial_state.double().clone() if initial_state is not None else u64.new_zeros(batch, dim, n_states)
    ys = []
    for t in range(length):
        h = torch.exp(dt[:, :, t, None] * A64) * h + (dt[:, :, t] * u64[:, :, t])[..., None] * Bx[..., t]
        ys.append((h * Cx[..., t]).sum(-1))
    y = torch.stack(ys, -1) if ys else u64.new_zeros(batch, dim, 0)
    if D is not None:
        y = y + D.double()[:, None] * u64
    if z is not None:
        y = y * F.silu(z.double())
    return y, h


def ref_step(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """One token of ref_scan: (y [batch, dim], new state)."""
    y, h = ref_scan(x[..., None], dt[..., None], A, B[..., None], C[..., None], D,
                    None if z is None else z[..., None], dt_bias, dt_softplus, state)
    return y[..., 0], h


# --- random inputs ----------------------------------------------------------------------------

def make_scan_inputs(batch, dim, length, n_states, groups, dtype, bc_dtype=None, *, D=True, z=True,
                     bias=True, init=True, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    bc_dtype = bc_dtype or dtype

    def rnd(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=gen) * scale + shift

    inputs = {
        "u": rnd(batch, dim, length).to(dtype),
        # Slow decays (dt * |A| ~ 0.001 .. 0.06 a step without softplus) so that state carried
        # across lanes and chunks matters to y: a wrong carry fails the comparison.
        "delta": (torch.rand(batch, dim, length, generator=gen) * 0.1 + 0.01).to(dtype),
        "A": -(torch.rand(dim, n_states, generator=gen) * 0.5 + 0.05),
        "B": rnd(batch, groups, n_states, length, scale=0.7).to(bc_dtype),
        "C": rnd(batch, groups, n_states, length, scale=0.7).to(bc_dtype),
        "D": rnd(dim) if D else None,
        "z": rnd(batch, dim, length).to(dtype) if z else None,
        "delta_bias": torch.rand(dim, generator=gen) * 0.05 if bias else None,
        "initial_state": rnd(batch, dim, n_states) if init else None,
    }
    return {k: (v.to(device) if v is not None else None) for k, v in inputs.items()}


def run_fwd(config, inputs, softplus, last=True):
    u = inputs["u"]
    batch, dim, _ = u.shape
    n_states = inputs["A"].shape[1]
    out = torch.full_like(u, float("nan"))
    last_state = torch.full((batch, dim, n_states), float("nan"), device=u.device) if last else None
    ssc.selective_scan_fwd_cuda(config, inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"],
                                inputs["D"], inputs["z"], inputs["delta_bias"], softplus,
                                inputs["initial_state"], out, last_state)
    return out, last_state


def make_step_inputs(batch, dim, n_states, groups, dtype, bc_dtype=None, *, options=True, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    bc_dtype = bc_dtype or dtype
    inputs = {
        "state": torch.randn(batch, dim, n_states, generator=gen),
        "x": torch.randn(batch, dim, generator=gen).to(dtype),
        "dt": (torch.rand(batch, dim, generator=gen) * 0.4 + 0.05).to(dtype),
        "A": -(torch.rand(dim, n_states, generator=gen) * 2 + 0.2),
        "B": (torch.randn(batch, groups, n_states, generator=gen) * 0.7).to(bc_dtype),
        "C": (torch.randn(batch, groups, n_states, generator=gen) * 0.7).to(bc_dtype),
        "D": torch.randn(dim, generator=gen) if options else None,
        "z": torch.randn(batch, dim, generator=gen).to(dtype) if options else None,
        "dt_bias": torch.randn(dim, generator=gen) * 0.3 if options else None,
    }
    return {k: (v.to(device) if v is not None else None) for k, v in inputs.items()}


def run_step(config, inputs, softplus):
    state = inputs["state"].clone()
    out = torch.full_like(inputs["x"], float("nan"))
    ssc.selective_state_update_cuda(config, state, inputs["x"], inputs["dt"], inputs["A"], inputs["B"],
                                    inputs["C"], inputs["D"], inputs["z"], inputs["dt_bias"], softplus, out)
    return out, state


GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")


def run_bwd(config, inputs, softplus, dout, dlast, chunk_states=None):
    """The CUDA backward's gradients, by input name (absent inputs absent)."""
    u, B = inputs["u"], inputs["B"]
    batch, dim, _ = u.shape
    n_states = inputs["A"].shape[1]
    nan = float("nan")
    grads = {"u": torch.full_like(u, nan), "delta": torch.full_like(u, nan), "A": torch.full_like(inputs["A"], nan),
             "B": torch.full_like(B, nan), "C": torch.full_like(B, nan)}
    for name, like in (("D", "D"), ("z", "z"), ("delta_bias", "delta_bias"), ("initial_state", "initial_state")):
        if inputs[like] is not None:
            grads[name] = torch.full_like(inputs[like], nan)
    ssc.selective_scan_bwd_cuda(config, u, inputs["delta"], inputs["A"], B, inputs["C"], inputs["D"], inputs["z"],
                                inputs["delta_bias"], softplus, inputs["initial_state"], dout, dlast,
                                grads["u"], grads["delta"], grads["A"], grads["B"], grads["C"], grads.get("D"),
                                grads.get("z"), grads.get("delta_bias"), grads.get("initial_state"),
                                chunk_states=chunk_states)
    return grads


def ref_grads(inputs, softplus, dout, dlast):
    """float64 autograd through ref_scan."""
    leaves = {k: v.detach().double().requires_grad_() for k, v in inputs.items() if v is not None}
    y, h = ref_scan(**{k: leaves.get(k) for k in inputs}, delta_softplus=softplus)
    loss = (y * dout.double()).sum() + ((h * dlast.double()).sum() if dlast is not None else 0)
    names = [k for k in GRAD_NAMES if k in leaves]
    return dict(zip(names, torch.autograd.grad(loss, [leaves[k] for k in names])))


def upstream_grads(inputs, with_dlast=True, seed=0):
    """Random ∂L/∂out (and ∂L/∂last_state when with_dlast), drawn on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    u = inputs["u"]
    dout = torch.randn(u.shape, generator=gen).to(u.dtype).to(u.device)
    dlast = (torch.randn(u.shape[0], u.shape[1], inputs["A"].shape[1], generator=gen).to(u.device)
             if with_dlast else None)
    return dout, dlast


def assert_grads(got, inputs, softplus, dout, dlast, tol, check_dtypes=False):
    """Every gradient against float64 autograd of the reference scan."""
    want = ref_grads(inputs, softplus, dout, dlast)
    assert set(got) == set(want)
    for name in want:
        if check_dtypes:
            assert got[name].dtype == inputs[name].dtype, name
        assert_close(f"d{name}", got[name], want[name].to(got[name].device), tol)


def check_bwd(config, inputs, softplus, tol, with_dlast=True, chunk_states=None, seed=0):
    dout, dlast = upstream_grads(inputs, with_dlast, seed)
    got = run_bwd(config, inputs, softplus, dout, dlast, chunk_states)
    assert_grads(got, inputs, softplus, dout, dlast, tol, check_dtypes=True)
    return got


def pack_bc_ref(B, C):
    """pack_bc's layout, written here from its docstring: fp32 [batch, G, L_pad, 2, N_pad], zero padded."""
    batch, groups, n_states, length = B.shape
    n_pad = max(2, 1 << max(0, n_states - 1).bit_length())
    l_pad = max(ssc.CHECKPOINT_STEPS, -(-length // ssc.CHECKPOINT_STEPS) * ssc.CHECKPOINT_STEPS)
    packed = torch.zeros(batch, groups, l_pad, 2, n_pad, device=B.device)
    packed[:, :, :length, 0, :n_states] = B.float().transpose(2, 3)
    packed[:, :, :length, 1, :n_states] = C.float().transpose(2, 3)
    return packed


def ref_checkpoints(inputs, softplus):
    """The state entering every CHECKPOINT_STEPS-th step (the forward's training output), fp32."""
    u = inputs["u"]
    batch, dim, length = u.shape
    steps = ssc.CHECKPOINT_STEPS
    n_states = inputs["A"].shape[1]
    out = torch.empty(batch, dim, -(-length // steps), n_states, device=u.device)
    for k in range(out.shape[2]):
        prefix = {n: (v[..., :k * steps].contiguous() if v is not None and n in ("u", "delta", "z", "B", "C") else v)
                  for n, v in inputs.items()}
        out[:, :, k] = ref_scan(**prefix, delta_softplus=softplus)[1].float()
    return out


def run_bwd_channel(config, inputs, softplus, dout, dlast, checkpoints=None):
    """The channel-layout backward's gradients by input name, dB/dC unpacked as the op unpacks them."""
    u, B = inputs["u"], inputs["B"]
    n_states = inputs["A"].shape[1]
    if checkpoints is None:
        checkpoints = ref_checkpoints(inputs, softplus)
    du, ddelta = torch.full_like(u, float("nan")), torch.full_like(u, float("nan"))
    dz = torch.full_like(u, float("nan")) if inputs["z"] is not None else None
    got = ssc.selective_scan_bwd_channel_cuda(
        config, u, inputs["delta"], inputs["A"], pack_bc_ref(B, inputs["C"]), n_states, inputs["D"], inputs["z"],
        inputs["delta_bias"], softplus, checkpoints, dout, dlast, du, ddelta, dz,
        want_dinitial=inputs["initial_state"] is not None)
    dBC = got["dBC"]   # [batch, G, L_pad / steps, N, 2, steps]
    steps_major = dBC.permute(0, 1, 4, 3, 2, 5).reshape(*dBC.shape[:2], 2, n_states, -1)[..., :u.shape[2]]
    grads = {"u": du, "delta": ddelta, "A": got["dA"], "B": steps_major[:, :, 0].to(B.dtype),
             "C": steps_major[:, :, 1].to(B.dtype), "D": got["dD"], "z": dz, "delta_bias": got["ddelta_bias"],
             "initial_state": got["dinitial_state"]}
    return {k: v for k, v in grads.items() if v is not None}


def check_bwd_channel(config, inputs, softplus, tol, with_dlast=True, seed=0):
    dout, dlast = upstream_grads(inputs, with_dlast, seed)
    got = run_bwd_channel(config, inputs, softplus, dout, dlast)
    assert_grads(got, inputs, softplus, dout, dlast, tol)
    return got


def fwd_config(threads, items, unroll=1, occupancy=8):
    return {"threads": threads, "items_per_thread": items, "state_unroll": unroll, "occupancy": occupancy}


def bwd_config(threads, items, occupancy=8):
    return {"threads": threads, "items_per_thread": items, "occupancy": occupancy}


def step_config(threads, states_per_lane):
    return {"threads": threads, "items_per_thread": states_per_lane}


# --- availability, configs, names (pure CPU) ----------------------------------------------------

def test_unavailable_reason_names_what_is_missing(monkeypatch):
    cuda_jit.cuda_unavailable_reason.cache_clear()
    try:
        monkeypatch.setitem(sys.modules, "cupy", None)   # import cupy -> ImportError
        reason = ssc.cuda_unavailable_reason()
        assert reason is not None and "CuPy is not installed" in reason and "cupy-cuda" in reason
    finally:
        cuda_jit.cuda_unavailable_reason.cache_clear()


def test_unavailable_reason_here():
    reason = ssc.cuda_unavailable_reason()
    try:
        import cupy  # noqa: F401
        has_cupy = True
    except ImportError:
        has_cupy = False
    if not has_cupy or not torch.cuda.is_available():
        assert isinstance(reason, str) and reason
    else:
        assert reason is None


TARGET = {"batch": 8, "dim": 2048, "L": 4096, "N": 16, "G": 1}
DECODE = {"batch": 256, "dim": 4096, "N": 16, "G": 1}


@pytest.mark.parametrize("shape", [TARGET, {"batch": 1, "dim": 24, "L": 77, "N": 4, "G": 2},
                                   {"batch": 2, "dim": 512, "L": 0, "N": 256, "G": 1}])
def test_default_fwd_config_is_valid(shape):
    config = ssc.cuda_default_config(shape)
    assert set(config) == set(ssc._FWD_LAYOUT_KEYS[config["layout"]])
    assert ssc.cuda_check_config(config, shape) is None
    assert ssc.cuda_canonical(config) == config


@pytest.mark.parametrize("shape", [DECODE, {"batch": 3, "dim": 10, "N": 5, "G": 2},
                                   {"batch": 3, "dim": 10, "N": 256, "G": 1}])
def test_default_step_config_is_valid(shape):
    config = ssc.cuda_default_config(shape)          # no L: the decode step
    assert set(config) == set(ssc.CUDA_STEP_SPACE)
    assert ssc.cuda_check_config(config, shape) is None
    assert ssc.cuda_check_config(config, shape, kernel="step") is None


def test_channel_layout_default_and_constraints():
    config = ssc.cuda_default_config(TARGET)
    assert config["layout"] == "channel" and config["split"] == 2    # two threads per channel at N = 16
    wide = {**TARGET, "N": 64}
    assert ssc.cuda_default_config(wide)["split"] == 4
    for n_states in (17, 33, 63):     # no power-of-two split divides N: the warp layout
        assert ssc.cuda_default_config({**TARGET, "N": n_states})["layout"] == "warp"
    assert ssc.cuda_default_config({**TARGET, "N": 48})["split"] == 4
    # the staged chunk: 64 steps while two buffers fit the static shared memory
    assert [ssc.cuda_default_config({**TARGET, "N": n})["chunk"] for n in (16, 32, 64)] == [64, 64, 32]
    for n_states in (4, 16, 48, 64):
        assert ssc.cuda_check_config(ssc.cuda_default_config({**TARGET, "N": n_states}), {**TARGET, "N": n_states}) \
            is None
    few = {"batch": 2, "dim": 1536, "L": 2048, "N": 16, "G": 1}     # 3072 channels: the warp layout
    assert ssc.cuda_default_config(few)["layout"] == "warp"
    # there, one channel a block with 16 steps a lane (the tuner's pick, 0.155 against 0.247 ms)
    assert {k: ssc.cuda_default_config(few)[k] for k in ("threads", "items_per_thread", "state_unroll")} == \
        {"threads": 32, "items_per_thread": 16, "state_unroll": 1}
    narrow = {"batch": 64, "dim": 96, "L": 64, "N": 16, "G": 3}     # 32 channels a group, 2 threads each
    assert ssc.cuda_default_config(narrow)["threads"] == 64
    assert ssc.cuda_default_config({**TARGET, "N": 4})["split"] == 1
    assert "split" in ssc.cuda_check_config({**config, "split": 3}, TARGET)
    assert "split" in ssc.cuda_check_config({**config, "split": 32}, TARGET)
    assert "spill" in ssc.cuda_check_config({**config, "split": 1}, {**TARGET, "N": 64})
    assert "multiple of 8" in ssc.cuda_check_config({**config, "chunk": 12}, TARGET)
    assert "bytes" in ssc.cuda_check_config({**config, "split": 8, "chunk": 128}, {**TARGET, "N": 256})
    assert "poly" in ssc.cuda_check_config({**config, "poly": 17}, TARGET)
    assert "layout" in ssc.cuda_check_config({**config, "layout": "lanes"}, TARGET)
    # canonical keeps only what the chosen layout reads
    assert ssc.cuda_canonical({**config, "items_per_thread": 8, "block_d": 4}) == config
    warp = ssc.warp_fwd_default_config(TARGET)
    assert ssc.cuda_canonical({**warp, "split": 2}) == warp


def test_check_config_rejects_impossible():
    good = ssc.warp_fwd_default_config(TARGET)
    assert "multiple of 32" in ssc.cuda_check_config({**good, "threads": 48}, TARGET)
    assert "power of two" in ssc.cuda_check_config({**good, "items_per_thread": 12}, TARGET)
    assert "power of two" in ssc.cuda_check_config({**good, "items_per_thread": 32}, TARGET)
    assert "spill" in ssc.cuda_check_config({**good, "items_per_thread": 16, "state_unroll": 2}, TARGET)
    assert "state_unroll" in ssc.cuda_check_config({**good, "state_unroll": 3}, TARGET)
    assert "occupancy" in ssc.cuda_check_config({**good, "occupancy": 10}, TARGET)
    assert ssc.cuda_check_config({**good, "threads": 128, "occupancy": 12}, TARGET) is None
    assert "N must be" in ssc.cuda_check_config(good, {**TARGET, "N": 257})
    assert "groups" in ssc.cuda_check_config(good, {**TARGET, "G": 3})
    assert "multiple of 32" in ssc.cuda_check_config({"threads": 100, "items_per_thread": 4}, DECODE)
    assert "power of two" in ssc.cuda_check_config({"threads": 128, "items_per_thread": 3}, DECODE)


def test_bwd_config():
    config = ssc.cuda_default_config(TARGET, "bwd")
    assert set(config) == set(ssc.CUDA_BWD_SPACE)
    assert ssc.cuda_check_config(config, TARGET, "bwd") is None
    odd = {"batch": 2, "dim": 15, "L": 100, "N": 256, "G": 5}     # 3 channels a group
    config = ssc.cuda_default_config(odd, "bwd")
    assert config["threads"] == 32 and ssc.cuda_check_config(config, odd, "bwd") is None
    assert "divide" in ssc.cuda_check_config({**config, "threads": 64}, odd, "bwd")
    assert "at most 256" in ssc.cuda_check_config({**config, "threads": 512}, TARGET, "bwd")
    big = {**TARGET, "N": 256}
    too_big = {"threads": 256, "items_per_thread": 16, "occupancy": 8}
    assert "shared memory" in ssc.cuda_check_config(too_big, big, "bwd")
    assert ssc.cuda_check_config(ssc.cuda_default_config(big, "bwd"), big, "bwd") is None
    assert ssc.chunk_count({"items_per_thread": 8}, 257) == 2 and ssc.chunk_count({"items_per_thread": 8}, 0) == 0


def test_whole_space_is_checked_consistently():
    """Every grid point either passes or says why; the grid is not empty at the target shapes."""
    import itertools
    for space, shape, kernel in ((ssc.CUDA_SPACE, TARGET, "fwd"), (ssc.CUDA_BWD_SPACE, TARGET, "bwd"),
                                 (ssc.CUDA_STEP_SPACE, DECODE, "step")):
        keys = list(space)
        ok = 0
        for values in itertools.product(*(space[k] for k in keys)):
            reason = ssc.cuda_check_config(dict(zip(keys, values)), shape, kernel)
            assert reason is None or isinstance(reason, str)
            ok += reason is None
        assert ok > 0


def test_canonical_drops_foreign_keys():
    config = {"backend": "cuda", "BLOCK_T": 64, **ssc.warp_fwd_default_config(TARGET)}
    assert ssc.cuda_canonical(config) == ssc.warp_fwd_default_config(TARGET)
    assert set(ssc.cuda_canonical(config, "step")) == {"threads", "items_per_thread"}


def test_step_lane_layout():
    assert ssc.step_lanes_per_channel(16, 4) == 4
    assert ssc.step_lanes_per_channel(16, 1) == 16
    assert ssc.step_lanes_per_channel(5, 2) == 4
    assert ssc.step_lanes_per_channel(256, 4) == 32
    assert ssc.step_lanes_per_channel(3, 8) == 1


def test_name_expressions():
    assert (ssc.fwd_name_expression(torch.bfloat16, torch.float32, 16, 4, 16, 1, 16)
            == "selective_scan_fwd_kernel<BFloat16, Float32, 16, 4, 16, 1, 4, true>")
    assert (ssc.fwd_name_expression(torch.bfloat16, torch.float32, 16, 4, 16, 1, 16, aligned=False)
            == "selective_scan_fwd_kernel<BFloat16, Float32, 16, 4, 16, 1, 4, false>")
    assert (ssc.fwd_channel_name_expression(torch.float16, 16, 2, 128, 64, 0, 8, 16, True, False)
            == "selective_scan_fwd_channel_kernel<Float16, 16, 2, 128, 64, 16, 0, 2, true, false>")
    assert (ssc.step_name_expression(torch.float16, torch.float16, 5, 128, 2)
            == "selective_state_update_kernel<Float16, Float16, 5, 128, 2>")
    with pytest.raises(TypeError, match="u must be float32, float16 or bfloat16"):
        ssc.fwd_name_expression(torch.float64, torch.float32, 16, 4, 16, 1)


def test_rows_aligned():
    # Every row on a 16-byte boundary: L * element size a multiple of 16 and the data pointer aligned.
    rows = torch.zeros(2, 3, 8, dtype=torch.bfloat16)
    assert ssc.rows_aligned(8, rows, None, torch.zeros(2, 3, 8))
    assert not ssc.rows_aligned(7, rows[..., :7].contiguous())
    assert not ssc.rows_aligned(8, torch.zeros(49, dtype=torch.bfloat16)[1:].view(2, 3, 8))
    assert not ssc.rows_aligned(4, torch.zeros(2, 3, 4, dtype=torch.bfloat16), torch.zeros(2, 3, 4))   # 8-byte bf16 rows


def test_cuda_jit_compiles_once_and_launches_on_the_torch_stream(monkeypatch):
    """cuda_jit's CuPy plumbing against a stand-in CuPy: the source, options and name expression
    reach RawModule, one compile per instantiation, launches on torch's stream."""
    import types
    compiled, calls = [], []

    class FakeFunction:
        def __call__(self, grid, block, args, shared_mem=0, stream=None):
            calls.append((grid, block, args, shared_mem, stream))

    class FakeModule:
        def __init__(self, code, options, name_expressions):
            compiled.append((code, options, tuple(name_expressions)))

        def get_function(self, name):
            assert name in compiled[-1][2]
            return FakeFunction()

    class FakeDevice:
        def __init__(self, index):
            self.compute_capability = "90"

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    cuda = types.SimpleNamespace(Device=FakeDevice, runtime=types.SimpleNamespace(getDevice=lambda: 0),
                                 compiler=types.SimpleNamespace(CompileException=RuntimeError))
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(RawModule=FakeModule, cuda=cuda))
    monkeypatch.setattr(cuda_jit, "_torch_stream", lambda index: "torch-stream")
    monkeypatch.setattr(cuda_jit, "_functions", {})
    monkeypatch.setattr(cuda_jit, "_archs", {})
    expression = ssc.step_name_expression(torch.float32, torch.float32, 16, 128, 4)
    args = (cuda_jit.pointer(None), cuda_jit.i32(7))
    for _ in range(2):
        cuda_jit.launch(ssc.SOURCE, expression, (3,), (128,), args, device=torch.device("cuda", 0))
    assert compiled == [(ssc.SOURCE.text, cuda_jit.DEFAULT_OPTIONS, (expression,))]
    assert calls == [((3,), (128,), args, 0, "torch-stream")] * 2
    assert args[0] == 0 and args[0].dtype == np.uint64 and args[1].dtype == np.int32


# --- compile checks -----------------------------------------------------------------------------

DTYPE_PAIRS = [(torch.float32, torch.float32), (torch.float16, torch.float16), (torch.bfloat16, torch.bfloat16),
               (torch.float16, torch.float32), (torch.bfloat16, torch.float32)]


def shipped_instantiations() -> list[str]:
    """One instantiation per family the launchers can produce: every dtype pair, every items /
    unroll / occupancy value, odd and large N, one and many warps (forward and backward); decode:
    vector and scalar paths."""
    exprs = set()
    for in_dtype, bc_dtype in DTYPE_PAIRS:
        exprs.add(ssc.fwd_name_expression(in_dtype, bc_dtype, 16, 4, 16, 1, 8))
        exprs.add(ssc.step_name_expression(in_dtype, bc_dtype, 16, 128, 4))
    for items in ssc.CUDA_SPACE["items_per_thread"]:
        for unroll in ssc.CUDA_SPACE["state_unroll"]:
            if items * unroll <= ssc.MAX_ITEMS_X_UNROLL:
                exprs.add(ssc.fwd_name_expression(torch.bfloat16, torch.bfloat16, 16, 4, items, unroll, 16))
    for n_states, warps, items in ((1, 1, 4), (7, 2, 8), (256, 8, 8)):
        exprs.add(ssc.fwd_name_expression(torch.float16, torch.float32, n_states, warps, items, 1, 8))
    # rows that are not 16-byte aligned: shifted runs of 8, 16 and 32 bytes, and 8-byte runs by element
    for in_dtype, bc_dtype in DTYPE_PAIRS:
        for items in (4, 8, 16):
            exprs.add(ssc.fwd_name_expression(in_dtype, bc_dtype, 16, 4, items, 1, 8, False))
    exprs.add(ssc.fwd_name_expression(torch.bfloat16, torch.bfloat16, 16, 4, 8, 2, 12, False))   # the default there
    for n_states, threads, spl in ((256, 512, 8), (5, 64, 2), (1, 32, 1), (64, 256, 16)):
        exprs.add(ssc.step_name_expression(torch.bfloat16, torch.float32, n_states, threads, spl))
    for in_dtype in {in_dtype for in_dtype, _ in DTYPE_PAIRS}:
        for steps in ssc.CUDA_SPACE["steps"]:
            for softplus in (False, True):
                exprs.add(ssc.fwd_channel_name_expression(in_dtype, 16, 1, 128, 64, 0, 8, steps, softplus))
                # rows that are not 16-byte aligned: shifted vector loads, stores in runs of 1 and 2 lanes
                exprs.add(ssc.fwd_channel_name_expression(in_dtype, 16, 1, 128, 64, 0, 8, steps, softplus, False))
                exprs.add(ssc.fwd_channel_name_expression(in_dtype, 16, 2, 128, 64, 0, 8, steps, softplus, False))
    for n_states, split, threads, chunk, poly, occupancy, steps in (
            (16, 2, 128, 32, 2, 16, 16), (64, 4, 64, 32, 16, 8, 32), (7, 1, 32, 8, 0, 8, 8), (256, 8, 256, 8, 1, 8, 8),
            (2, 1, 32, 8, 0, 8, 8), (16, 2, 128, 128, 0, 8, 16), (32, 32, 64, 64, 0, 16, 32)):
        exprs.add(ssc.fwd_channel_name_expression(torch.bfloat16, n_states, split, threads, chunk, poly, occupancy,
                                                  steps))
    for in_dtype, bc_dtype in DTYPE_PAIRS:
        exprs.add(ssc.bwd_name_expression(in_dtype, bc_dtype, 16, 4, 8, 8))
    for items in ssc.CUDA_BWD_SPACE["items_per_thread"]:
        for occupancy in ssc.CUDA_BWD_SPACE["occupancy"]:
            exprs.add(ssc.bwd_name_expression(torch.bfloat16, torch.bfloat16, 16, 4, items, occupancy))
    for n_states, warps, items in ((1, 1, 4), (7, 2, 8), (256, 4, 8)):
        exprs.add(ssc.bwd_name_expression(torch.float16, torch.float32, n_states, warps, items, 8))
    # Channel-layout backward: every dtype, the default, every (split, steps) that fits at N = 16,
    # both occupancies, odd / tiny / large N.
    for in_dtype, _ in DTYPE_PAIRS[:3]:
        exprs.add(ssc.bwd_channel_name_expression(in_dtype, 16, 4, 128, 8, 16))
    for split in ssc.CUDA_BWD_CHANNEL_SPACE["split"]:
        for steps in ssc.CUDA_BWD_CHANNEL_SPACE["steps"]:
            for occupancy in ssc.CUDA_BWD_CHANNEL_SPACE["occupancy"]:
                config = {"layout": "channel", "threads": 128, "split": split, "steps": steps, "occupancy": occupancy}
                if ssc.cuda_check_config(config, TARGET, "bwd") is None:
                    exprs.add(ssc.bwd_channel_name_expression(torch.bfloat16, 16, split, 128, steps, occupancy))
    for threads, split, steps, occupancy in ((64, 4, 8, 16), (64, 2, 8, 8), (64, 4, 4, 16)):
        exprs.add(ssc.bwd_channel_name_expression(torch.bfloat16, 16, split, threads, steps, occupancy))
    for n_states in (1, 5, 32, 64):
        config = ssc.bwd_channel_default_config({**TARGET, "N": n_states})
        exprs.add(ssc.bwd_channel_name_expression(torch.float16, n_states, config["split"], config["threads"],
                                                  config["steps"], config["occupancy"]))
    return sorted(exprs)


@pytest.mark.skipif(cuda_jit.nvcc_path() is None,
                    reason="nvcc is not installed, so the CUDA source cannot be compile-checked")
def test_nvcc_compiles_every_instantiation_family():
    report = cuda_jit.nvcc_check(ssc.SOURCE, shipped_instantiations(), arch="sm_90")
    assert report.count("Compiling entry function") == len(shipped_instantiations())


@pytest.mark.skipif(not cuda_jit.nvrtc_available(), reason="libnvrtc is not installed (pip install nvidia-cuda-nvrtc)")
def test_nvrtc_compiles_every_instantiation_family():
    exprs = shipped_instantiations()
    lowered = cuda_jit.nvrtc_check(ssc.SOURCE, exprs, arch="sm_90")
    assert set(lowered) == set(exprs) and all(name.startswith("_Z") for name in lowered.values())


# --- CPU emulation of the kernels ----------------------------------------------------------------

EMULATION_HEADER = r"""
// Just enough CUDA to run the kernels on the CPU: each CUDA thread is a std::thread; blocks run one
// after another; a warp's shuffles exchange values through a per-warp barrier (so a shuffle that
// not all 32 lanes reach deadlocks here, as it is undefined on the GPU). __shared__ becomes a static
// local, shared by the block's threads. Full-warp masks only.
#include <math.h>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
inline float __fdividef(float a, float b) { return a / b; }

struct dim3 { unsigned x = 0, y = 0, z = 0; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline bool kg_broken = false;   // a barrier timed out: a divergent shuffle or a deadlock

class KgBarrier {
  public:
    explicit KgBarrier(int count) : count_(count) {}
    void wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        if (kg_broken) return;
        const unsigned long generation = generation_;
        if (++waiting_ == count_) { waiting_ = 0; ++generation_; cv_.notify_all(); return; }
        if (!cv_.wait_for(lock, std::chrono::seconds(30), [&] { return generation_ != generation || kg_broken; })) {
            kg_broken = true;
            cv_.notify_all();
        }
    }
  private:
    std::mutex mutex_;
    std::condition_variable cv_;
    int count_, waiting_ = 0;
    unsigned long generation_ = 0;
};

struct KgWarp {
    KgBarrier barrier{32};
    unsigned long long slots[32];
};
inline std::mutex kg_atomic_mutex;
inline float atomicAdd(float* address, float value) {
    std::lock_guard<std::mutex> lock(kg_atomic_mutex);
    const float old = *address;
    *address = old + value;
    return old;
}
inline thread_local KgWarp* kg_warp = nullptr;
inline thread_local int kg_lane = 0;
inline thread_local KgBarrier* kg_block_barrier = nullptr;

inline void kg_check_mask(unsigned mask) { if (mask != 0xffffffffu) kg_broken = true; }

template <class T> T kg_exchange(T value, int source) {
    unsigned long long bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    kg_warp->slots[kg_lane] = bits;
    kg_warp->barrier.wait();
    T result;
    std::memcpy(&result, &kg_warp->slots[source], sizeof(T));
    kg_warp->barrier.wait();
    return result;
}
template <class T> T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    kg_check_mask(mask);
    return kg_exchange(v, (kg_lane & ~(width - 1)) + (src & (width - 1)));
}
template <class T> T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    kg_check_mask(mask);
    return kg_exchange(v, (kg_lane % width) >= (int)delta ? kg_lane - (int)delta : kg_lane);
}
template <class T> T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    kg_check_mask(mask);
    return kg_exchange(v, (kg_lane % width) + (int)delta < width ? kg_lane + (int)delta : kg_lane);
}
template <class T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    kg_check_mask(mask);
    const int other = kg_lane ^ lane_mask;
    return kg_exchange(v, (other & ~(width - 1)) == (kg_lane & ~(width - 1)) ? other : kg_lane);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) { kg_check_mask(mask); kg_warp->barrier.wait(); }
inline void __syncthreads() { kg_block_barrier->wait(); }

template <typename... Args, std::size_t... I>
void kg_invoke(void (*kernel)(Args...), void** args, std::index_sequence<I...>) {
    kernel(*reinterpret_cast<typename std::remove_reference<Args>::type*>(args[I])...);
}

template <typename... Args>
int kg_emulate(void (*kernel)(Args...), unsigned grid, unsigned block, void** args) {
    if (block % 32) return 2;
    kg_broken = false;
    gridDim.x = grid; gridDim.y = gridDim.z = 1;
    blockDim.x = block; blockDim.y = blockDim.z = 1;
    for (unsigned b = 0; b < grid && !kg_broken; ++b) {
        std::vector<std::unique_ptr<KgWarp>> warps;
        for (unsigned w = 0; w < block / 32; ++w) warps.emplace_back(new KgWarp());
        KgBarrier block_barrier((int)block);
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < block; ++t) {
            threads.emplace_back([&, t] {
                threadIdx.x = t; threadIdx.y = threadIdx.z = 0;
                blockIdx.x = b; blockIdx.y = blockIdx.z = 0;
                kg_warp = warps[t / 32].get();
                kg_lane = (int)(t % 32);
                kg_block_barrier = &block_barrier;
                kg_invoke(kernel, args, std::index_sequence_for<Args...>{});
            });
        }
        for (auto& thread : threads) thread.join();
    }
    return kg_broken ? 1 : 0;
}
"""


def _emulator_source(expressions: list[str]) -> str:
    lines = [EMULATION_HEADER, f'#include "{ssc.SOURCE.path.resolve()}"']
    for i, expr in enumerate(expressions):
        lines.append(f'extern "C" int kg_launch_{i}(unsigned grid, unsigned block, void** args) '
                     f'{{ return kg_emulate(&{expr}, grid, block, args); }}')
    return "\n".join(lines) + "\n"


class Emulator:
    """Runs the launchers' kernels on CPU tensors: stands in for cuda_jit.launch."""

    def __init__(self, library: ctypes.CDLL, expressions: list[str]):
        self.library = library
        self.index = {expr: i for i, expr in enumerate(expressions)}
        self.launched: list[str] = []

    def launch(self, source, name_expression, grid, block, args, device, shared_mem=0, options=()):
        assert source is ssc.SOURCE
        assert len(grid) == 1 and len(block) == 1 and shared_mem == 0
        if name_expression not in self.index:
            raise KeyError(f"{name_expression} is not in the emulator build; add it to EMU_FWD or EMU_STEP")
        holders = []
        for arg in args:
            if isinstance(arg, np.uint64):
                holders.append(ctypes.c_uint64(int(arg)))
            elif isinstance(arg, np.int32):
                holders.append(ctypes.c_int32(int(arg)))
            elif isinstance(arg, np.float32):
                holders.append(ctypes.c_float(float(arg)))
            else:
                raise TypeError(f"unexpected kernel argument {arg!r} ({type(arg).__name__})")
        pointers = (ctypes.c_void_p * len(holders))(*[ctypes.addressof(h) for h in holders])
        function = getattr(self.library, f"kg_launch_{self.index[name_expression]}")
        function.restype = ctypes.c_int
        status = function(ctypes.c_uint(grid[0]), ctypes.c_uint(block[0]), pointers)
        assert status == 0, f"emulated {name_expression} failed (status {status}): divergent shuffle or deadlock"
        self.launched.append(name_expression)


# (threads, items, unroll, occupancy) and dtypes that the emulated tests below launch.
EMU_FWD = [
    (torch.float32, torch.float32, 4, fwd_config(64, 4)),
    (torch.float32, torch.float32, 4, fwd_config(32, 8, unroll=2)),
    (torch.float16, torch.float32, 3, fwd_config(64, 8)),
    (torch.bfloat16, torch.bfloat16, 4, fwd_config(32, 16, occupancy=16)),
    (torch.float32, torch.float32, 16, fwd_config(64, 4)),
    (torch.float32, torch.float32, 3, fwd_config(64, 4)),
    (torch.bfloat16, torch.bfloat16, 4, fwd_config(64, 4)),
]
# Channel layout: (u dtype, B/C dtype, N, config).
EMU_FWD_CHANNEL = [
    (torch.float32, torch.float32, 4, {"layout": "channel", "threads": 32, "split": 2, "chunk": 32, "poly": 1,
                                       "occupancy": 8, "steps": 16}),
    (torch.bfloat16, torch.bfloat16, 8, {"layout": "channel", "threads": 32, "split": 1, "chunk": 64, "poly": 0,
                                         "occupancy": 8, "steps": 32}),
    (torch.float16, torch.float32, 5, {"layout": "channel", "threads": 64, "split": 1, "chunk": 16, "poly": 5,
                                       "occupancy": 16, "steps": 16}),
    (torch.float32, torch.float32, 8, {"layout": "channel", "threads": 32, "split": 4, "chunk": 8, "poly": 0,
                                       "occupancy": 8, "steps": 8}),
    # The H100 default: two threads per channel, 16-step sub-chunks, 16-byte bf16 stores of 8 steps.
    (torch.bfloat16, torch.bfloat16, 16, {"layout": "channel", "threads": 64, "split": 2, "chunk": 64, "poly": 0,
                                          "occupancy": 8, "steps": 16}),
    # A 128-step chunk past the packed rows' end (L 150 packs to 192 steps): the copy zero-fills.
    (torch.float16, torch.float16, 16, {"layout": "channel", "threads": 32, "split": 2, "chunk": 128, "poly": 0,
                                        "occupancy": 8, "steps": 32}),
    # 16 threads a channel over 8 steps: the steps do not split among them (all sum every step).
    (torch.float32, torch.float32, 16, {"layout": "channel", "threads": 64, "split": 16, "chunk": 16, "poly": 0,
                                        "occupancy": 8, "steps": 8}),
    # 4 threads a channel over 32 steps, 8 each after the transpose-reduce; L ragged in the last sub-chunk.
    (torch.bfloat16, torch.bfloat16, 8, {"layout": "channel", "threads": 32, "split": 4, "chunk": 32, "poly": 1,
                                         "occupancy": 8, "steps": 32}),
    # 4 steps (8 bytes) a lane: on rows that are not aligned the stores stay element by element.
    (torch.bfloat16, torch.bfloat16, 16, {"layout": "channel", "threads": 64, "split": 4, "chunk": 64, "poly": 0,
                                          "occupancy": 8, "steps": 16}),
]
EMU_BWD = [
    (torch.float32, torch.float32, 3, bwd_config(64, 4)),
    (torch.float16, torch.float16, 2, bwd_config(32, 8)),
]
# Channel-layout backward: (u dtype, N, config).
EMU_BWD_CHANNEL = [
    (torch.float32, 4, {"layout": "channel", "threads": 64, "split": 2, "steps": 8, "occupancy": 8,
                        "block_sum": "partials"}),
    (torch.float32, 5, {"layout": "channel", "threads": 32, "split": 1, "steps": 4, "occupancy": 16}),
    (torch.float16, 8, {"layout": "channel", "threads": 32, "split": 4, "steps": 16, "occupancy": 8,
                        "block_sum": "atomic"}),
    (torch.bfloat16, 16, {"layout": "channel", "threads": 64, "split": 8, "steps": 8, "occupancy": 16}),
    (torch.float32, 16, {"layout": "channel", "threads": 32, "split": 8, "steps": 4, "occupancy": 8}),
    (torch.bfloat16, 16, ssc.bwd_channel_default_config(TARGET)),      # the default at the target
]
EMU_STEP = [
    (torch.float32, torch.float32, 16, step_config(64, 4)),
    (torch.float32, torch.float32, 5, step_config(64, 2)),
    (torch.bfloat16, torch.float32, 40, step_config(32, 1)),
    (torch.float16, torch.float16, 4, step_config(32, 8)),
]


def _fwd_expr(in_dtype, bc_dtype, n_states, config, aligned=True):
    return ssc.fwd_name_expression(in_dtype, bc_dtype, n_states, config["threads"] // 32,
                                   config["items_per_thread"], config["state_unroll"], config["occupancy"], aligned)


def _channel_expr(in_dtype, bc_dtype, n_states, config, softplus=True, aligned=True):
    return ssc.fwd_channel_name_expression(in_dtype, n_states, config["split"], config["threads"],
                                           config["chunk"], config["poly"], config["occupancy"], config["steps"],
                                           softplus, aligned)


def _bwd_expr(in_dtype, bc_dtype, n_states, config):
    return ssc.bwd_name_expression(in_dtype, bc_dtype, n_states, config["threads"] // 32,
                                   config["items_per_thread"], config["occupancy"])


def _bwd_channel_expr(in_dtype, n_states, config):
    return ssc.bwd_channel_name_expression(in_dtype, n_states, config["split"], config["threads"], config["steps"],
                                           config["occupancy"])


def _step_expr(in_dtype, bc_dtype, n_states, config):
    return ssc.step_name_expression(in_dtype, bc_dtype, n_states, config["threads"], config["items_per_thread"])


@pytest.fixture(scope="module")
def emulator_library(tmp_path_factory):
    if torch.cuda.is_available():
        # The emulation stands in for the GPU on CPU machines; its inputs go through Triton helpers
        # (pack_bc, the Triton backward) that take CPU tensors only under the interpreter, which is
        # off where there is a GPU. There the gpu tests run the real kernels.
        pytest.skip("a GPU is present: the gpu tests run the real CUDA kernels")
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("g++ is not installed, so the CUDA kernels cannot be emulated on the CPU")
    expressions = sorted({_fwd_expr(*case, aligned) for case in EMU_FWD for aligned in (False, True)}
                         | {_step_expr(*case) for case in EMU_STEP}
                         | {_channel_expr(*case, softplus, aligned) for case in EMU_FWD_CHANNEL
                            for softplus in (False, True) for aligned in (False, True)}
                         | {_bwd_expr(*case) for case in EMU_BWD}
                         | {_bwd_channel_expr(*case) for case in EMU_BWD_CHANNEL})
    folder = tmp_path_factory.mktemp("cuda_emulation")
    unit = folder / "emulated.cpp"
    unit.write_text(_emulator_source(expressions))
    library_path = folder / "emulated.so"
    command = [compiler, "-std=c++17", "-O1", "-shared", "-fPIC", "-pthread", "-DKERNELGEN_HOST_EMULATION",
               "-w", "-o", str(library_path), str(unit)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"emulator build failed:\n{done.stderr[-4000:]}"
    return ctypes.CDLL(str(library_path)), expressions


@pytest.fixture
def emulator(emulator_library, monkeypatch):
    emulator = Emulator(*emulator_library)
    monkeypatch.setattr(cuda_jit, "launch", emulator.launch)
    return emulator


def _check_fwd(inputs, softplus, config, tol, last=True):
    out, last_state = run_fwd(config, inputs, softplus, last)
    ref_y, ref_h = ref_scan(**inputs, delta_softplus=softplus)
    assert out.dtype == inputs["u"].dtype
    assert_close("y", out, ref_y, tol)
    if last:
        assert_close("last_state", last_state, ref_h, tol)


def test_emulated_fwd_fp32_all_options_ragged_groups(emulator):
    # dim 5 with 2 channels a block: the last block has an idle warp. L = 300 with 4 items a lane:
    # chunks of 128, the third one partial, and lanes wholly past L.
    inputs = make_scan_inputs(2, 5, 300, 4, 5, torch.float32)
    _check_fwd(inputs, True, fwd_config(64, 4), 1e-4)
    grouped = make_scan_inputs(1, 6, 77, 4, 2, torch.float32, seed=1)
    _check_fwd(grouped, False, fwd_config(64, 4), 1e-4)
    assert emulator.launched == [_fwd_expr(*EMU_FWD[0]), _fwd_expr(*EMU_FWD[0], False)]   # L 77: not aligned


def test_emulated_fwd_unrolled_states_no_options(emulator):
    inputs = make_scan_inputs(1, 3, 256, 4, 1, torch.float32, D=False, z=False, bias=False, init=False, seed=2)
    _check_fwd(inputs, False, fwd_config(32, 8, unroll=2), 1e-4)


def test_emulated_fwd_fp16_with_fp32_bc(emulator):
    # Three chunks of 256, the last ragged: vector loads where a lane's 8 items are all in range.
    inputs = make_scan_inputs(2, 2, 600, 3, 2, torch.float16, torch.float32, seed=3)
    _check_fwd(inputs, True, fwd_config(64, 8), TOL[torch.float16])


def test_emulated_fwd_bf16_vector_path(emulator):
    # L a multiple of 8: rows 16-byte aligned, so the vector loads and stores run; no last state.
    inputs = make_scan_inputs(1, 2, 512, 4, 1, torch.bfloat16, seed=4)
    _check_fwd(inputs, False, fwd_config(32, 16, occupancy=16), TOL[torch.bfloat16], last=False)


@pytest.mark.parametrize("case", range(len(EMU_FWD_CHANNEL)))
def test_emulated_fwd_channel_layout(emulator, case):
    # Ragged L (partial chunks, partial 8-step sub-chunks, scalar loads when L % 8), groups whose
    # channel count leaves idle threads in the last block, every option on or off by case.
    in_dtype, bc_dtype, n_states, config = EMU_FWD_CHANNEL[case]
    length = (150, 512, 77, 40, 520, 150, 45, 101, 133)[case]
    dim, groups = (6, 1, 10, 4, 40, 16, 3, 6, 6)[case], (2, 1, 2, 1, 2, 1, 1, 2, 2)[case]
    options = case != 1
    inputs = make_scan_inputs(2, dim, length, n_states, groups, in_dtype, bc_dtype, D=options, z=options,
                              bias=options, init=case != 3, seed=30 + case)
    _check_fwd(inputs, case % 2 == 0, config, TOL[in_dtype], last=case != 1)
    aligned = length * inputs["u"].element_size() % 16 == 0
    assert emulator.launched == [_channel_expr(*EMU_FWD_CHANNEL[case], case % 2 == 0, aligned)]


@pytest.mark.parametrize("case, length, offsets", [
    (4, 133, (1, 3, 6, 2)),     # the H100 default, 2-byte rows: 8 whole sub-chunks and a ragged one
    (4, 128, (5, 0, 7, 3)),     # L a multiple of the sub-chunk: the last run's tail flushed after the loop
    (5, 70, (0, 0, 0, 0)),      # fp16, 2 lanes of 16 steps: rows 4 bytes off alignment by turns
    (7, 96, (2, 4, 6, 1)),      # 4 lanes a channel: the run ends handed over by a chain of shuffles
    (0, 37, (1, 2, 3, 0)),      # fp32: whole-word offsets, no shift within a word
    (6, 64, (3, 1, 2, 2)),      # fp32, 16 lanes that all hold every step: one lane stores runs of 8
    (8, 133, (1, 0, 0, 5)),     # element stores (4 steps a lane), shifted loads
])
def test_emulated_fwd_channel_rows_not_aligned(emulator, case, length, offsets):
    """Rows that do not start on 16-byte boundaries (odd L, views at an offset into their storage)
    are read and written as whole aligned vectors shifted in registers: y exact against float64,
    and not one element written outside `out` (NaN sentinels on both sides)."""
    _check_rows_not_aligned(*EMU_FWD_CHANNEL[case], length, offsets, "cpu")
    assert emulator.launched == [_channel_expr(*EMU_FWD_CHANNEL[case], True, False)]


@pytest.mark.parametrize("case, length, offsets", [
    (3, 1100, (1, 3, 6, 2)),    # bf16, 16 steps a lane: two whole 512-step chunks and a ragged one
    (3, 1024, (5, 0, 7, 3)),    # L a multiple of the chunk: lane 31's tail flushed after the loop
    (1, 601, (0, 0, 0, 0)),     # fp32, 8 steps a lane, unroll 2: L % 4 != 0
    (2, 300, (2, 4, 6, 1)),     # fp16 u with fp32 B/C, whose rows are 16-byte runs of 4 steps' pairs
    (0, 261, (1, 2, 3, 0)),     # fp32, 4 steps a lane: one vector a run
    (6, 259, (3, 1, 0, 5)),     # bf16, 4 steps a lane: 8-byte runs, read and written by element
    (3, 1030, (2, 5, 1, 7)),    # a last chunk of 6 steps: no whole run in it
    (3, 1525, (7, 2, 4, 1)),    # a last chunk of 31 whole runs and a partial one
])
def test_emulated_fwd_warp_rows_not_aligned(emulator, case, length, offsets):
    """The warp layout on rows that do not start on 16-byte boundaries: each lane's run read as the
    aligned vectors covering it (the offset is one per warp) and written in aligned vectors."""
    in_dtype, bc_dtype, n_states, config = EMU_FWD[case]
    _check_rows_not_aligned(in_dtype, bc_dtype, n_states, config, length, offsets, "cpu")
    assert emulator.launched == [_fwd_expr(*EMU_FWD[case], False)]


def _offset_copy(tensor, offset):
    """A contiguous copy of `tensor` starting `offset` elements into a larger buffer: its rows are
    16-byte aligned only where offset + row * L is a multiple of the vector."""
    if tensor is None:
        return None
    buffer = torch.empty(tensor.numel() + offset, dtype=tensor.dtype, device=tensor.device)
    view = buffer[offset:].view(tensor.shape)
    view.copy_(tensor)
    return view


def _check_rows_not_aligned(in_dtype, bc_dtype, n_states, config, length, offsets, device):
    """u, delta, z and out at `offsets` elements into their buffers: y against float64, and NaN
    sentinels around out untouched."""
    inputs = make_scan_inputs(2, 6, length, n_states, 2, in_dtype, bc_dtype, device=device, seed=60 + length)
    inputs.update({name: _offset_copy(inputs[name], k) for name, k in zip(("u", "delta", "z"), offsets)})
    pad, size = 8, inputs["u"].numel()
    sentinel = torch.full((size + offsets[3] + 2 * pad,), float("nan"), dtype=in_dtype, device=device)
    out = sentinel[pad + offsets[3]:pad + offsets[3] + size].view(inputs["u"].shape)
    assert not ssc.rows_aligned(length, inputs["u"], inputs["delta"], inputs["z"], out)
    ssc.selective_scan_fwd_cuda(config, inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"],
                                inputs["D"], inputs["z"], inputs["delta_bias"], True, inputs["initial_state"],
                                out, None)
    ref_y, _ = ref_scan(**inputs, delta_softplus=True)
    assert_close("y", out, ref_y, TOL[in_dtype])
    outside = torch.cat([sentinel[:pad + offsets[3]], sentinel[pad + offsets[3] + size:]])
    assert torch.isnan(outside).all(), "the kernel wrote outside out"


@pytest.mark.parametrize("length", [0, 1, 9])
def test_emulated_fwd_channel_short_sequences(emulator, length):
    # No step (the state passes through), one step, and one whole sub-chunk plus one step.
    in_dtype, _, n_states, config = EMU_FWD_CHANNEL[0]
    inputs = make_scan_inputs(2, 6, length, n_states, 2, in_dtype, seed=46 + length)
    _check_fwd(inputs, True, config, TOL[in_dtype])


def test_emulated_fwd_channel_reads_packed_bc_broadcast_over_batch(emulator):
    # B, C the same for every batch row, packed once and broadcast (stride-0 batch): the kernel
    # reads row 0 for all of them; a packed BC of the wrong shape is refused.
    in_dtype, _, n_states, config = EMU_FWD_CHANNEL[0]
    inputs = make_scan_inputs(3, 6, 150, n_states, 2, in_dtype, seed=45)
    for name in ("B", "C"):
        inputs[name] = inputs[name][:1].expand(3, *inputs[name].shape[1:])
    packed = ss.pack_bc(inputs["B"][:1], inputs["C"][:1], ssc.packed_states(n_states))
    out = torch.full_like(inputs["u"], float("nan"))
    args = (config, inputs["u"], inputs["delta"], inputs["A"], inputs["B"].contiguous(), inputs["C"].contiguous(),
            inputs["D"], inputs["z"], inputs["delta_bias"], True, inputs["initial_state"], out, None)
    ssc.selective_scan_fwd_cuda(*args, BC=packed.expand(3, *packed.shape[1:]))
    ref_y, _ = ref_scan(**inputs, delta_softplus=True)
    assert_close("y", out, ref_y, TOL[in_dtype])
    with pytest.raises(ValueError, match="pack_bc"):
        ssc.selective_scan_fwd_cuda(*args, BC=packed)   # one batch row, not broadcast


@pytest.mark.parametrize("config, n_states, dtype", [
    (EMU_FWD_CHANNEL[0][3], 4, torch.float32), (EMU_FWD[0][3], 4, torch.float32), (EMU_FWD[1][3], 4, torch.float32),
    (EMU_FWD_CHANNEL[4][3], 16, torch.bfloat16)], ids=["channel", "warp-items4", "warp-items8", "channel-vectors"])
def test_emulated_fwd_writes_the_backward_checkpoints(emulator, config, n_states, dtype):
    # Both layouts (the warp layout: from the lanes whose first step is a multiple of 64), L ragged;
    # the channel layout's 8 states a thread go out as 16-byte vectors.
    inputs = make_scan_inputs(1, 3, 150, n_states, 1, dtype, seed=40)
    u = inputs["u"]
    steps = ssc.CHECKPOINT_STEPS
    checkpoints = torch.full((1, 3, -(-150 // steps), n_states), float("nan"))
    out = torch.empty_like(u)
    ssc.selective_scan_fwd_cuda(config, u, inputs["delta"], inputs["A"], inputs["B"], inputs["C"], inputs["D"],
                                inputs["z"], inputs["delta_bias"], True, inputs["initial_state"], out, None,
                                checkpoints=checkpoints)
    for k in range(checkpoints.shape[2]):
        if k == 0:
            want = inputs["initial_state"].double()
        else:
            prefix = {n: (v[..., :k * steps].contiguous() if n in ("u", "delta", "z", "B", "C") else v)
                      for n, v in inputs.items()}
            want = ref_scan(**prefix, delta_softplus=True)[1]
        assert_close(f"checkpoint {k}", checkpoints[:, :, k], want, 1e-4)
    with pytest.raises(ValueError, match="checkpoints must be"):
        ssc.selective_scan_fwd_cuda(config, u, inputs["delta"], inputs["A"], inputs["B"], inputs["C"], None, None,
                                    None, True, None, out, None, checkpoints=checkpoints[:, :, :1])


def test_emulated_fwd_empty_sequence_passes_the_state(emulator):
    inputs = make_scan_inputs(2, 3, 0, 4, 1, torch.float32, seed=5)
    out, last_state = run_fwd(fwd_config(64, 4), inputs, False)
    assert out.shape == (2, 3, 0)
    assert torch.equal(last_state, inputs["initial_state"])


def test_emulated_chunked_prefill_equals_one_call(emulator):
    inputs = make_scan_inputs(1, 4, 200, 4, 1, torch.float32, seed=6)
    config = fwd_config(64, 4)
    whole, whole_state = run_fwd(config, inputs, True)
    first = {k: (v[..., :90].contiguous() if k in ("u", "delta", "z", "B", "C") else v) for k, v in inputs.items()}
    y1, h1 = run_fwd(config, first, True)
    second = {k: (v[..., 90:].contiguous() if k in ("u", "delta", "z", "B", "C") else v) for k, v in inputs.items()}
    second["initial_state"] = h1
    y2, h2 = run_fwd(config, second, True)
    assert_close("y", torch.cat([y1, y2], -1), whole, 1e-5)
    assert_close("last_state", h2, whole_state, 1e-5)


@pytest.mark.parametrize("case", range(len(EMU_STEP)))
def test_emulated_step(emulator, case):
    in_dtype, bc_dtype, n_states, config = EMU_STEP[case]
    # batch * dim = 15 channels: the last block has idle lanes that still join the reduction.
    inputs = make_step_inputs(3, 5, n_states, 1 if case % 2 else 5, in_dtype, bc_dtype,
                              options=case != 3, seed=10 + case)
    out, state = run_step(config, inputs, softplus=case % 2 == 0)
    ref_y, ref_h = ref_step(**inputs, dt_softplus=case % 2 == 0)
    assert_close("y", out, ref_y, TOL[in_dtype])
    assert_close("state", state, ref_h, 1e-5)
    assert emulator.launched == [_step_expr(*EMU_STEP[case])]


def test_emulated_step_equals_last_step_of_the_scan(emulator):
    scan_inputs = make_scan_inputs(3, 5, 9, 16, 1, torch.float32, seed=20)
    y, h = run_fwd(fwd_config(64, 4), scan_inputs, True)
    seq = ("u", "delta", "z", "B", "C")
    before = {k: (v[..., :-1].contiguous() if k in seq else v) for k, v in scan_inputs.items()}
    _, h_before = run_fwd(fwd_config(64, 4), before, True)
    state = h_before.clone()
    out = torch.empty(3, 5)
    ssc.selective_state_update_cuda(step_config(64, 4), state, scan_inputs["u"][..., -1].contiguous(),
                                    scan_inputs["delta"][..., -1].contiguous(), scan_inputs["A"],
                                    scan_inputs["B"][..., -1].contiguous(), scan_inputs["C"][..., -1].contiguous(),
                                    scan_inputs["D"], scan_inputs["z"][..., -1].contiguous(),
                                    scan_inputs["delta_bias"], True, out)
    assert_close("y", out, y[..., -1], 1e-5)
    assert_close("state", state, h, 1e-5)


def test_emulated_bwd_fp32_all_options(emulator):
    # 2 channels a block summing dB/dC of their group; L = 150: two chunks of 128, the second ragged.
    inputs = make_scan_inputs(2, 4, 150, 3, 2, torch.float32, seed=30)
    check_bwd(bwd_config(64, 4), inputs, True, 1e-4, seed=31)
    assert emulator.launched == [_bwd_expr(*EMU_BWD[0])]


def test_emulated_bwd_reuses_forward_checkpoints(emulator):
    inputs = make_scan_inputs(1, 2, 300, 3, 1, torch.float32, z=False, seed=32)
    config = fwd_config(64, 4)
    chunk_states = torch.full((1, 2, ssc.chunk_count(config, 300), 3), float("nan"))
    out = torch.empty_like(inputs["u"])
    ssc.selective_scan_fwd_cuda(config, inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"],
                                inputs["D"], None, inputs["delta_bias"], False, inputs["initial_state"], out, None,
                                chunk_states=chunk_states)
    assert torch.equal(chunk_states[:, :, 0], inputs["initial_state"])
    check_bwd(bwd_config(64, 4), inputs, False, 1e-4, chunk_states=chunk_states, seed=33)
    assert emulator.launched[-1] == _bwd_expr(*EMU_BWD[0])


def test_emulated_bwd_fp16_plain(emulator):
    # One warp a block, fp16 gradients (dB, dC accumulate in fp32 and are copied out), no options.
    inputs = make_scan_inputs(2, 3, 64, 2, 1, torch.float16, D=False, z=False, bias=False, init=False, seed=34)
    check_bwd(bwd_config(32, 8), inputs, False, 1e-2, with_dlast=False, seed=35)


def test_emulated_bwd_empty_sequence(emulator):
    inputs = make_scan_inputs(1, 2, 0, 3, 1, torch.float32, seed=36)
    dlast = torch.randn(1, 2, 3)
    grads = run_bwd(bwd_config(64, 4), inputs, True, torch.empty(1, 2, 0), dlast)
    assert torch.equal(grads["initial_state"], dlast)
    assert torch.equal(grads["A"], torch.zeros(2, 3)) and torch.equal(grads["D"], torch.zeros(2))


@pytest.mark.parametrize("case", range(len(EMU_BWD_CHANNEL)))
def test_emulated_bwd_channel_layout(emulator, case):
    # Every gradient against float64 autograd. Ragged L (a partial last segment and group, scalar
    # loads when L % 8), groups whose channels leave idle threads in the last block (their terms
    # must not reach dB/dC), odd N (dB/dC terms padded to a power of two), more split lanes than
    # steps (case 4: half the lanes have no per-step share), dB/dC blocks added atomically (case 2),
    # each option on or off.
    in_dtype, n_states, config = EMU_BWD_CHANNEL[case]
    length, dim, groups = ((150, 6, 2), (77, 3, 1), (200, 10, 1), (64, 4, 1), (100, 5, 1), (136, 40, 1))[case]
    options = case != 1
    inputs = make_scan_inputs(2, dim, length, n_states, groups, in_dtype, D=options, z=case in (0, 2, 4, 5),
                              bias=options, init=case != 3, seed=50 + case)
    # fp32: summation order only (~1e-7 seen); 16-bit: the rounding of du, ddelta, dz, dB, dC (~2e-4
    # fp16, ~2e-3 bf16 seen).
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}[in_dtype]
    check_bwd_channel(config, inputs, case % 2 == 0, tol, with_dlast=case != 1, seed=60 + case)
    assert emulator.launched == [_bwd_channel_expr(*EMU_BWD_CHANNEL[case])]


def test_emulated_bwd_channel_from_the_channel_forward(emulator):
    # The pipeline the op runs in training: the channel forward's checkpoints feed the backward.
    inputs = make_scan_inputs(1, 6, 150, 4, 2, torch.float32, seed=70)
    u = inputs["u"]
    checkpoints = torch.full((1, 6, 3, 4), float("nan"))
    ssc.selective_scan_fwd_cuda(EMU_FWD_CHANNEL[0][3], u, inputs["delta"], inputs["A"], inputs["B"], inputs["C"],
                                inputs["D"], inputs["z"], inputs["delta_bias"], True, inputs["initial_state"],
                                torch.empty_like(u), None, checkpoints=checkpoints)
    gen = torch.Generator().manual_seed(71)
    dout, dlast = torch.randn(u.shape, generator=gen), torch.randn(1, 6, 4, generator=gen)
    got = run_bwd_channel(EMU_BWD_CHANNEL[0][2], inputs, True, dout, dlast, checkpoints)
    want = ref_grads(inputs, True, dout, dlast)
    for name in want:
        assert_close(f"d{name}", got[name], want[name], 1e-4)


def test_emulated_bwd_channel_deterministic_mode_takes_partials(emulator, request, monkeypatch):
    # Atomic block sums are the default (faster); torch.use_deterministic_algorithms makes the
    # launcher write per-block partials instead, so an atomic config gives the partials' bits.
    atomic_flags = []
    launch = cuda_jit.launch

    def spy(source, expression, grid, block, args, **kwargs):
        atomic_flags.append(int(args[-1]))                # the kernel's atomic_dbc argument
        return launch(source, expression, grid, block, args, **kwargs)

    monkeypatch.setattr(cuda_jit, "launch", spy)
    inputs = make_scan_inputs(1, 80, 150, 4, 1, torch.float32, seed=73)     # three blocks of 32 channels
    gen = torch.Generator().manual_seed(74)
    dout, dlast = torch.randn(inputs["u"].shape, generator=gen), torch.randn(1, 80, 4, generator=gen)
    config = {**EMU_BWD_CHANNEL[0][2]}
    config.pop("block_sum")
    assert ssc.bwd_channel_default_config({"batch": 1, "dim": 80, "L": 150, "N": 4})["block_sum"] == "atomic"
    partials = run_bwd_channel({**config, "block_sum": "partials"}, inputs, True, dout, dlast)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    request.addfinalizer(lambda: torch.use_deterministic_algorithms(was_deterministic))
    atomic = run_bwd_channel({**config, "block_sum": "atomic"}, inputs, True, dout, dlast)
    for name in partials:
        assert torch.equal(atomic[name], partials[name]), name
    torch.use_deterministic_algorithms(was_deterministic)
    run_bwd_channel({**config, "block_sum": "atomic"}, inputs, True, dout, dlast)
    assert atomic_flags == [0, 0, 1]


def test_emulated_bwd_channel_empty_sequence(emulator):
    inputs = make_scan_inputs(2, 3, 0, 4, 1, torch.float32, seed=72)
    dlast = torch.randn(2, 3, 4)
    grads = run_bwd_channel(EMU_BWD_CHANNEL[0][2], inputs, True, torch.empty(2, 3, 0), dlast)
    assert torch.equal(grads["initial_state"], dlast)
    assert torch.equal(grads["A"], torch.zeros(3, 4)) and torch.equal(grads["D"], torch.zeros(3))
    assert grads["B"].shape == (2, 1, 4, 0)


def test_emulated_bwd_dispatch_runs_the_channel_layout_or_falls_back(emulator, monkeypatch):
    """selective_scan.bwd with backend "cuda" runs the channel kernel (the op's entry point
    selective_scan_bwd_triton too); a config that cannot run the shape falls back to Triton."""
    from kernelgen.templates import selective_scan as ss
    monkeypatch.setattr(ss, "cuda_unavailable", lambda: None)
    inputs = make_scan_inputs(1, 4, 70, 4, 1, torch.float32, seed=73)
    u = inputs["u"]
    gen = torch.Generator().manual_seed(74)
    dout = torch.randn(u.shape, generator=gen)
    want = ref_grads(inputs, True, dout, None)
    BC = ss.pack_bc(inputs["B"], inputs["C"], ss.padded_states(4))
    assert torch.equal(BC, pack_bc_ref(inputs["B"], inputs["C"]))
    checkpoints = ref_checkpoints(inputs, True)
    shape = {"batch": 1, "dim": 4, "L": 70, "N": 4}
    config = {"backend": "cuda", **EMU_BWD_CHANNEL[0][2]}
    assert ss.BWD.check_config(config, shape) is None
    assert "split" in ss.BWD.check_config({**config, "split": 3}, shape)
    assert "channel layout only" in ss.BWD.check_config({**config, "layout": "warp"}, shape)
    assert ss.BWD.canonical({**config, "block_d": 8, "chunk": 4}) == config
    bare = {k: v for k, v in config.items() if k != "layout"}    # a probe's partial config names no layout
    for entry, run_config, launched in ((ss.selective_scan_bwd, config, 1),
                                        (ss.selective_scan_bwd_triton, bare, 2),
                                        (ss.selective_scan_bwd, {**config, "split": 3}, 2)):
        du, ddelta, dz = torch.empty_like(u), torch.empty_like(u), torch.empty_like(u)
        got = entry(run_config, u, inputs["delta"], inputs["A"], BC, 4, inputs["D"], inputs["z"],
                    inputs["delta_bias"], True, checkpoints, dout, None, du, ddelta, dz, True)
        assert len(emulator.launched) == launched
        dB, dC = ss.unpack_dbc(got["dBC"], 4, 70)
        for name, value in (("u", du), ("delta", ddelta), ("z", dz), ("A", got["dA"]), ("B", dB), ("C", dC),
                            ("D", got["dD"]), ("delta_bias", got["ddelta_bias"]),
                            ("initial_state", got["dinitial_state"])):
            assert_close(f"d{name}", value, want[name], 1e-4)


def test_bwd_channel_config():
    config = ssc.bwd_channel_default_config(TARGET)
    assert config == {"layout": "channel", "threads": 128, "split": 4, "steps": 8, "occupancy": 16,
                      "block_sum": "atomic"}
    assert ssc.cuda_check_config(config, TARGET, "bwd") is None
    assert ssc.cuda_canonical({**config, "items_per_thread": 8, "block_d": 4}, "bwd") == config
    assert ssc.cuda_canonical(ssc.cuda_default_config(TARGET, "bwd"), "bwd") == ssc.cuda_default_config(TARGET, "bwd")
    # the shared memory model matches ptxas (sm_90)
    assert ssc.bwd_channel_shared_bytes(16, 4, 128, 8) == 46080
    assert ssc.bwd_channel_shared_bytes(16, 8, 128, 4) == 35072
    assert "spill" in ssc.cuda_check_config({**config, "split": 1}, TARGET, "bwd")
    assert "split" in ssc.cuda_check_config({**config, "split": 3}, TARGET, "bwd")
    assert "steps" in ssc.cuda_check_config({**config, "steps": 12}, TARGET, "bwd")
    assert "occupancy" in ssc.cuda_check_config({**config, "occupancy": 4}, TARGET, "bwd")
    assert "block_sum" in ssc.cuda_check_config({**config, "block_sum": "tree"}, TARGET, "bwd")
    assert "shared memory" in ssc.cuda_check_config({**config, "split": 2, "steps": 4}, TARGET, "bwd")
    assert "shared memory" in ssc.cuda_check_config(ssc.bwd_channel_default_config({**TARGET, "N": 256}),
                                                    {**TARGET, "N": 256}, "bwd")
    odd = {"batch": 2, "dim": 15, "L": 100, "N": 5, "G": 5}
    small = ssc.bwd_channel_default_config(odd)
    assert small["threads"] == 32 and small["split"] == 1 and ssc.cuda_check_config(small, odd, "bwd") is None
    ok = 0
    import itertools
    for values in itertools.product(*ssc.CUDA_BWD_CHANNEL_SPACE.values()):
        reason = ssc.cuda_check_config(dict(zip(ssc.CUDA_BWD_CHANNEL_SPACE, values)), TARGET, "bwd")
        assert reason is None or isinstance(reason, str)
        ok += reason is None
    assert ok > 0


def test_launcher_rejects_non_contiguous(emulator):
    inputs = make_scan_inputs(1, 2, 16, 4, 1, torch.float32)
    inputs["u"] = inputs["u"].transpose(1, 2).contiguous().transpose(1, 2)
    with pytest.raises(ValueError, match="u must be contiguous"):
        run_fwd(fwd_config(64, 4), inputs, False)


# --- on the GPU, through CuPy --------------------------------------------------------------------

gpu = pytest.mark.gpu


def _needs_cupy():
    reason = ssc.cuda_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@gpu
@pytest.mark.parametrize("dtype,bc_dtype", DTYPE_PAIRS)
@pytest.mark.parametrize("length", [1, 77, 1000, 2048])
def test_gpu_fwd_dtypes_ragged(dtype, bc_dtype, length):
    _needs_cupy()
    inputs = make_scan_inputs(2, 40, length, 16, 2, dtype, bc_dtype, device="cuda", seed=length)
    _check_fwd(inputs, True, ssc.cuda_default_config({"batch": 2, "dim": 40, "L": length, "N": 16, "G": 2}),
               TOL[dtype])


@gpu
@pytest.mark.parametrize("options", [dict(D=False, z=False, bias=False, init=False),
                                     dict(D=True, z=False, bias=False, init=False),
                                     dict(D=False, z=True, bias=True, init=False),
                                     dict(D=True, z=True, bias=True, init=True)])
@pytest.mark.parametrize("softplus", [False, True])
def test_gpu_fwd_options(options, softplus):
    _needs_cupy()
    inputs = make_scan_inputs(2, 24, 333, 8, 3, torch.float32, device="cuda", seed=7, **options)
    _check_fwd(inputs, softplus, fwd_config(128, 8), 1e-4)


@gpu
def test_gpu_fwd_whole_space():
    """Every valid CUDA_SPACE config on a ragged shape with all options; odd and large N."""
    _needs_cupy()
    import itertools
    shape = {"batch": 2, "dim": 20, "L": 301, "N": 16, "G": 2}
    inputs = make_scan_inputs(2, 20, 301, 16, 2, torch.bfloat16, device="cuda", seed=8)
    keys = list(ssc._FWD_LAYOUT_KEYS["warp"])[1:]
    for values in itertools.product(*(ssc.CUDA_SPACE[k] for k in keys)):
        config = {"layout": "warp", **dict(zip(keys, values))}
        if ssc.cuda_check_config(config, shape) is None:
            _check_fwd(inputs, True, config, TOL[torch.bfloat16])
    for n_states in (1, 7, 64, 256):
        inputs = make_scan_inputs(1, 8, 129, n_states, 1, torch.float32, device="cuda", seed=n_states)
        _check_fwd(inputs, True, fwd_config(64, 4), 1e-4)


@gpu
def test_gpu_fwd_channel_layout_configs():
    """The channel layout over its knobs (a subset: each is its own NVRTC build) on a ragged shape
    with every option and idle threads in the last block; odd and large N with their splits."""
    _needs_cupy()
    import itertools
    shape = {"batch": 2, "dim": 20, "L": 301, "N": 16, "G": 2}
    inputs = make_scan_inputs(2, 20, 301, 16, 2, torch.bfloat16, device="cuda", seed=8)
    for threads, split, chunk, poly in itertools.product((32, 128), (1, 2, 4), (32, 64), (0, 2)):
        config = {"layout": "channel", "threads": threads, "split": split, "chunk": chunk, "poly": poly,
                  "occupancy": 8}
        assert ssc.cuda_check_config(config, shape) is None
        _check_fwd(inputs, True, config, TOL[torch.bfloat16])
    _check_fwd(inputs, True, {"layout": "channel", "threads": 64, "split": 2, "chunk": 128, "poly": 1,
                              "occupancy": 16}, TOL[torch.bfloat16])
    for n_states, split in ((1, 1), (7, 1), (64, 4), (256, 8)):
        inputs = make_scan_inputs(1, 8, 129, n_states, 1, torch.float32, device="cuda", seed=n_states)
        config = {"layout": "channel", "threads": 64, "split": split, "chunk": 8 if n_states > 64 else 32,
                  "poly": 0, "occupancy": 8}
        _check_fwd(inputs, True, config, 1e-4)


@gpu
@pytest.mark.parametrize("case, length, offsets", [(4, 4093, (0, 0, 0, 0)), (4, 256, (1, 3, 6, 2)),
                                                   (7, 96, (2, 4, 6, 1)), (0, 37, (1, 2, 3, 0)),
                                                   (8, 133, (1, 0, 0, 5))])
def test_gpu_fwd_channel_rows_not_aligned(case, length, offsets):
    """The real kernels on rows that are not 16-byte aligned: shifted vector loads and stores."""
    _needs_cupy()
    _check_rows_not_aligned(*EMU_FWD_CHANNEL[case], length, offsets, "cuda")


@gpu
@pytest.mark.parametrize("case, length, offsets", [(3, 2047, (0, 0, 0, 0)), (3, 1024, (5, 0, 7, 3)),
                                                   (1, 601, (2, 1, 3, 0)), (2, 300, (2, 4, 6, 1))])
def test_gpu_fwd_warp_rows_not_aligned(case, length, offsets):
    """The warp layout's real kernels on rows that are not 16-byte aligned."""
    _needs_cupy()
    _check_rows_not_aligned(*EMU_FWD[case], length, offsets, "cuda")


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_cuda_checkpoints_equal_the_triton_forward(dtype):
    """The CUDA layouts' checkpoints are the backwards' input: the channel and the warp layout (every
    items_per_thread) write the states the Triton forward writes (fp32 all, up to summation order)."""
    _needs_cupy()
    from kernelgen.templates import selective_scan as ss
    inputs = make_scan_inputs(2, 64, 1000, 16, 2, dtype, device="cuda", seed=21)
    u = inputs["u"]
    shape = {"batch": 2, "dim": 64, "L": 1000, "N": 16}
    ckpts = []
    warp = {"backend": "cuda", "layout": "warp", "threads": 64, "state_unroll": 1, "occupancy": 8}
    for config in (ss.FWD.triton_default_config(shape),
                   {"backend": "cuda", "layout": "channel", "threads": 64, "split": 2, "chunk": 64, "poly": 0,
                    "occupancy": 8},
                   *({**warp, "items_per_thread": items} for items in (4, 8, 16))):
        checkpoints = torch.full((2, 64, -(-1000 // ss.CHECKPOINT_STEPS), 16), float("nan"), device="cuda")
        out = torch.empty_like(u)
        BC = ss.selective_scan_fwd(config, u, inputs["delta"], inputs["A"], inputs["B"], inputs["C"], inputs["D"],
                                   inputs["z"], inputs["delta_bias"], True, inputs["initial_state"], out, None,
                                   checkpoints)
        assert BC is not None    # the backward's packed B/C, from either backend
        ckpts.append(checkpoints)
    for other in ckpts[1:]:
        assert_close("checkpoints", other, ckpts[0], 1e-5)


@gpu
def test_gpu_fwd_target_shape_bf16():
    _needs_cupy()
    shape = dict(TARGET, batch=1, dim=256)
    inputs = make_scan_inputs(1, 256, 4096, 16, 1, torch.bfloat16, device="cuda", z=False, seed=9)
    _check_fwd(inputs, True, ssc.cuda_default_config(shape), TOL[torch.bfloat16])


def _check_step(config, n_states, groups, dtype, bc_dtype, seed):
    inputs = make_step_inputs(3, 36, n_states, groups, dtype, bc_dtype, device="cuda", seed=seed)
    out, state = run_step(config, inputs, softplus=True)
    ref_y, ref_h = ref_step(**inputs, dt_softplus=True)
    assert_close("y", out, ref_y, TOL[dtype])
    assert_close("state", state, ref_h, 1e-5)


@gpu
@pytest.mark.parametrize("dtype,bc_dtype", DTYPE_PAIRS)
@pytest.mark.parametrize("n_states,groups", [(16, 1), (16, 4), (5, 1), (256, 2)])
def test_gpu_step(dtype, bc_dtype, n_states, groups):
    _needs_cupy()
    shape = {"batch": 3, "dim": 36, "N": n_states, "G": groups}
    _check_step(ssc.cuda_default_config(shape), n_states, groups, dtype, bc_dtype, seed=n_states)


@gpu
@pytest.mark.parametrize("n_states", [16, 6, 256])
def test_gpu_step_whole_space(n_states):
    _needs_cupy()
    for states_per_lane in ssc.CUDA_STEP_SPACE["items_per_thread"]:
        for threads in (64, 512):
            _check_step(step_config(threads, states_per_lane), n_states, 2, torch.float32, torch.float32, seed=1)


@gpu
def test_gpu_step_equals_last_step_and_prefill_chunks():
    _needs_cupy()
    inputs = make_scan_inputs(2, 64, 513, 16, 1, torch.float32, device="cuda", seed=11)
    config = fwd_config(128, 8)
    y, h = run_fwd(config, inputs, True)
    cut = lambda v, sl: v[..., sl].contiguous()  # noqa: E731
    seq = ("u", "delta", "z", "B", "C")
    first = {k: (cut(v, slice(0, 300)) if k in seq else v) for k, v in inputs.items()}
    y1, h1 = run_fwd(config, first, True)
    second = {k: (cut(v, slice(300, None)) if k in seq else v) for k, v in inputs.items()}
    second["initial_state"] = h1
    y2, h2 = run_fwd(config, second, True)
    assert_close("y", torch.cat([y1, y2], -1), y, 1e-5)
    assert_close("last_state", h2, h, 1e-5)
    before = {k: (cut(v, slice(0, -1)) if k in seq else v) for k, v in inputs.items()}
    _, state = run_fwd(config, before, True)
    out = torch.empty(2, 64, device="cuda")
    ssc.selective_state_update_cuda(step_config(128, 4), state, cut(inputs["u"], -1), cut(inputs["delta"], -1),
                                    inputs["A"], cut(inputs["B"], -1), cut(inputs["C"], -1), inputs["D"],
                                    cut(inputs["z"], -1), inputs["delta_bias"], True, out)
    assert_close("y", out, y[..., -1], 1e-5)
    assert_close("state", state, h, 1e-5)


@gpu
def test_gpu_runs_on_torch_current_stream():
    _needs_cupy()
    inputs = make_scan_inputs(2, 16, 200, 16, 1, torch.float16, device="cuda", seed=12)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        out, last_state = run_fwd(fwd_config(64, 8), inputs, True)
    stream.synchronize()
    ref_y, ref_h = ref_scan(**inputs, delta_softplus=True)
    assert_close("y", out, ref_y, TOL[torch.float16])


@gpu
@pytest.mark.parametrize("dtype,bc_dtype", DTYPE_PAIRS)
def test_gpu_bwd_dtypes(dtype, bc_dtype):
    _needs_cupy()
    inputs = make_scan_inputs(2, 24, 301, 16, 2, dtype, bc_dtype, device="cuda", seed=40)
    shape = {"batch": 2, "dim": 24, "L": 301, "N": 16, "G": 2}
    tol = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    check_bwd(ssc.cuda_default_config(shape, "bwd"), inputs, True, tol, seed=41)


@gpu
@pytest.mark.parametrize("layout", ["warp", "channel"])
@pytest.mark.parametrize("options", [dict(D=False, z=False, bias=False, init=False),
                                     dict(D=True, z=True, bias=True, init=True)])
@pytest.mark.parametrize("softplus", [False, True])
def test_gpu_bwd_options(layout, options, softplus):
    """Each option on and off, for the warp-layout and the channel-layout backward."""
    _needs_cupy()
    inputs = make_scan_inputs(2, 16, 200, 8, 1, torch.float32, device="cuda", seed=42, **options)
    if layout == "warp":
        check_bwd(bwd_config(128, 4), inputs, softplus, 1e-4, with_dlast=options["init"], seed=43)
    else:
        config = ssc.bwd_channel_default_config({"batch": 2, "dim": 16, "L": 200, "N": 8, "G": 1})
        _check_gpu_bwd_channel(config, inputs, softplus, 1e-4, seed=84)


@gpu
def test_gpu_bwd_whole_space_and_checkpoints():
    _needs_cupy()
    import itertools
    shape = {"batch": 2, "dim": 16, "L": 700, "N": 16, "G": 2}
    inputs = make_scan_inputs(2, 16, 700, 16, 2, torch.float32, device="cuda", seed=44)
    keys = list(ssc.CUDA_BWD_SPACE)
    for values in itertools.product(*(ssc.CUDA_BWD_SPACE[k] for k in keys)):
        config = dict(zip(keys, values))
        if ssc.cuda_check_config(config, shape, "bwd") is None:
            check_bwd(config, inputs, True, 1e-4, seed=45)
    # Checkpoints from the forward (same items_per_thread) give the same gradients.
    fwd = fwd_config(128, 8)
    chunk_states = torch.empty(2, 16, ssc.chunk_count(fwd, 700), 16, device="cuda")
    out = torch.empty_like(inputs["u"])
    ssc.selective_scan_fwd_cuda(fwd, inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"],
                                inputs["D"], inputs["z"], inputs["delta_bias"], True, inputs["initial_state"], out,
                                None, chunk_states=chunk_states)
    check_bwd(bwd_config(128, 8), inputs, True, 1e-4, chunk_states=chunk_states, seed=45)
    for n_states in (1, 7, 256):
        small = make_scan_inputs(1, 8, 129, n_states, 1, torch.float32, device="cuda", seed=n_states)
        shape = {"batch": 1, "dim": 8, "L": 129, "N": n_states, "G": 1}
        check_bwd(ssc.cuda_default_config(shape, "bwd"), small, True, 1e-4, seed=46)


def _gpu_bwd_channel(config, inputs, softplus, seed):
    """The channel backward on the GPU, checkpoints from the channel forward; vs float64 autograd."""
    from kernelgen.templates import selective_scan as ss
    u = inputs["u"]
    batch, dim, length = u.shape
    n_states = inputs["A"].shape[1]
    checkpoints = torch.full((batch, dim, -(-length // ss.CHECKPOINT_STEPS), n_states), float("nan"), device="cuda")
    fwd = ssc.cuda_default_config({"batch": batch, "dim": dim, "L": length, "N": n_states,
                                   "G": inputs["B"].shape[1]})
    if fwd["layout"] != "channel" or ssc.cuda_check_config(fwd, {"batch": batch, "dim": dim, "L": length,
                                                                 "N": n_states, "G": inputs["B"].shape[1]}):
        fwd = {"layout": "channel", "threads": 64, "split": 1, "chunk": 8, "poly": 0, "occupancy": 8}
        while n_states // fwd["split"] > 16:
            fwd["split"] *= 2
    ssc.selective_scan_fwd_cuda(fwd, u, inputs["delta"], inputs["A"], inputs["B"], inputs["C"], inputs["D"],
                                inputs["z"], inputs["delta_bias"], softplus, inputs["initial_state"],
                                torch.empty_like(u), None, checkpoints=checkpoints)
    gen = torch.Generator(device="cuda").manual_seed(seed)
    dout = torch.randn(u.shape, device="cuda", generator=gen).to(u.dtype)
    dlast = torch.randn(batch, dim, n_states, device="cuda", generator=gen)
    return run_bwd_channel(config, inputs, softplus, dout, dlast, checkpoints), dout, dlast


def _check_gpu_bwd_channel(config, inputs, softplus, tol, seed=0):
    got, dout, dlast = _gpu_bwd_channel(config, inputs, softplus, seed)
    assert_grads(got, inputs, softplus, dout, dlast, tol)


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_gpu_bwd_channel_layout_configs(dtype):
    """The channel backward over its knobs on a ragged shape with every option and idle threads
    in the last block (fp32: every valid (split, steps, occupancy) at 128 threads, other thread
    counts and per-block partial sums with the default; 16-bit: the default and split 8; each config
    is one NVRTC build); odd and large N."""
    _needs_cupy()
    import itertools
    shape = {"batch": 2, "dim": 20, "L": 301, "N": 16, "G": 2}
    inputs = make_scan_inputs(2, 20, 301, 16, 2, dtype, device="cuda", seed=80)
    tol = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    default = ssc.bwd_channel_default_config({**shape, "dim": 2048, "G": 1})    # the target's
    configs = [default, {**default, "split": 8}]
    if dtype == torch.float32:
        space = ssc.CUDA_BWD_CHANNEL_SPACE
        configs = [{**default, **dict(zip(("split", "steps", "occupancy"), values))}
                   for values in itertools.product(space["split"], space["steps"], space["occupancy"])]
        configs += [{**default, "threads": 64}, {**default, "threads": 64, "split": 2, "occupancy": 8},
                    {**default, "block_sum": "partials"}]
    checked = 0
    for config in configs:
        if ssc.cuda_check_config(config, shape, "bwd") is None:
            _check_gpu_bwd_channel(config, inputs, True, tol, seed=81)
            checked += 1
    assert checked >= 2
    if dtype == torch.float32:
        for n_states in (1, 5, 32, 64):
            small = make_scan_inputs(1, 8, 129, n_states, 1, torch.float32, device="cuda", seed=n_states)
            config = ssc.bwd_channel_default_config({"batch": 1, "dim": 8, "L": 129, "N": n_states, "G": 1})
            assert ssc.cuda_check_config(config, {"batch": 1, "dim": 8, "L": 129, "N": n_states, "G": 1}, "bwd") is None
            _check_gpu_bwd_channel(config, small, n_states % 2 == 1, 1e-4, seed=82)


@gpu
def test_gpu_bwd_channel_equals_triton_backward_and_is_deterministic(request):
    """At 8192 channels (every block full) the CUDA and Triton backwards agree on every gradient
    (both fp32 inside), and under torch.use_deterministic_algorithms two CUDA runs with the default
    config (atomic block sums otherwise) are bitwise equal: the launcher takes per-block partials."""
    _needs_cupy()
    from kernelgen.templates import selective_scan as ss
    inputs = make_scan_inputs(4, 2048, 300, 16, 1, torch.float32, device="cuda", seed=85)
    u = inputs["u"]
    shape = {"batch": 4, "dim": 2048, "L": 300, "N": 16}
    checkpoints = torch.empty(4, 2048, 5, 16, device="cuda")
    BC = ss.selective_scan_fwd(ss.FWD.triton_default_config(shape), u, inputs["delta"], inputs["A"], inputs["B"],
                               inputs["C"], inputs["D"], inputs["z"], inputs["delta_bias"], True,
                               inputs["initial_state"], torch.empty_like(u), None, checkpoints)
    dout = torch.randn(u.shape, device="cuda")
    results = []
    assert ssc.bwd_channel_default_config({**shape, "G": 1})["block_sum"] == "atomic"
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    request.addfinalizer(lambda: torch.use_deterministic_algorithms(was_deterministic))
    for config in ({"backend": "cuda", **ssc.bwd_channel_default_config({**shape, "G": 1})},
                   {"backend": "cuda", **ssc.bwd_channel_default_config({**shape, "G": 1})},
                   ss.BWD.triton_default_config(shape)):
        du, ddelta, dz = torch.empty_like(u), torch.empty_like(u), torch.empty_like(u)
        got = ss.selective_scan_bwd(config, u, inputs["delta"], inputs["A"], BC, 16, inputs["D"], inputs["z"],
                                    inputs["delta_bias"], True, checkpoints, dout, None, du, ddelta, dz, True)
        dB, dC = ss.unpack_dbc(got["dBC"], 16, 300)
        results.append({"u": du, "delta": ddelta, "z": dz, "B": dB, "C": dC, "A": got["dA"], "D": got["dD"],
                        "delta_bias": got["ddelta_bias"], "initial_state": got["dinitial_state"]})
    for name in results[0]:
        assert torch.equal(results[0][name], results[1][name]), name
        assert_close(f"d{name}", results[0][name], results[2][name], 1e-4)


def _check_op_training(inputs, seed):
    """kernelgen.selective_scan in training (softplus, every given input a leaf): y and every
    gradient against the float64 reference, bf16 tolerances."""
    import kernelgen
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items() if v is not None}
    y, _ = kernelgen.selective_scan(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"],
                                    leaves.get("D"), leaves.get("z"), leaves.get("delta_bias"), True,
                                    return_last_state=True, initial_state=leaves.get("initial_state"))
    gen = torch.Generator(device="cuda").manual_seed(seed)
    dout = torch.randn(y.shape, device="cuda", generator=gen).to(y.dtype)
    names = [k for k in GRAD_NAMES if k in leaves]
    grads = torch.autograd.grad((y.float() * dout.float()).sum(), [leaves[k] for k in names])
    ref_y, _ = ref_scan(**inputs, delta_softplus=True)
    assert_close("y", y, ref_y, TOL[torch.bfloat16])
    want = ref_grads(inputs, True, dout, None)
    for name, got in zip(names, grads):
        assert_close(f"d{name}", got, want[name], 5e-2)


@gpu
@pytest.mark.parametrize("cuda_bwd", [False, True])
def test_gpu_op_training_with_the_channel_layout(cuda_bwd, monkeypatch):
    """The op at 8192 channels: the CUDA channel-layout forward writes the checkpoints, and the
    default backward (CUDA_BWD_DEFAULT) reads them: the Triton one, or the channel-layout one.
    Output and every gradient against the float64 reference."""
    _needs_cupy()
    from kernelgen import dispatch
    from kernelgen.templates import selective_scan as ss
    monkeypatch.setattr(ss, "CUDA_BWD_DEFAULT", cuda_bwd)
    dispatch.reset()
    shape = {"batch": 4, "dim": 2048, "L": 150, "N": 16}
    assert ss.FWD.default_config(shape).get("layout") == "channel"
    assert (ss.BWD.default_config(shape).get("backend") == "cuda") == cuda_bwd
    calls = []
    real = ssc.selective_scan_bwd_channel_cuda
    monkeypatch.setattr(ssc, "selective_scan_bwd_channel_cuda", lambda *a, **k: calls.append(1) or real(*a, **k))
    inputs = make_scan_inputs(4, 2048, 150, 16, 1, torch.bfloat16, device="cuda", z=False, init=False, seed=86)
    _check_op_training(inputs, seed=3)
    assert bool(calls) == cuda_bwd, "the op's backward ran the wrong kernel"
    dispatch.reset()


@gpu
def test_gpu_op_training_with_the_warp_layout(monkeypatch):
    """A warp-layout forward config (tuned where channels are few) also serves training: it writes
    the backward's checkpoints itself (until session 15 such a call ran the Triton forward).
    Output and every gradient against the float64 reference."""
    _needs_cupy()
    from kernelgen.ops import selective_scan as op
    from kernelgen.templates import selective_scan as ss
    warp = {"backend": "cuda", "layout": "warp", "threads": 32, "items_per_thread": 16, "state_unroll": 1,
            "occupancy": 8}
    real_config_for = op.config_for
    monkeypatch.setattr(op, "config_for", lambda t, *a, **k: warp if t is ss.FWD else real_config_for(t, *a, **k))
    launched = []
    real_fwd = ssc.selective_scan_fwd_cuda
    monkeypatch.setattr(ssc, "selective_scan_fwd_cuda", lambda config, *a, **k: launched.append(
        (config.get("layout"), k.get("checkpoints") is not None)) or real_fwd(config, *a, **k))
    inputs = make_scan_inputs(2, 96, 300, 16, 2, torch.bfloat16, device="cuda", seed=87)
    _check_op_training(inputs, seed=4)
    assert launched == [("warp", True)], launched


def test_bwd_space_has_the_backend_axis():
    """The backward's backend is a tuning axis: CUDA configs canonicalise to their own keys, Triton
    configs lose the CUDA keys (and carry no backend key, as tuned entries store them)."""
    from kernelgen.templates.selective_scan import BWD as bwd
    assert bwd.space["backend"] == ["triton", "cuda"] and "threads" in bwd.space and "chunk" in bwd.space
    cuda = bwd.canonical({"backend": "cuda", "block_d": 16, "chunk": 4, "threads": 64, "split": 2})
    assert cuda["backend"] == "cuda" and "block_d" not in cuda and cuda["threads"] == 64
    triton = bwd.canonical({"backend": "triton", "block_d": 16, "chunk": 4, "num_warps": 1, "threads": 64})
    assert triton == {"block_d": 16, "chunk": 4, "num_warps": 1}
