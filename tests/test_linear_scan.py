"""linear_scan: the op (forward, backward, argument checks) and its templates, against the float64
reference. On the CPU the real Triton kernels run under the interpreter, so shapes are tiny and
ragged (T, D not multiples of any tile)."""
import itertools

import pytest
import torch

import kernelgen
from kernelgen.reference.linear_scan import linear_scan_backward_ref, linear_scan_loop, linear_scan_ref
from kernelgen.tune.verify import verify
from reference_utils import assert_close

# Relative-error tolerances per dtype: o, dx and dg are rounded to the input dtype (and dg reads
# the rounded o as h_{t-1}; the upstream gradient do arrives rounded too). final_state is an fp32
# output computed in fp32 from the inputs as given, so it is held to fp32 accuracy.
TOL = {torch.float32: 1e-5, torch.float16: 3e-3, torch.bfloat16: 3e-2}
TOL_FINAL = 1e-5


def make_inputs(shape, dtype, decay, device, seed=0):
    """x ~ N(0, 1); g around log(decay) with some spread: 'strong' ~ -5, 'weak' ~ -0.01."""
    gen = torch.Generator().manual_seed(seed)
    batch, steps, width = shape
    x = torch.randn(batch, steps, width, generator=gen)
    if decay == "strong":
        g = -5.0 + 0.5 * torch.randn(batch, steps, width, generator=gen)
    else:
        g = -0.01 * torch.rand(batch, steps, width, generator=gen) - 1e-4
    h0 = torch.randn(batch, width, generator=gen)
    return x.to(device, dtype), g.to(device, dtype), h0.to(device)


# --- reference ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("steps", [0, 1, 5, 37])
def test_reference_doubling_matches_loop(steps):
    x, g, h0 = make_inputs((2, steps, 3), torch.float64, "weak", "cpu")
    o, final = linear_scan_ref(x, g, h0)
    o_loop, final_loop = linear_scan_loop(x, g, h0)
    assert torch.allclose(o, o_loop, rtol=1e-12, atol=1e-12)
    assert torch.allclose(final, final_loop, rtol=1e-12, atol=1e-12)


def test_reference_backward_matches_autograd():
    x, g, h0 = (t.double().requires_grad_() for t in make_inputs((2, 19, 5), torch.float64, "weak", "cpu"))
    do, dfinal = torch.randn(2, 19, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    o, final = linear_scan_loop(x, g, h0)
    expected = torch.autograd.grad((o * do).sum() + (final * dfinal).sum(), (x, g, h0))
    found = linear_scan_backward_ref(x.detach(), g.detach(), h0.detach(), do, dfinal)
    for name, got, want in zip(("dx", "dg", "dh0"), found, expected):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-12), name


# --- the op: forward ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, decay, with_state", [
    (torch.float32, "strong", True),
    (torch.float32, "weak", False),
    (torch.float16, "weak", True),
    (torch.float16, "strong", False),
])
def test_forward(device, dtype, decay, with_state):
    x, g, h0 = make_inputs((2, 37, 24), dtype, decay, device)
    o, final = kernelgen.linear_scan(x, g, h0 if with_state else None, output_final_state=with_state)
    o_ref, final_ref = linear_scan_ref(x, g, h0 if with_state else None)
    assert o.dtype == dtype and o.shape == x.shape
    assert_close("o", o, o_ref, TOL[dtype])
    if with_state:
        assert final.dtype == torch.float32
        assert_close("final_state", final, final_ref, TOL_FINAL)
    else:
        assert final is None


def test_forward_mixed_dtypes_and_noncontiguous(device):
    x, g, h0 = make_inputs((2, 21, 24), torch.float32, "weak", device)
    x_t = x.transpose(1, 2).contiguous().transpose(1, 2)   # same values, non-contiguous strides
    assert not x_t.is_contiguous()
    o, final = kernelgen.linear_scan(x_t, g.half(), h0.half(), output_final_state=True)
    o_ref, final_ref = linear_scan_ref(x, g.half(), h0.half())
    assert o.dtype == torch.float32
    assert_close("o", o, o_ref, 1e-5)
    assert_close("final_state", final, final_ref, 1e-5)


