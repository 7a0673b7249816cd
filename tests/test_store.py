"""tuned/<gpu>.json: schema round trip, nearest bucket, staleness, corrupt files, concurrent writers."""
import json
import multiprocessing

import pytest

from kernelgen import dispatch, store

GPU = {"name": "NVIDIA H100 80GB HBM3", "key": "h100", "compute_capability": [9, 0], "sms": 132, "memory_gb": 79.1}
TOOLS = {"torch": "2.11.0", "triton": "3.6.0", "cuda": "12.8"}


def entry(T=4096, block=64, op="linear_scan", kernel="fwd", dtype="bf16", template_hash="h1", triton="3.6.0"):
    return store.Entry(op=op, kernel=kernel, dtype=dtype, flags="", shape={"B": 8, "T": T, "D": 2048},
                       config={"BLOCK_D": block}, ms=0.1, default_ms=0.2, trials=10,
                       template_hash=template_hash, triton=triton)


def test_round_trip(tmp_path):
    path = tmp_path / "h100.json"
    written = store.merge_write(path, GPU, [entry(), entry(T=65536)], {"linear_scan.fwd": "h1"}, TOOLS)
    loaded = store.load(path)
    assert loaded.to_json() == written.to_json()
    assert json.loads(path.read_text())["schema"] == store.SCHEMA
    assert loaded.gpu == GPU and loaded.toolchain == TOOLS and loaded.templates == {"linear_scan.fwd": "h1"}
    assert loaded.entries[0].shape == {"B": 8, "T": 4096, "D": 2048}


def test_merge_replaces_same_key_and_keeps_others(tmp_path):
    path = tmp_path / "h100.json"
    store.merge_write(path, GPU, [entry(block=64), entry(T=65536)], {}, TOOLS)
    store.merge_write(path, GPU, [entry(block=128), entry(kernel="bwd")], {}, TOOLS)
    got = {(e.kernel, e.shape["T"]): e.config["BLOCK_D"] for e in store.load(path).entries}
    assert got == {("fwd", 4096): 128, ("fwd", 65536): 64, ("bwd", 4096): 64}


def test_nearest_bucket_is_log_distance():
    entries = [entry(T=1024), entry(T=4096), entry(T=65536)]
    assert store.nearest(entries, {"B": 8, "T": 3000, "D": 2048}).shape["T"] == 4096
    assert store.nearest(entries, {"B": 8, "T": 20000, "D": 2048}).shape["T"] == 65536  # log2 closer
    assert store.nearest(entries, {"B": 8, "T": 1, "D": 2048}).shape["T"] == 1024
    assert store.nearest([], {"T": 5}) is None


def test_stale_reasons():
    assert store.stale_reason(entry(), "h1", "3.6.1") is None
    assert "changed" in store.stale_reason(entry(), "h2", "3.6.0")
    assert "Triton 3.6.0" in store.stale_reason(entry(), "h1", "3.9.0")


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('{"schema": "kernelgen.tuned/0", "gpu": {}}', "schema"),
    ('{"schema": "kernelgen.tuned/1", "gpu": {}, "entries": {"op": "x"}}', "entries must be a list"),
    ("[]", "schema"),
])
def test_corrupt_files_give_clear_errors(tmp_path, text, message):
    path = tmp_path / "h100.json"
    path.write_text(text)
    with pytest.raises(store.StoreError, match=message):
        store.load(path)


def test_corrupt_file_is_moved_aside_not_lost(tmp_path):
    path = tmp_path / "h100.json"
    path.write_text("{broken")
    store.merge_write(path, GPU, [entry()], {}, TOOLS)
    assert len(store.load(path).entries) == 1
    [aside] = tmp_path.glob("h100.json.corrupt-*")
    assert aside.read_text() == "{broken"


def test_refuses_to_merge_another_gpus_file(tmp_path):
    path = tmp_path / "h100.json"
    store.merge_write(path, {**GPU, "key": "a100"}, [entry()], {}, TOOLS)
    with pytest.raises(store.StoreError, match="a100"):
        store.merge_write(path, GPU, [entry()], {}, TOOLS)


def _writer(args):
    path, T = args
    store.merge_write(path, GPU, [entry(T=T)], {"linear_scan.fwd": "h1"}, TOOLS)


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "h100.json")
    sizes = [2 ** k for k in range(4, 20)]
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_writer, [(path, T) for T in sizes])
    assert sorted(e.shape["T"] for e in store.load(path).entries) == sizes


# --- what a template hash covers --------------------------------------------------------------
KERNEL_MODULE = '''
import triton
import triton.language as tl

SCALE = tl.constexpr(2.0)


@triton.jit
def _kernel(x_ptr, N: tl.constexpr):
    tl.store(x_ptr + tl.arange(0, N), SCALE)


def launch(x):
    """Host launcher."""
    _kernel[(1,)](x, N=x.numel())
'''


