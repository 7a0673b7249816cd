"""kernelgen.launch: the cached launch keys on what Triton specializes on and otherwise defers to it.

Runs without a GPU: a JITFunction subclass stands in for Triton's own ``run`` (which would compile),
and a recording object for the compiled kernel's launcher. On the GPU every op test goes through
the real thing (every template module installs it when it registers).
"""
import pytest
import torch
from triton.runtime.jit import JITFunction

from kernelgen import launch


def _kernel_source(x_ptr, y_ptr, n, scale, BLOCK: "tl.constexpr"):   # noqa: F821 (never compiled)
    pass


def _kernel_with_defaults(x_ptr, n, BLOCK: "tl.constexpr", FLAG: "tl.constexpr" = False,   # noqa: F821
                          MODE: "tl.constexpr" = 3):   # noqa: F821
    pass


class FakeCompiled:
    def __init__(self, tag):
        self.tag, self.function, self.packed_metadata, self.launches = tag, object(), object(), []

    def launch_metadata(self, grid, stream, *args):
        return None

    def run(self, g0, g1, g2, stream, function, packed, metadata, enter, exit_, *args):
        self.launches.append(((g0, g1, g2), stream, args))


class FakeDriver:
    class active:
        @staticmethod
        def get_current_device():
            return 0

        @staticmethod
        def get_current_stream(device):
            return 1234


@pytest.fixture
def kernel(monkeypatch):
    return _fake_kernel(monkeypatch, _kernel_source)


def _fake_kernel(monkeypatch, source):
    compiles = []

    def triton_run(self, *args, grid, warmup, **kwargs):
        compiled = FakeCompiled(len(compiles))
        compiles.append((args, kwargs, warmup))
        return compiled

    class FakeJIT(JITFunction):
        run = triton_run

    monkeypatch.setattr(launch, "_TRITON_RUN", triton_run)
    monkeypatch.setattr(launch, "_driver", FakeDriver)
    fn = FakeJIT(source)
    assert launch.install(fn) and not launch.install(fn)   # once only
    fn.compiles = compiles
    return fn


def _tensor(offset_elements=0):
    return torch.zeros(64)[offset_elements:]


def test_second_call_launches_the_cached_kernel_with_every_argument_in_order(kernel):
    x, y = _tensor(), _tensor()
    first = kernel[(3,)](x, y, 48, 0.5, BLOCK=16, num_warps=4)
    second = kernel[(5, 2)](x, y, 32, 0.25, BLOCK=16, num_warps=4)
    assert second is first and len(kernel.compiles) == 1
    (grid, stream, args), = first.launches
    assert grid == (5, 2, 1) and stream == 1234
    assert args[0] is x and args[1] is y and args[2:] == (32, 0.25, 16)


def test_constexprs_left_to_their_defaults_are_cached_with_them(monkeypatch):
    """A call that leaves defaulted constexprs out is cached too (the backward passes of
    linear_attention did, and took Triton's ~60-150 us binding path on every launch); the launch
    gets the defaults in signature order, and passing one explicitly keys a variant of its own."""
    kernel = _fake_kernel(monkeypatch, _kernel_with_defaults)
    x = _tensor()
    first = kernel[(1,)](x, 48, BLOCK=16, num_warps=4)
    again = kernel[(2,)](x, 32, BLOCK=16, num_warps=4)
    assert again is first and len(kernel.compiles) == 1
    (_, _, args), = first.launches
    assert args[0] is x and args[1:] == (32, 16, False, 3)
    flagged = kernel[(1,)](x, 48, MODE=5, BLOCK=16, num_warps=4)
    kernel[(1,)](x, 48, MODE=5, BLOCK=16, num_warps=4)
    assert len(kernel.compiles) == 2
    (_, _, args), = flagged.launches
    assert args[1:] == (48, 16, False, 5)


@pytest.mark.parametrize("change", ["int_is_one", "int_not_multiple_of_16", "int_64bit", "misaligned_tensor",
                                    "dtype", "constexpr", "option", "none_tensor"])