def test_empty_sequence(device):
    x, g, h0 = make_inputs((2, 0, 8), torch.float32, "weak", device)
    h0.requires_grad_()
    o, final = kernelgen.linear_scan(x, g, h0, output_final_state=True)
    assert o.shape == (2, 0, 8)
    assert torch.equal(final.detach(), h0.detach())
    dfinal = torch.randn_like(h0)
    (dh0,) = torch.autograd.grad((final * dfinal).sum(), (h0,))
    assert torch.equal(dh0, dfinal)


# --- the op: backward --------------------------------------------------------------------------------

def _grads(x, g, h0, output_final_state, use_o, use_final, seed=1):
    """Gradients of a weighted-sum loss through kernelgen and through the float64 reference."""
    gen = torch.Generator().manual_seed(seed)
    w_o = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    w_f = torch.randn(x.shape[0], x.shape[2], generator=gen, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (x, g, h0) if t is not None]
    o, final = kernelgen.linear_scan(leaves[0], leaves[1], leaves[2] if h0 is not None else None,
                                     output_final_state=output_final_state)
    loss = 0
    if use_o:
        loss = loss + (o.double() * w_o.to(o.device)).sum()
    if use_final:
        loss = loss + (final.double() * w_f.to(final.device)).sum()
    found = torch.autograd.grad(loss, leaves)
    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    o_ref, final_ref = linear_scan_ref(ref_leaves[0], ref_leaves[1], ref_leaves[2] if h0 is not None else None)
    loss_ref = 0
    if use_o:
        loss_ref = loss_ref + (o_ref * w_o.to(o_ref.device)).sum()
    if use_final:
        loss_ref = loss_ref + (final_ref * w_f.to(final_ref.device)).sum()
    expected = torch.autograd.grad(loss_ref, ref_leaves)
    return found, expected


@pytest.mark.parametrize("dtype, decay, with_state", [
    (torch.float32, "strong", True),
    (torch.float32, "weak", False),
    (torch.float16, "weak", True),
])
def test_backward(device, dtype, decay, with_state):
    x, g, h0 = make_inputs((2, 37, 24), dtype, decay, device)
    found, expected = _grads(x, g, h0 if with_state else None, with_state, use_o=True, use_final=with_state)
    for name, got, want in zip(("dx", "dg", "d initial_state"), found, expected):
        assert got.dtype == (torch.float32 if name == "d initial_state" else dtype)
        assert_close(name, got, want, TOL[dtype])


def test_backward_through_final_state_only(device):
    # o is unused, so its gradient never arrives (None): only dfinal drives the reverse scan.
    x, g, h0 = make_inputs((2, 37, 24), torch.float32, "weak", device)
    found, expected = _grads(x, g, h0, True, use_o=False, use_final=True)
    for name, got, want in zip(("dx", "dg", "d initial_state"), found, expected):
        assert_close(name, got, want, 1e-5)


def test_backward_without_initial_state_gradient(device):
    # initial_state given but not requiring grad: dg at t = 0 still uses it.
    x, g, h0 = make_inputs((2, 37, 24), torch.float32, "strong", device)
    x.requires_grad_()
    g.requires_grad_()
    o, _ = kernelgen.linear_scan(x, g, h0)
    do = torch.randn_like(o)
    dx, dg = torch.autograd.grad(o, (x, g), do)
    ref_dx, ref_dg, _ = linear_scan_backward_ref(x.detach(), g.detach(), h0, do, None)
    assert_close("dx", dx, ref_dx, 1e-5)
    assert_close("dg", dg, ref_dg, 1e-5)


# --- the op: argument checks ------------------------------------------------------------------------

def test_bad_inputs(device):
    x, g, h0 = make_inputs((2, 5, 8), torch.float32, "weak", device)
    with pytest.raises(ValueError, match=r"x must be \[B, T, D\]; got \[2, 5\]"):
        kernelgen.linear_scan(x[:, :, 0], g)
    with pytest.raises(ValueError, match=r"g must be \[B=2, T=5, D=8\]; got \[2, 4, 8\]"):
        kernelgen.linear_scan(x, g[:, :4])
    with pytest.raises(TypeError, match=r"x must have dtype in .*; got int32"):
        kernelgen.linear_scan(x.int(), g)
    with pytest.raises(TypeError, match=r"g must have dtype in .*; got int64"):
        kernelgen.linear_scan(x, g.long())
    with pytest.raises(ValueError, match=r"initial_state must be \[B=2, D=8\]; got \[2, 5, 8\]"):
        kernelgen.linear_scan(x, g, x)
    with pytest.raises(TypeError, match=r"initial_state must have dtype in .*; got int32"):
        kernelgen.linear_scan(x, g, h0.int())
    with pytest.raises(TypeError, match="output_final_state must be a bool"):
        kernelgen.linear_scan(x, g, h0, output_final_state=1)
    assert kernelgen.linear_scan(x, g, h0, output_final_state=None)[1] is None   # fla accepts None
    with pytest.raises(ValueError, match="is on meta but x is on"):
        kernelgen.linear_scan(x, g.to("meta"))


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x, g, _ = make_inputs((1, 3, 4), torch.float32, "weak", "cpu")
    with pytest.raises(ValueError, match="kernelgen kernels run on CUDA tensors"):
        kernelgen.linear_scan(x, g)