def _hash_of(tmp_path, source, revision=0, space=None):
    from kernelgen.template import Template
    path = tmp_path / "family.py"
    path.write_text(source)

    class Family(Template):
        name = "family.fwd"

        def source_files(self):
            return [path]
    Family.revision = revision
    Family.space = space or {"BLOCK": [32, 64]}
    return Family().source_hash()


def test_hash_covers_kernels_constants_space_and_revision_not_host_code(tmp_path):
    base = _hash_of(tmp_path, KERNEL_MODULE)
    # Host-side edits (launcher body, docstrings, blank lines moving the kernel) keep stored configs.
    host_edit = KERNEL_MODULE.replace('"""Host launcher."""', "n = x.numel()  # renamed").replace(
        "def launch", "\n\ndef launch")
    assert _hash_of(tmp_path, "# a new header comment\n" + host_edit) == base
    # So do a kernel's comments, docstring and blank lines (its prose).
    prose = KERNEL_MODULE.replace("def _kernel(x_ptr, N: tl.constexpr):\n",
                                  'def _kernel(x_ptr, N: tl.constexpr):\n    """Fill x."""\n    # why\n\n') \
        .replace("SCALE)\n", "SCALE)  # the scale\n")
    assert prose != KERNEL_MODULE and _hash_of(tmp_path, prose) == base
    # A string that is code (not a docstring, not a comment) counts.
    assert _hash_of(tmp_path, KERNEL_MODULE.replace("SCALE)\n", "SCALE)\n    x = '# not a comment'\n")) != base
    # Whatever the compiled kernel or the space depends on makes them stale.
    assert _hash_of(tmp_path, KERNEL_MODULE.replace("tl.arange(0, N)", "tl.arange(0, N) * 1")) != base
    assert _hash_of(tmp_path, KERNEL_MODULE.replace("constexpr(2.0)", "constexpr(3.0)")) != base
    assert _hash_of(tmp_path, KERNEL_MODULE.replace("@triton.jit", "@triton.jit(do_not_specialize=['N'])")) != base
    assert _hash_of(tmp_path, KERNEL_MODULE, revision=1) != base
    assert _hash_of(tmp_path, KERNEL_MODULE, space={"BLOCK": [32, 64, 128]}) != base


def test_hash_covers_kernels_built_in_a_factory(tmp_path):
    factory = KERNEL_MODULE + '''

def make_kernel(scale):
    @triton.jit
    def _scaled(x_ptr, N: tl.constexpr):
        tl.store(x_ptr + tl.arange(0, N), 1.0)
    return _scaled
'''
    base = _hash_of(tmp_path, factory)
    assert _hash_of(tmp_path, factory.replace("), 1.0)", "), 2.0)")) != base
    assert _hash_of(tmp_path, factory.replace("    return _scaled", "    return _scaled  # host")) == base


def test_cuda_sources_hash_without_comments_and_launchers_whole(tmp_path):
    from kernelgen.template import Template
    cu, launcher = tmp_path / "kernel.cu", tmp_path / "kernel_cuda.py"
    cu.write_text("// comment\n__global__ void k() {}\n")
    launcher.write_text("OPTIONS = ('-O3',)\n")

    class Cuda(Template):
        name = "cuda.fwd"

        def source_files(self):
            return [cu, launcher]
    before = Cuda().source_hash()
    cu.write_text("// another comment\n/* and a block\n comment */ __global__ void k() {}\n\n")
    assert Cuda().source_hash() == before                              # comments do not count
    cu.write_text("// another comment\n__global__ void k() { int x = 1; }\n")
    after_cu = Cuda().source_hash()
    launcher.write_text("OPTIONS = ('-O3', '--use_fast_math')\n")   # no Triton kernels: counts whole
    assert len({before, after_cu, Cuda().source_hash()}) == 3


def test_shipped_entries_match_the_current_kernels():
    """Every entry in tuned/ was tuned against the kernels as they are (a kernel edit needs a re-tune)."""
    from pathlib import Path
    from kernelgen.templates import all_templates
    templates = all_templates()
    for path in sorted((Path(__file__).resolve().parents[1] / "tuned").glob("*.json")):
        for item in store.load(path).entries:
            template = templates[f"{item.op}.{item.kernel}"]
            assert item.template_hash == template.source_hash(), (path.name, item.op, item.kernel, item.shape)
            # and dispatch takes it: every value one the tuner could have run
            assert dispatch._outside_space(template, item, None) is None, (path.name, item.op, item.shape)