def test_anything_triton_specializes_on_compiles_anew(kernel, change):
    x, y = _tensor(), _tensor()
    args, kwargs = [x, y, 48, 0.5], {"BLOCK": 16, "num_warps": 4}
    kernel[(1,)](*args, **kwargs)
    if change == "int_is_one":
        args[2] = 1
    elif change == "int_not_multiple_of_16":
        args[2] = 40
    elif change == "int_64bit":
        args[2] = 2**33
    elif change == "misaligned_tensor":
        args[0] = _tensor(1)   # 4 bytes past a 16-byte boundary
    elif change == "dtype":
        args[1] = y.half()
    elif change == "constexpr":
        kwargs["BLOCK"] = 32
    elif change == "option":
        kwargs["num_warps"] = 8
    elif change == "none_tensor":
        args[1] = None
    kernel[(1,)](*args, **kwargs)
    assert len(kernel.compiles) == 2
    kernel[(1,)](*args, **kwargs)
    assert len(kernel.compiles) == 2   # and that variant is cached in turn


def test_tma_descriptors_key_on_dtype_and_block_shape(kernel):
    from triton.tools.tensor_descriptor import TensorDescriptor
    base = torch.zeros(64, 32)
    def describe(tensor, block):
        return TensorDescriptor.from_tensor(tensor, block)
    kernel[(1,)](describe(base, [16, 32]), _tensor(), 48, 0.5, BLOCK=16)
    kernel[(1,)](describe(torch.ones(128, 32), [16, 32]), _tensor(), 48, 0.5, BLOCK=16)   # other base, shape
    assert len(kernel.compiles) == 1
    kernel[(1,)](describe(base, [32, 32]), _tensor(), 48, 0.5, BLOCK=16)
    kernel[(1,)](describe(base.half(), [16, 32]), _tensor(), 48, 0.5, BLOCK=16)
    assert len(kernel.compiles) == 3


def test_unmodelled_calls_always_take_tritons_path(kernel, monkeypatch):
    x, y = _tensor(), _tensor()
    kernel[(1,)](x, y, 48, 0.5, BLOCK=16)
    calls = [
        lambda: kernel.warmup(x, y, 48, 0.5, BLOCK=16, grid=(1,)),
        lambda: kernel[lambda meta: (1,)](x, y, 48, 0.5, BLOCK=16),     # grid as a function
        lambda: kernel[(1,)](x, y, 48, (1, 2), BLOCK=16),                # an argument kind not modelled
        lambda: kernel[(1,)](x, y, 48, 0.5, BLOCK=[16]),                 # an unhashable constexpr
        lambda: kernel[(1,)](x, y, 48, 0.5),                             # BLOCK left to Triton's binder
        lambda: kernel[(1,)](x, y, 48, 0.5, 16),                         # a constexpr passed by position
        lambda: kernel[(1,)](x, y, n=48, scale=0.5, BLOCK=16),           # runtime values passed by keyword
    ]
    for i, call in enumerate(calls):
        call()
        call()   # and again: none of them is ever cached
        assert len(kernel.compiles) == 2 * i + 3
    assert kernel.compiles[1][2] is True   # the warmup reached Triton as a warmup


def test_a_launch_hook_takes_tritons_path(kernel, monkeypatch):
    from triton import knobs
    x, y = _tensor(), _tensor()
    kernel[(1,)](x, y, 48, 0.5, BLOCK=16)
    monkeypatch.setattr(knobs.runtime, "launch_enter_hook", lambda metadata: None)   # a profiler's hook
    kernel[(1,)](x, y, 48, 0.5, BLOCK=16)
    assert len(kernel.compiles) == 2