# --- templates ----------------------------------------------------------------------------------------

from kernelgen.templates.linear_scan import BWD, FWD  # noqa: E402


@pytest.mark.parametrize("template", [FWD, BWD], ids=lambda t: t.name)
def test_template_default_on_cpu_workload(device, template):
    for shape in template.cpu_workload:
        config = template.default_config(shape)
        assert template.check_config(config, shape) is None
        errors, reason, _ = verify(template, config, shape, "fp32", "", device, seed=3)
        assert reason is None, (config, errors)


# A subset of the grid that covers every algorithm, 2..8 channels per thread, 1 and 2 warps,
# ragged and tile-multiple shapes, and (inclusive_every > 1) look-back walking over published
# aggregates, which the sequential interpreter never does otherwise.
TILE_8x64 = {"block_t": 8, "block_d": 64, "num_warps": 1}
GRID_CASES = [
    ({"B": 2, "T": 37, "D": 24}, {"algorithm": "sequential", **TILE_8x64, "num_stages": 1}),
    ({"B": 2, "T": 37, "D": 24}, {"algorithm": "chunked", **TILE_8x64, "splits": 4}),
    ({"B": 2, "T": 37, "D": 24}, {"algorithm": "lookback", **TILE_8x64, "inclusive_every": 2}),
    ({"B": 3, "T": 32, "D": 64}, {"algorithm": "lookback", **TILE_8x64, "inclusive_every": 3}),
    ({"B": 2, "T": 37, "D": 24}, {"algorithm": "lookback", **TILE_8x64, "inclusive_every": 2, "ticket": True}),
    ({"B": 3, "T": 32, "D": 128}, {"algorithm": "chunked", "block_t": 8, "block_d": 128, "num_warps": 1, "splits": 4}),
    ({"B": 1, "T": 40, "D": 200}, {"algorithm": "lookback", "block_t": 16, "block_d": 256, "num_warps": 2}),
]


@pytest.mark.parametrize("template", [FWD, BWD], ids=lambda t: t.name)
@pytest.mark.parametrize("shape, config", GRID_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_template_grid_configs(device, template, shape, config):
    checked = {k: v for k, v in config.items() if k != "inclusive_every"}
    assert template.check_config(checked, shape) is None
    errors, reason, _ = verify(template, config, shape, "fp32", "", device, seed=4)
    assert reason is None, errors


@pytest.mark.parametrize("shape, config, why", [
    ((2, 37, 24), {"algorithm": "sequential", "block_t": 16, "block_d": 64, "num_warps": 4, "num_stages": 1},
     "not 2..8 channels"),
    ((2, 37, 24), {"algorithm": "sequential", "block_t": 64, "block_d": 256, "num_warps": 1, "num_stages": 1},
     "register spills"),
    ((2, 20, 24), {"algorithm": "lookback", "block_t": 32, "block_d": 64, "num_warps": 1}, "at least two tiles"),
    ((2, 37, 24), {"algorithm": "chunked", "block_t": 16, "block_d": 64, "num_warps": 1, "splits": 16},
     "splits but only"),
    ((2, 37, 24), {"algorithm": "sequential", "block_t": 8, "block_d": 1024, "num_warps": 4, "num_stages": 1},
     "wider than D"),
])
def test_check_config_rejects(shape, config, why):
    found = FWD.check_config(config, dict(zip("BTD", shape)))
    assert found is not None and why in found, found


def test_check_config_shared_memory():
    from kernelgen.hardware import profile
    config = {"algorithm": "sequential", "block_t": 16, "block_d": 512, "num_warps": 4, "num_stages": 2}
    shape = {"B": 1, "T": 4096, "D": 4096}
    assert "shared memory" in BWD.check_config(config, shape, profile("h100"))
    assert BWD.check_config({**config, "num_stages": 1}, shape, profile("h100")) is None


def test_default_configs_are_valid_and_grids_nonempty():
    from kernelgen.hardware import profile
    h100 = profile("h100")
    shapes = FWD.workload + FWD.cpu_workload + [{"B": 1, "T": 1, "D": 1}, {"B": 64, "T": 512, "D": 4096},
                                                {"B": 1, "T": 100000, "D": 7}]
    for template in (FWD, BWD):
        for shape in shapes:
            for gpu in (None, h100):
                config = template.default_config(shape, gpu)
                assert template.check_config(config, shape, gpu) is None, (template.name, shape, config)
        for shape in template.workload:
            assert len(template.grid(shape, h100)) > 50
    assert FWD.default_config({"B": 2, "T": 65536, "D": 2048}, h100)["algorithm"] == "lookback"


def test_canonical_drops_parameters_that_do_not_apply():
    config = {"algorithm": "lookback", "block_t": 32, "block_d": 128, "num_warps": 4, "splits": 16, "num_stages": 2}
    assert FWD.canonical(config) == {"algorithm": "lookback", "block_t": 32, "block_d": 128, "num_warps": 4}
    assert FWD.canonical({**config, "ticket": True})["ticket"] is True
    assert "ticket" not in FWD.canonical({**config, "ticket": True, "algorithm": "sequential"})
    assert "splits" in FWD.canonical({**config, "algorithm": "chunked"})
    assert "num_stages" in FWD.canonical({**config, "algorithm": "sequential"})


# --- GPU (bf16, the shapes) ---------------------------------------------------------------------

GPU_CONFIGS = [
    None,   # the heuristic default
    {"algorithm": "lookback", "block_t": 32, "block_d": 256, "num_warps": 4},
    {"algorithm": "lookback", "block_t": 32, "block_d": 256, "num_warps": 4, "ticket": True},
    {"algorithm": "lookback", "block_t": 8, "block_d": 1024, "num_warps": 4},
    {"algorithm": "sequential", "block_t": 32, "block_d": 256, "num_warps": 4, "num_stages": 2},
    {"algorithm": "chunked", "block_t": 16, "block_d": 512, "num_warps": 4, "splits": 16},
]


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [{"B": 8, "T": 4096, "D": 2048}, {"B": 1, "T": 65536, "D": 2048},
                                   {"B": 3, "T": 1000, "D": 520}], ids=str)
@pytest.mark.parametrize("config", GPU_CONFIGS,
                         ids=lambda c: (f"{c['algorithm']}{c['block_t']}x{c['block_d']}"
                                        f"{'-ticket' if c.get('ticket') else ''}" if c else "default"))
def test_gpu_templates_bf16(shape, config):
    for template in (FWD, BWD):
        chosen = config or template.default_config(shape)
        if template.check_config(chosen, shape) is not None:
            continue
        for seed in range(3):   # look-back races, if any, show up as wrong answers on some runs
            errors, reason, _ = verify(template, chosen, shape, "bf16", "", "cuda", seed=seed)
            assert reason is None, (template.name, chosen, errors)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_gpu_op_forward_backward(dtype):
    x, g, h0 = make_inputs((4, 2048, 1024), dtype, "weak", "cuda")
    found, expected = _grads(x, g, h0, True, use_o=True, use_final=True)
    for name, got, want in zip(("dx", "dg", "d initial_state"), found, expected):
        assert_close(name, got, want, {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}[dtype])


@pytest.mark.gpu
def test_gpu_op_matches_fla_signature():
    fla_hgrn = pytest.importorskip("fla.ops.hgrn")
    x, g, h0 = make_inputs((2, 512, 256), torch.bfloat16, "weak", "cuda")
    g = torch.nn.functional.logsigmoid(g.float() * 100).to(torch.bfloat16)
    o, final = kernelgen.linear_scan(x, g, initial_state=h0, output_final_state=True)
    o_fla, final_fla = fla_hgrn.fused_recurrent_hgrn(x, g, initial_state=h0, output_final_state=True)
    assert_close("o vs fla", o, o_fla, 2e-2)
    assert_close("final_state vs fla", final, final_fla.float(), 2e-2)