def test_a_class_level_patch_of_run_wins(kernel, monkeypatch):
    x, y = _tensor(), _tensor()
    kernel[(1,)](x, y, 48, 0.5, BLOCK=16)
    captured = []
    monkeypatch.setattr(type(kernel), "run", lambda self, *a, grid, warmup, **k: captured.append(grid))
    kernel[(1,)](x, y, 48, 0.5, BLOCK=16)
    assert captured == [(1,)]


def test_clear_forgets_compiled_kernels(kernel):
    x, y = _tensor(), _tensor()
    kernel[(1,)](x, y, 48, 0.5, BLOCK=16)
    launch.clear()
    kernel[(1,)](x, y, 48, 0.5, BLOCK=16)
    assert len(kernel.compiles) == 2


def test_interpreter_kernels_are_left_alone():
    assert not launch.install(lambda: None)
    assert not launch.install(object())


@pytest.mark.gpu
def test_gpu_cached_launches_give_tritons_results():
    """On the GPU: a kernel hits the cache from its second call, and the cached launch writes
    exactly what Triton's own path writes (the sequential scan: no look-back, so deterministic)."""
    import kernelgen.templates.linear_scan as scan_template
    kernel = scan_template.linear_scan_kernel
    launcher = kernel.__dict__["run"]
    config = {"algorithm": "sequential", "block_t": 32, "block_d": 128, "num_warps": 2, "num_stages": 1}
    x = torch.randn(2, 300, 96, device="cuda", dtype=torch.bfloat16)
    g = torch.nn.functional.logsigmoid(torch.randn_like(x))

    def scan():
        o, final = torch.full_like(x, float("nan")), torch.full((2, 96), float("nan"), device="cuda")
        scan_template.linear_scan_fwd(config, x, g, None, o, final)
        return o, final

    scan()
    hits = launcher.hits
    cached = scan()
    assert launcher.hits == hits + 1
    del kernel.__dict__["run"]   # Triton's JITFunction.run for the same call
    try:
        plain = scan()
    finally:
        kernel.run = launcher
    assert torch.equal(cached[0], plain[0]) and torch.equal(cached[1], plain[1])


@pytest.mark.gpu
def test_gpu_cached_launch_with_tma_descriptors():
    """The sliding-window forward takes host TMA descriptors for K and V at D = 128 on sm_90: its
    cached launch writes what Triton's own path writes."""
    import kernelgen
    import kernelgen.templates.sliding_window_attention as swa_template
    kernel = swa_template._fwd_kernel
    launcher = kernel.__dict__["run"]
    q, k, v = (torch.randn(1, 256, 2, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    kernelgen.sliding_window_attention(q, k, v, 64)
    hits = launcher.hits
    cached = kernelgen.sliding_window_attention(q, k, v, 64)
    assert launcher.hits == hits + 1
    del kernel.__dict__["run"]
    try:
        plain = kernelgen.sliding_window_attention(q, k, v, 64)
    finally:
        kernel.run = launcher
    assert torch.equal(cached, plain)


def test_tma_loads_needs_aligned_base_and_strides():
    """A descriptor of a 2-D view needs a 16-byte aligned base and row stride, and a contiguous
    tensor; anything else takes the pointer path."""
    from kernelgen.launch import tma_loads
    aligned = torch.zeros(4, 8, dtype=torch.bfloat16)                  # rows of 16 bytes
    assert tma_loads((aligned,))
    assert not tma_loads((torch.zeros(4, 3, dtype=torch.bfloat16),))  # rows of 6 bytes
    assert not tma_loads((torch.zeros(65, dtype=torch.bfloat16)[1:].view(8, 8),))   # base off by 2 bytes
    assert not tma_loads((aligned, torch.zeros(8, 8, dtype=torch.bfloat16).t()))    # not contiguous


def test_next_pow2_is_tritons_next_power_of_2():
    import triton
    from kernelgen.launch import next_pow2
    assert all(next_pow2(n) == triton.next_power_of_2(n) for n in range(-3, 5000))


def test_current_stream_handle_is_zero_off_cuda():
    assert launch.current_stream_handle(torch.device("cpu")) == 0