# --- packed sequences (cu_seqlens, fla's varlen convention) ------------------------------------------

def packed_scan_loop(x, g, h0, bounds):
    """float64, from the math: per sequence n, h = h0[n] (or 0), then h = exp(g_t) * h + x_t for each of
    its tokens; o is every h, final_state the last (h0 itself for an empty sequence). Differentiable."""
    x64, g64 = x[0].double(), g[0].double()
    outs, finals = [], []
    for n, (start, stop) in enumerate(zip(bounds, bounds[1:])):
        h = h0[n].double() if h0 is not None else x64.new_zeros(x64.shape[1])
        for t in range(start, stop):
            h = torch.exp(g64[t]) * h + x64[t]
            outs.append(h)
        finals.append(h)
    o = torch.stack(outs) if outs else x64   # T = 0: x64 is the empty [0, D]
    return o[None], torch.stack(finals)


def offsets(lengths):
    """cu_seqlens (as a list) of sequences of these lengths, packed."""
    return [0, *itertools.accumulate(lengths)]


# Empty and one-token sequences at the ends and between others; one long sequence among many short
# ones (the layout that padding to [N, max_len, D] blew up); nothing at all (T = 0).
LONG_AMONG_SHORT = offsets([1, 3, 2] * 3 + [1, 150, 1, 0, 2, 2, 1, 2, 1, 0, 3])
PACKED_LAYOUTS = {"ragged": [0, 0, 7, 7, 30, 31, 53, 53], "long_among_short": LONG_AMONG_SHORT, "empty": [0, 0, 0]}


def make_packed_inputs(bounds, dtype, device, width=20, seed=3):
    """x ~ N(0, 1), g in (-2, 0) (weak enough decays that a missed restart shows), h0 ~ N(0, 1) [N, D]."""
    gen = torch.Generator().manual_seed(seed)
    steps = bounds[-1]
    x = torch.randn(1, steps, width, generator=gen)
    g = -2 * torch.rand(1, steps, width, generator=gen)
    h0 = torch.randn(len(bounds) - 1, width, generator=gen)
    return x.to(device, dtype), g.to(device, dtype), h0.to(device)


def _packed_grads(x, g, h0, bounds, output_final_state, use_o=True, seed=1):
    """(o, final_state) and the gradients of a weighted-sum loss of them, through kernelgen and through
    packed_scan_loop, for the leaves x, g (and h0 when given)."""
    gen = torch.Generator().manual_seed(seed)
    w_o = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x.device)
    w_f = torch.randn(h0.shape if h0 is not None else (len(bounds) - 1, x.shape[2]), generator=gen,
                      dtype=torch.float64).to(x.device)
    cu_seqlens = torch.tensor(bounds, dtype=torch.int32, device=x.device)

    def run(scan, leaves):
        o, final = scan(*leaves)
        loss = (o.double() * w_o).sum() if use_o else 0
        if output_final_state:
            loss = loss + (final.double() * w_f).sum()
        # T = 0 leaves g out of the reference's graph: its gradient is then the empty zeros.
        return (o, final), torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True)

    leaves = [t.clone().requires_grad_() for t in (x, g, h0) if t is not None]
    found = run(lambda x, g, h0=None: kernelgen.linear_scan(x, g, h0, output_final_state, cu_seqlens), leaves)
    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    expected = run(lambda x, g, h0=None: packed_scan_loop(x, g, h0, bounds), ref_leaves)
    return found, expected, w_f


@pytest.mark.parametrize("layout", PACKED_LAYOUTS)
@pytest.mark.parametrize("output_final_state", [False, True], ids=["no_final", "final"])
@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_varlen_matches_per_sequence_loop(device, dtype, with_state, output_final_state, layout):
    bounds = PACKED_LAYOUTS[layout]
    x, g, h0 = make_packed_inputs(bounds, dtype, device)
    ((o, final), grads), ((o_ref, final_ref), grads_ref), _ = _packed_grads(
        x, g, h0 if with_state else None, bounds, output_final_state)
    assert o.dtype == dtype
    assert_close("o", o, o_ref, TOL[dtype])
    if output_final_state:
        assert final.dtype == torch.float32
        assert_close("final_state", final, final_ref, TOL_FINAL)   # fp32 states whatever x's dtype
    else:
        assert final is None
    for name, got, want in zip(("dx", "dg", "d initial_state"), grads, grads_ref):
        assert got.dtype == (torch.float32 if name == "d initial_state" else dtype)
        assert_close(name, got, want, TOL[dtype])


def test_varlen_gradient_through_final_state_only(device):
    # o unused: only the gathered final states drive the backward. An empty sequence's final state
    # is its initial state, so d initial_state there is d final_state itself; float64 h0 gets a
    # float64 gradient.
    bounds = PACKED_LAYOUTS["ragged"]
    x, g, h0 = make_packed_inputs(bounds, torch.float32, device)
    (_, grads), (_, grads_ref), w_f = _packed_grads(x, g, h0.double(), bounds, True, use_o=False)
    for name, got, want in zip(("dx", "dg", "d initial_state"), grads, grads_ref):
        assert_close(name, got, want, TOL_FINAL)
    empty = [n for n, (a, b) in enumerate(zip(bounds, bounds[1:])) if a == b]
    assert grads[2].dtype == torch.float64
    assert torch.equal(grads[2][empty], w_f[empty].float().double())   # final_state is fp32: so is its gradient


def _spy_launches(monkeypatch):
    """Record (kernel, shape of its first [B, T, D] tensor) for every launch the op makes."""
    from kernelgen.ops import linear_scan as op
    launches = []
    for name in ("linear_scan_fwd", "linear_scan_bwd"):
        def spy(config, first, *rest, real=getattr(op, name), name=name):
            launches.append((name, tuple(first.shape)))
            return real(config, first, *rest)
        monkeypatch.setattr(op, name, spy)
    return launches


def test_varlen_runs_packed_without_padding(device, monkeypatch):
    # 20 sequences, the longest 150 tokens: padded rows would be [20, 150, D] for T = 181.
    launches = _spy_launches(monkeypatch)
    bounds = LONG_AMONG_SHORT
    x, g, h0 = make_packed_inputs(bounds, torch.float32, device)
    _packed_grads(x, g, h0, bounds, True)
    packed = (1, bounds[-1], x.shape[2])
    assert launches == [("linear_scan_fwd", packed), ("linear_scan_bwd", packed)]


def test_large_batch_runs_in_groups(device, monkeypatch):
    # The grid's z axis holds the batch (CUDA caps it at 65535); a cap of 2 splits B = 5 into 2, 2, 1.
    from kernelgen.ops import linear_scan as op
    monkeypatch.setattr(op, "MAX_GRID_Z", 2)
    launches = _spy_launches(monkeypatch)
    x, g, h0 = make_inputs((5, 13, 24), torch.float32, "weak", device)
    o, final = kernelgen.linear_scan(x, g, h0, output_final_state=True)
    o_ref, final_ref = linear_scan_ref(x, g, h0)
    assert_close("o", o, o_ref, TOL[torch.float32])
    assert_close("final_state", final, final_ref, TOL_FINAL)
    found, expected = _grads(x, g, h0, True, use_o=True, use_final=True)
    for name, got, want in zip(("dx", "dg", "d initial_state"), found, expected):
        assert_close(name, got, want, TOL[torch.float32])
    rows = [(kernel, shape[0]) for kernel, shape in launches]
    assert rows == [("linear_scan_fwd", b) for b in (2, 2, 1)] * 2 + [("linear_scan_bwd", b) for b in (2, 2, 1)]


def test_varlen_bad_inputs(device):
    x = torch.randn(1, 10, 8, device=device)
    g = -torch.rand(1, 10, 8, device=device)
    cu = torch.tensor([0, 4, 10], device=device)
    with pytest.raises(ValueError, match="B=2"):
        kernelgen.linear_scan(x.expand(2, -1, -1), g.expand(2, -1, -1), cu_seqlens=cu)
    with pytest.raises(ValueError, match="rise from 0 to T=10"):
        kernelgen.linear_scan(x, g, cu_seqlens=torch.tensor([0, 4, 9], device=device))
    with pytest.raises(ValueError, match="rise from 0"):
        kernelgen.linear_scan(x, g, cu_seqlens=torch.tensor([0, 6, 4, 10], device=device))
    with pytest.raises(ValueError, match="int32/int64"):
        kernelgen.linear_scan(x, g, cu_seqlens=torch.tensor([0.0, 10.0], device=device))
    with pytest.raises(ValueError, match="initial_state must be"):
        kernelgen.linear_scan(x, g, torch.zeros(3, 8, device=device), cu_seqlens=cu)
