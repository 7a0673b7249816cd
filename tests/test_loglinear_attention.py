"""Log-linear attention vs the float64 references (CPU interpreter: fp32 / fp16, tiny shapes).

Chunks of 8 or 16 positions on T=45 give four levels across chunks, ragged last chunks and a
partial first chunk when a sequence continues from a state at a position that is not a multiple
of the chunk.
"""
import itertools

import pytest
import torch

import kernelgen
from kernelgen.ops import loglinear_attention as llops
from kernelgen.ops.loglinear_attention import LogLinearState
from kernelgen.reference import loglinear_attention as ref
from kernelgen.templates import loglinear_attention as tmpl
from reference_utils import assert_close

TOL = {torch.float32: 1e-4, torch.float16: 5e-3}
GRAD_TOL = {torch.float32: 1e-4, torch.float16: 1e-2}


def _inputs(B=2, T=45, H=2, K=16, V=16, L=7, dtype=torch.float32, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen)
    k = torch.randn(B, T, H, K, generator=gen)
    v = torch.randn(B, T, H, V, generator=gen)
    g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, generator=gen) + 2.0)   # fp32 gates
    lam = torch.rand(B, T, H, L, generator=gen) + 0.5                               # fp32 level scales
    return ([x.to(device=device, dtype=dtype) for x in (q, k, v)] + [g.to(device), lam.to(device)])


def _config(chunk, tile=16):
    # tl.dot needs 16 rows on a GPU; chunks of 8 (more levels per token) run in the interpreter only
    chunk = chunk if not torch.cuda.is_available() else max(chunk, 16)
    return {"chunk": chunk, "scan_bk": tile, "scan_bv": tile, "scan_warps": 4, "out_bv": tile, "out_warps": 4,
            "num_stages": 1, "dqk_bk": tile, "dqk_bv": tile, "dqk_warps": 4, "dv_bk": tile, "dv_bv": tile,
            "dv_warps": 4, "stack_segment": 2}     # segments of 2 chunks: the carry across segments too


def _ref_grads(inputs, do, **kwargs):
    leaves = [x.detach().double().requires_grad_() for x in inputs]
    o, _ = ref.loglinear_attention_reference(*leaves, **kwargs)
    return o, torch.autograd.grad(o, leaves, do.double())


# --------------------------------------------------------------------------------------------
# the references agree with each other (pure torch, fast)
# --------------------------------------------------------------------------------------------
def test_recurrent_reference_matches_quadratic_reference():
    q, k, v, g, lam = (x.double() for x in _inputs(dtype=torch.float64))
    o1, (s1, p1) = ref.loglinear_attention_reference(q, k, v, g, lam, output_final_state=True)
    o2, (s2, p2) = ref.loglinear_attention_recurrent_reference(q, k, v, g, lam, output_final_state=True)
    assert_close("o", o2, o1, 1e-12)
    assert_close("final", s2, s1, 1e-12)
    # a state at a misaligned position continues the quadratic reference exactly
    cut = 13
    oa, sa = ref.loglinear_attention_reference(*(x[:, :cut] for x in (q, k, v, g, lam)), output_final_state=True)
    ob, sb = ref.loglinear_attention_reference(*(x[:, cut:] for x in (q, k, v, g, lam)), initial_state=sa,
                                               output_final_state=True)
    assert_close("split o", torch.cat([oa, ob], 1), o1, 1e-12)
    assert_close("split final", sb[0], s1, 1e-12)


def test_lambda_one_is_decayed_linear_attention_in_the_reference():
    q, k, v, g, lam = (x.double() for x in _inputs(dtype=torch.float64))
    o, _ = ref.loglinear_attention_reference(q, k, v, g, torch.ones_like(lam))
    G = g.cumsum(1).transpose(1, 2)                                        # [B, H, T]
    decay = torch.exp(G[..., :, None] - G[..., None, :]).tril()
    scores = torch.einsum("bthk,bshk->bhts", q, k) * decay * q.shape[-1] ** -0.5
    assert_close("o", o, torch.einsum("bhts,bshv->bthv", scores, v), 1e-12)


# --------------------------------------------------------------------------------------------
# kernels vs the references
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,chunk,inline", [(torch.float32, 8, 0), (torch.float16, 16, 0), (torch.float32, 8, 1)])
def test_forward_and_final_state(device, dtype, chunk, inline):
    q, k, v, g, lam = _inputs(dtype=dtype, device=device)
    config = {**_config(chunk), "out_inline_l1": inline}
    plan = tmpl.make_plan(2, 45, config["chunk"], None, None, device)
    o, final = tmpl.forward(q, k, v, g, lam, 16 ** -0.5, config, plan, final_levels=7)
    ro, (rs, _) = ref.loglinear_attention_reference(q, k, v, g, lam, output_final_state=True)
    assert_close("o", o, ro, TOL[dtype])
    assert_close("final_state", final, rs, TOL[dtype])


@pytest.mark.parametrize("dtype,chunk,dk_with_dv", [(torch.float32, 8, 0), (torch.float16, 16, 0),
                                                    (torch.float32, 8, 1), (torch.float16, 16, 1)])
def test_backward(device, dtype, chunk, dk_with_dv):
    inputs = _inputs(dtype=dtype, device=device, seed=1)
    do = torch.randn(2, 45, 2, 16).to(device=device, dtype=dtype)
    _, grads = _ref_grads(inputs, do)
    config = {**_config(chunk), "dk_with_dv": dk_with_dv}
    plan = tmpl.make_plan(2, 45, config["chunk"], None, None, device)
    out = tmpl.backward(*inputs, do, 16 ** -0.5, config, plan)
    for name, got, want in zip(("dq", "dk", "dv", "dg", "dlevel_scales"), out, grads):
        assert got.dtype == inputs[["dq", "dk", "dv", "dg", "dlevel_scales"].index(name)].dtype
        assert_close(name, got, want, GRAD_TOL[dtype])


def _defined_entries(lengths, chunk, levels):
    """(slots whose Block is defined, (slot, level) pairs whose ldec is) for sequences at 0."""
    blocks, decays, slot0 = [], [], 0
    for length in lengths:
        n_last = -(-length // chunk) - 1
        blocks += [slot0 + p for p in range(1, n_last + 1)]
        decays += [(slot0 + n, j) for n in range(n_last + 1) for j in range(levels) if (n >> j) & 1]
        slot0 += n_last + 1
    return blocks, decays


@pytest.mark.parametrize("T,chunk,tile,lengths,segment", [
    (45, 8, 16, None, 0), (203, 8, 16, None, 0), (77, 16, 16, None, 0),   # 0: automatic (here whole)
    (45, 8, 8, [5, 0, 25, 15], 0),        # packed, an empty sequence, several K/V tiles
    (203, 8, 16, None, 2), (203, 8, 16, None, 4), (128, 8, 16, None, 4),   # segments: 13, 7 and 4
    (90, 8, 8, [5, 0, 61, 24], 2), (203, 8, 16, None, 64),               # a segment longer than T
])
@pytest.mark.parametrize("pairs,in_blocks", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_block_stack_pass_equals_level_scans(device, T, chunk, tile, lengths, segment, pairs, in_blocks):
    """The one-pass Fenwick stack (whole sequences, or segments of chunks then the levels across
    them; a chunk a step or two; live blocks in an fp32 stack or read back from the stored blocks)
    builds the same blocks and decays as one scan per level."""
    B = 2 if lengths is None else 1
    _, k, v, g, _ = _inputs(B=B, T=T, device=device, seed=9)
    cu = None if lengths is None else torch.tensor([0] + lengths, device=device).cumsum(0)
    config = _config(chunk, tile if not torch.cuda.is_available() else 16)
    chunk = config["chunk"]
    plan = tmpl.make_plan(B, T, chunk, lengths, None, device)
    stacked, stack_dec = tmpl.block_states(k, v, g, plan, {**config, "stack": 1, "stack_segment": segment,
                                                           "stack_pairs": pairs, "stack_in_blocks": in_blocks}, cu)
    scanned, scan_dec = tmpl.block_states(k, v, g, plan, {**config, "stack": 0}, cu)
    slots, decays = _defined_entries(lengths or [T] * B, chunk, plan.levels)
    assert slots
    assert_close("blocks", stacked[slots], scanned[slots], 1e-5)
    for slot, level in decays:
        assert_close(f"ldec[{slot}, {level}]", stack_dec[slot, :, level], scan_dec[slot, :, level], 1e-5)


def test_automatic_segments_follow_the_program_count():
    assert tmpl._auto_segment(512) >= 1 << 20          # enough (tile, sequence·head) programs: whole
    assert tmpl._auto_segment(64) == 32


@pytest.mark.parametrize("dtype,chunk,T,tile,extra", [
    (torch.float32, 8, 203, 16, {}), (torch.float16, 16, 45, 16, {}), (torch.float32, 8, 64, 8, {}),
    (torch.float32, 8, 203, 16, {"stack_pairs": 1}), (torch.float16, 16, 45, 16, {"stack_pairs": 1}),
    (torch.float32, 8, 203, 16, {"out_inline_l1": 1}), (torch.float16, 16, 45, 16, {"out_inline_l1": 1}),
    (torch.float32, 8, 64, 8, {"stack_pairs": 1, "out_inline_l1": 1}),
    (torch.float16, 8, 203, 16, {"stack_in_blocks": 1}), (torch.float16, 16, 77, 16, {"stack_in_blocks": 1,
                                                                                       "stack_pairs": 1}),
    (torch.float32, 8, 203, 16, {"out_tma": 1, "out_tma_rows": 1, "out_inline_l1": 1, "out_maxnreg": 168}),
    (torch.float16, 16, 77, 16, {"out_tma": 1, "out_inline_l1": 1, "stack_in_blocks": 1, "out_maxnreg": 128}),
])
def test_forward_without_final_state(device, dtype, chunk, T, tile, extra):
    """The training path (no states in or out) builds its blocks in one stacked pass (a chunk a
    step or two; level-1 blocks there or in the output kernel; live blocks read back from the
    half-precision blocks). T = 64 with chunk 8 ends on a
    power of two of chunks. Blocks (and level-1 rows) by tensor descriptor (out_tma, out_tma_rows),
    under a register cap."""
    q, k, v, g, lam = _inputs(T=T, L=9, dtype=dtype, device=device, seed=3)
    config = {**_config(chunk, tile if not torch.cuda.is_available() else 16), **extra}
    plan = tmpl.make_plan(2, T, config["chunk"], None, None, device)
    o, final = tmpl.forward(q, k, v, g, lam, 16 ** -0.5, config, plan, out=_nan_like(v))
    ro, _ = ref.loglinear_attention_reference(q, k, v, g, lam)
    assert final is None
    assert_close("o", o, ro, TOL[dtype])


def test_forward_descriptors_fall_back_on_unaligned_rows(device):
    """k and v whose data starts off a 16-byte boundary (contiguous views at an odd offset) take
    the pointer path for the level-1 rows instead of a descriptor TMA cannot use."""
    q, k, v, g, lam = _inputs(T=203, L=9, device=device, seed=9)
    k, v = (torch.cat([x.new_zeros(1), x.flatten()])[1:].view_as(x) for x in (k, v))
    assert k.is_contiguous() and k.data_ptr() % 16 != 0
    config = {**_config(16, 16), "out_tma": 1, "out_tma_rows": 1, "out_inline_l1": 1}
    plan = tmpl.make_plan(2, 203, config["chunk"], None, None, device)
    o, _ = tmpl.forward(q, k, v, g, lam, 16 ** -0.5, config, plan, out=_nan_like(v))
    ro, _ = ref.loglinear_attention_reference(q, k, v, g, lam)
    assert_close("o", o, ro, TOL[torch.float32])


@pytest.mark.parametrize("extra", [{}, {"stack_pairs": 1, "out_inline_l1": 1},
                                   {"out_inline_l1": 1, "out_tma": 1, "out_tma_rows": 1}])
def test_packed_sequences_forward(device, extra):
    """Packed sequences (one empty) through the stacked block pass; descriptor reads of the
    blocks and of the previous chunk's rows (which stay in their sequence)."""
    q, k, v, g, lam = (x[:1].contiguous() for x in _inputs(T=90, L=8, device=device, seed=4))
    lengths = [5, 0, 61, 24]
    cu = torch.tensor([0] + lengths, device=device).cumsum(0)
    config = {**_config(8), **extra}
    plan = tmpl.make_plan(1, 90, config["chunk"], lengths, None, device)
    o, _ = tmpl.forward(q, k, v, g, lam, 16 ** -0.5, config, plan, cu_seqlens=cu, out=_nan_like(v))
    ro, _ = ref.loglinear_attention_reference(q, k, v, g, lam, cu_seqlens=cu)
    assert_close("o", o, ro, TOL[torch.float32])


# Tile combinations: K=32, V=48 (padded 64) with tiles below, equal to and (V) above the head
# size, so K/V loops run one trip or several and the last V tile is ragged. Each kernel's tiles are
# chosen apart from the others' (blocks written with one tiling are read with another). The first
# backward row is the failing pattern (dv: one K tile, several V tiles).
TILE_SHAPE = {"B": 1, "T": 77, "H": 2, "K": 32, "V": 48, "L": 8}
BWD_TILES = [  # (dv_bk, dv_bv, dqk_bk, dqk_bv, scan_bk, scan_bv)
    (32, 16, 16, 64, 32, 16),
    (16, 64, 32, 32, 16, 64),
    (32, 32, 32, 16, 16, 32),
    (16, 16, 16, 16, 32, 64),
]
FWD_TILES = [(16, 32, 64, 1), (64, 16, 32, 1), (32, 32, 16, 0)]  # (out_bv, scan_bk, scan_bv, out_tma)


def _tile_config(template, **tiles):
    config = {**_config(16), **tiles}
    assert template.check_config(config, TILE_SHAPE) is None, tiles
    return config


def _nan_like(x):
    return torch.full_like(x, float("nan"))     # an element a kernel never writes fails the check


def _check_tile_backward(device, seed, **tiles):
    """The backward on TILE_SHAPE with ``tiles`` over the test config, every output written and
    matching the float64 reference; returns the config."""
    B, T, H, K, V, L = TILE_SHAPE.values()
    inputs = _inputs(B=B, T=T, H=H, K=K, V=V, L=L, device=device, seed=seed)
    do = torch.randn(B, T, H, V, generator=torch.Generator().manual_seed(seed + 1)).to(device)
    _, grads = _ref_grads(inputs, do)
    config = _tile_config(tmpl.LogLinearBackward(), **tiles)
    plan = tmpl.make_plan(B, T, config["chunk"], None, None, device)
    out = tuple(_nan_like(x) for x in inputs)
    tmpl.backward(*inputs, do, K ** -0.5, config, plan, out=out)
    for name, got, want in zip(("dq", "dk", "dv", "dg", "dlevel_scales"), out, grads):
        assert_close(name, got, want, GRAD_TOL[torch.float32])
    return config


@pytest.mark.parametrize("dv_bk,dv_bv,dqk_bk,dqk_bv,scan_bk,scan_bv", BWD_TILES)
def test_backward_tile_combinations(device, dv_bk, dv_bv, dqk_bk, dqk_bv, scan_bk, scan_bv):
    _check_tile_backward(device, 5, dv_bk=dv_bk, dv_bv=dv_bv, dqk_bk=dqk_bk, dqk_bv=dqk_bv, scan_bk=scan_bk,
                         scan_bv=scan_bv)


@pytest.mark.parametrize("rscan_bk,rscan_bv", [(32, 16), (16, 64), (0, 32)])
def test_backward_level_scan_tiles(device, rscan_bk, rscan_bv):
    """The level scans on tiles of their own (rscan_bk / rscan_bv; 0: the block pass's), apart
    from the block pass's 16 x 32 and the dq/dv kernels' tiles."""
    _check_tile_backward(device, 23, scan_bk=16, scan_bv=32, rscan_bk=rscan_bk, rscan_bv=rscan_bv, dv_bk=32,
                         dv_bv=16, dqk_bk=16, dqk_bv=64)
    template = tmpl.LogLinearBackward()
    assert "padded size" in template.check_config({**_config(16), "rscan_bv": 128}, TILE_SHAPE)


@pytest.mark.parametrize("chain,first", [(0, 0), (1, 0), (1, 1), (0, 1)])
def test_backward_dk_with_dv(device, chain, first):
    """dk written by the dv kernel (whole V per program, V ragged), the later-query states summed
    in registers or chained on dk's and dv's accumulators, the scores in the main loop or before
    it (dv_at_first)."""
    config = _check_tile_backward(device, 11, dv_bk=32, dv_bv=64, dqk_bk=16, dqk_bv=32, dk_with_dv=1,
                                  dv_chain=chain, dv_at_first=first)
    template = tmpl.LogLinearBackward()
    assert "whole V" in template.check_config({**config, "dv_bv": 32}, TILE_SHAPE)
    # what Triton 3.6 miscompiled on the H100: dk in dv on K tiles narrower than 64 that do not
    # span K; the scores' own loop over several K tiles
    assert "miscompiled" in template.check_config({**config, "dv_bk": 16}, TILE_SHAPE)
    assert "several K tiles" in template.check_config({**config, "dk_with_dv": 0, "dv_bk": 16, "dv_at_first": 1},
                                                      TILE_SHAPE)
    assert template.check_config({**config, "dv_bk": 128, "dv_bv": 128}, {**TILE_SHAPE, "K": 128, "V": 128}) is None


@pytest.mark.parametrize("dv_bk,dv_bv,first", [(16, 64, 0), (32, 32, 0), (32, 16, 0), (32, 16, 1)])
def test_backward_dv_chain(device, dv_bk, dv_bv, first):
    """dv as one product per later-query state chained on its accumulator (dv_chain), the states
    by tensor descriptor (K tiles that divide K) with tiles wider than, equal to and narrower than
    V = 48; the scores and Aᵀ·dO before the states' products (dv_at_first) or after."""
    _check_tile_backward(device, 17, dv_bk=dv_bk, dv_bv=dv_bv, dqk_bk=32, dqk_bv=32, dv_chain=1, dv_at_first=first)


@pytest.mark.parametrize("dqk_bk,dqk_bv,dk_with_dv,outer,inline,tma", [
    (16, 16, 0, 1, 0, 0), (32, 32, 0, 0, 0, 1), (16, 64, 0, 1, 1, 1), (32, 16, 1, 1, 1, 0), (16, 16, 1, 0, 0, 0),
    (32, 16, 0, 1, 1, 0), (16, 64, 1, 1, 0, 1)])
def test_backward_dq_level_layouts(device, dqk_bk, dqk_bv, dk_with_dv, outer, inline, tma):
    """dq/dλ with each level's product summed over the V tiles first (dqk_levels_outer, the default)
    or per (level, V tile); level-1 blocks from the previous chunk's rows (dq_inline_l1) or stored
    by the block pass; blocks by tensor descriptor (dqk_tma: levels outer only, tiles wider than V
    zero-filled) or pointer; V = 48: ragged tiles."""
    _check_tile_backward(device, 13, dqk_bk=dqk_bk, dqk_bv=dqk_bv, dk_with_dv=dk_with_dv,
                         dv_bk=32 if dk_with_dv else 16, dv_bv=64, dqk_levels_outer=outer, dq_inline_l1=inline,
                         dqk_tma=tma)


@pytest.mark.parametrize("dk_with_dv,inline,dv_first", [(1, 1, 1), (1, 0, 0), (0, 0, 0)])
def test_backward_dq_intra_first(device, dk_with_dv, inline, dv_first):
    """dq's in-chunk pairs before its levels (dq_intra_first), dk written by the dv kernel (its
    states chained and its scores first, the pairing offered at K = V = 64, or summed) or by the
    dq/dk kernel beside dq, level-1 blocks built by dq or stored."""
    _check_tile_backward(device, 37, dqk_bk=32, dqk_bv=16, dq_intra_first=1, dk_with_dv=dk_with_dv, dv_bk=32,
                         dv_bv=64, dq_inline_l1=inline, dv_chain=dv_first, dv_at_first=dv_first)


@pytest.mark.parametrize("inline", [0, 1])
def test_packed_sequences_backward_dq_inline_l1(device, inline):
    """Packed sequences (one empty, one of a single chunk) with level-1 blocks built by dq."""
    q, k, v, g, lam = (x[:1].contiguous() for x in _inputs(T=90, L=8, device=device, seed=5))
    do = torch.randn(1, 90, 2, 16, generator=torch.Generator().manual_seed(6)).to(device)
    lengths = [5, 0, 61, 24]
    cu = torch.tensor([0] + lengths, device=device).cumsum(0)
    _, grads = _ref_grads((q, k, v, g, lam), do, cu_seqlens=cu)
    config = {**_config(8), "dq_inline_l1": inline, "dqk_tma": 1}
    plan = tmpl.make_plan(1, 90, config["chunk"], lengths, None, device)
    out = tmpl.backward(q, k, v, g, lam, do, 16 ** -0.5, config, plan, cu_seqlens=cu)
    for name, got, want in zip(("dq", "dk", "dv", "dg", "dlevel_scales"), out, grads):
        assert_close(name, got, want, GRAD_TOL[torch.float32])


@pytest.mark.parametrize("out_bv,scan_bk,scan_bv,tma", FWD_TILES)
def test_forward_tile_combinations(device, out_bv, scan_bk, scan_bv, tma):
    """Descriptor tiles wider than V (zero-filled past the tensor, the next head's columns
    dropped at the store) as well as pointer tiles."""
    B, T, H, K, V, L = TILE_SHAPE.values()
    q, k, v, g, lam = _inputs(B=B, T=T, H=H, K=K, V=V, L=L, device=device, seed=7)
    config = _tile_config(tmpl.LogLinearForward(), out_bv=out_bv, scan_bk=scan_bk, scan_bv=scan_bv, out_tma=tma,
                          out_tma_rows=tma,
                          out_inline_l1=1)
    plan = tmpl.make_plan(B, T, config["chunk"], None, None, device)
    o, final = tmpl.forward(q, k, v, g, lam, K ** -0.5, config, plan, final_levels=L, out=_nan_like(v))
    ro, (rs, _) = ref.loglinear_attention_reference(q, k, v, g, lam, output_final_state=True)
    assert_close("o", o, ro, TOL[torch.float32])
    assert_close("final_state", final, rs, TOL[torch.float32])


def test_op_autograd_ragged_and_unequal_head_sizes(device):
    # the public op with its default config: T=21 is not a chunk multiple, K != V, scale given
    gen = torch.Generator().manual_seed(3)
    q, k = (torch.randn(1, 21, 2, 16, generator=gen) for _ in range(2))
    v = torch.randn(1, 21, 2, 32, generator=gen)
    g = -torch.rand(1, 21, 2, generator=gen) * 0.2
    lam = torch.rand(1, 21, 2, 6, generator=gen) + 0.5
    inputs = [x.to(device).requires_grad_() for x in (q, k, v, g, lam)]
    o, state = kernelgen.loglinear_attention(*inputs, scale=0.3)
    assert state is None
    do = torch.randn_like(o)
    ro, grads = _ref_grads(inputs, do, scale=0.3)
    assert_close("o", o, ro, 1e-4)
    for name, got, want in zip(("dq", "dk", "dv", "dg", "dlevel_scales"), torch.autograd.grad(o, inputs, do), grads):
        assert_close(name, got, want, 1e-4)


def test_lambda_one_equals_linear_attention(device):
    q, k, v, g, lam = _inputs(device=device)
    ones = torch.ones_like(lam)
    o, _ = kernelgen.loglinear_attention(q, k, v, g, ones)
    G = g.double().cumsum(1).transpose(1, 2)
    decay = torch.exp(G[..., :, None] - G[..., None, :]).tril()
    scores = torch.einsum("bthk,bshk->bhts", q.double(), k.double()) * decay * 16 ** -0.5
    assert_close("o vs float64 decayed linear attention", o, torch.einsum("bhts,bshv->bthv", scores, v.double()),
                 1e-4)
    try:
        la, _ = kernelgen.linear_attention(q, k, v, g=g)
    except (ImportError, AttributeError) as error:   # the sibling family may not be there
        pytest.skip(f"kernelgen.linear_attention unavailable: {error}")
    assert_close("o vs kernelgen.linear_attention", o, la, 1e-4)


def test_inference_call_equals_autograd_call(device):
    """Without gradients the op skips its autograd node; outputs and states are the same bits."""
    q, k, v, g, lam = _inputs(device=device, seed=6)
    o, state = kernelgen.loglinear_attention(*(x.clone().requires_grad_() for x in (q, k, v, g, lam)),
                                             output_final_state=True)
    with torch.no_grad():
        o_inf, state_inf = kernelgen.loglinear_attention(q, k, v, g, lam, output_final_state=True)
    assert o_inf.grad_fn is None and o.grad_fn is not None
    assert torch.equal(o.detach(), o_inf) and torch.equal(state.states.detach(), state_inf.states)
    assert torch.equal(state.position, state_inf.position)


@pytest.mark.parametrize("cut", [13, 32])
def test_split_sequence_equals_one_call(device, cut):
    q, k, v, g, lam = _inputs(device=device, seed=4)
    full, full_state = kernelgen.loglinear_attention(q, k, v, g, lam, output_final_state=True)
    first, state = kernelgen.loglinear_attention(*(x[:, :cut] for x in (q, k, v, g, lam)), output_final_state=True)
    assert state.position.tolist() == [cut, cut] and state.max_position == cut
    second, end_state = kernelgen.loglinear_attention(*(x[:, cut:] for x in (q, k, v, g, lam)), initial_state=state,
                                                      output_final_state=True)
    assert_close("o", torch.cat([first, second], 1), full, 1e-4)
    assert_close("final_state", end_state.states, full_state.states, 1e-4)
    assert end_state.position.tolist() == [45, 45]


def test_decode_steps_equal_full_op(device):
    q, k, v, g, lam = _inputs(B=2, T=20, device=device, seed=5)
    full, full_state = kernelgen.loglinear_attention(q, k, v, g, lam, output_final_state=True)
    _, state = kernelgen.loglinear_attention(*(x[:, :5] for x in (q, k, v, g, lam)), output_final_state=True)
    levels = state.states.shape[2]
    outs = []
    for t in range(5, 20):
        o, state = kernelgen.loglinear_attention_step(q[:, t], k[:, t], v[:, t], g[:, t], lam[:, t], state)
        outs.append(o)
    assert state.states.shape[2] >= levels and state.position.tolist() == [20, 20]
    assert_close("o", torch.stack(outs, 1), full[:, 5:], 1e-4)
    assert_close("states", state.states[:, :, :full_state.states.shape[2]], full_state.states, 1e-4)
    # [N, 1, H, *] token layout and a (states, position) pair work too; a 1-level state grows
    o, pair = kernelgen.loglinear_attention_step(q[:, :1], k[:, :1], v[:, :1], g[:, :1], lam[:, :1],
                                                 (torch.zeros(2, 2, 1, 16, 16, device=device),
                                                  torch.zeros(2, dtype=torch.int64, device=device)))
    assert o.shape == (2, 1, 2, 16) and pair[1].tolist() == [1, 1] and pair[0].shape[2] == 2
    assert_close("first token", o, full[:, :1], 1e-4)


def test_varlen_forward_backward_and_state(device):
    q, k, v, g, lam = (x[:1].contiguous() for x in _inputs(device=device, seed=6))
    cu = torch.tensor([0, 5, 5, 30, 45], device=device)
    inputs = [x.requires_grad_() for x in (q, k, v, g, lam)]
    o, state = kernelgen.loglinear_attention(*inputs, output_final_state=True, cu_seqlens=cu)
    ro, (rs, rp) = ref.loglinear_attention_reference(q, k, v, g, lam, output_final_state=True, cu_seqlens=cu)
    assert_close("o", o, ro, 1e-4)
    assert_close("final_state", state.states, rs, 1e-4)
    assert state.position.tolist() == [5, 0, 25, 15]
    do = torch.randn_like(o)
    _, grads = _ref_grads(inputs, do, cu_seqlens=cu)
    for name, got, want in zip(("dq", "dk", "dv", "dg", "dlevel_scales"), torch.autograd.grad(o, inputs, do), grads):
        assert_close(name, got, want, 1e-4)
    # packed sequences continued from the states (positions 5, 0, 25, 15), then 3, 9, 0, 6 tokens
    with torch.no_grad():
        more = [x.detach()[:, :18].contiguous() for x in inputs]
        cu2 = torch.tensor([0, 3, 12, 12, 18], device=device)
        o2, state2 = kernelgen.loglinear_attention(*more, initial_state=state, output_final_state=True, cu_seqlens=cu2)
    so, (ss, sp) = ref.loglinear_attention_reference(*more, initial_state=(rs, rp), output_final_state=True,
                                                     cu_seqlens=cu2)
    assert_close("continued o", o2, so, 1e-4)
    assert_close("continued state", state2.states, ss[:, :, :state2.states.shape[2]], 1e-4)


# --------------------------------------------------------------------------------------------
# gradients through the states (initial_state in, final_state out)
# --------------------------------------------------------------------------------------------
def _force_chunk(monkeypatch, chunk, **extra):
    """The op's forward and backward run with chunks of ``chunk`` (16-wide tiles)."""
    original = llops.config_for
    monkeypatch.setattr(llops, "config_for",
                        lambda template, *args: {**original(template, *args), **_config(chunk), **extra})


def _prefix_states(positions, H=2, K=16, V=32, L=8, seed=10):
    """Valid fp32 states at ``positions`` (one per sequence): the float64 reference's final
    states of random prefixes, padded to one level count."""
    states = []
    for i, length in enumerate(positions):
        prefix = _inputs(B=1, T=length, H=H, K=K, V=V, L=L, seed=seed + i)
        _, (found, _) = ref.loglinear_attention_reference(*prefix, output_final_state=True)
        states.append(found)
    levels = max(s.shape[2] for s in states)
    states = [torch.nn.functional.pad(s, (0, 0, 0, 0, 0, levels - s.shape[2])) for s in states]
    return torch.cat(states).float(), torch.tensor(positions, dtype=torch.int64)


def _grads(loss, leaves):
    """Gradients with structural zeros (a loss that ignores a leaf) as zero tensors."""
    found = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [torch.zeros_like(x) if d is None else d for x, d in zip(leaves, found)]


NAMES = ("dq", "dk", "dv", "dg", "dlevel_scales", "dinitial_state")


def _count_block_builds(monkeypatch) -> list:
    """A list that gains an entry each time the block pass (kernel 1) runs, forward or backward."""
    builds = []
    block_states = tmpl.block_states
    monkeypatch.setattr(tmpl, "block_states", lambda *a, **kw: builds.append(1) or block_states(*a, **kw))
    return builds


@pytest.mark.parametrize("fwd_extra,bwd_extra,reused", [
    ({"out_inline_l1": 0}, {"dq_inline_l1": 0}, True),
    ({"out_inline_l1": 1}, {"dq_inline_l1": 1}, True),    # level-1 blocks skipped, built inline in dq
    ({"out_inline_l1": 1}, {"dq_inline_l1": 0}, False),   # the backward needs them: rebuilt
    ({"out_inline_l1": 0}, {"chunk": 8 if not torch.cuda.is_available() else 32}, False)])   # another chunk: rebuilt
def test_save_blocks(device, monkeypatch, fwd_extra, bwd_extra, reused):
    """save_blocks: the backward takes the forward's blocks when its config can read them, and
    rebuilds them otherwise; the gradients match the float64 reference either way (ragged T,
    packed sequences with an empty one)."""
    original = llops.config_for

    def config_for(template, *args):
        extra = fwd_extra if template is llops.FORWARD else {**fwd_extra, **bwd_extra}
        return {**original(template, *args), **_config(16), **extra}
    monkeypatch.setattr(llops, "config_for", config_for)
    builds = _count_block_builds(monkeypatch)
    for cu in (None, torch.tensor([0, 20, 20, 45], dtype=torch.int32, device=device)):
        inputs = _inputs(B=1 if cu is not None else 2, device=device, seed=4)
        leaves = [x.clone().requires_grad_() for x in inputs]
        builds.clear()
        o, _ = kernelgen.loglinear_attention(*leaves, cu_seqlens=cu, save_blocks=True)
        do = torch.randn_like(o)
        grads = torch.autograd.grad(o, leaves, do)
        assert len(builds) == (1 if reused else 2)
        _, want = _ref_grads(inputs, do, cu_seqlens=cu)
        for name, got, ref_grad in zip(NAMES, grads, want):
            assert_close(name, got, ref_grad, GRAD_TOL[torch.float32])


@pytest.mark.parametrize("T,cut,chunk,dk_with_dv", [(37, 13, 8, 0), (37, 16, 16, 0), (70, 23, 16, 0), (70, 64, 16, 0),
                                                   (70, 23, 16, 1)])
def test_split_sequence_gradients_equal_one_call(device, monkeypatch, T, cut, chunk, dk_with_dv):
    # the second half continues from the first half's final state: Σ of both losses has the
    # gradients of one call over the whole sequence (the state carries them back to the first half)
    _force_chunk(monkeypatch, chunk, dk_with_dv=dk_with_dv, dv_bv=32)
    inputs = _inputs(B=2, T=T, V=32, L=8, device=device, seed=7)
    do = torch.randn(2, T, 2, 32, generator=torch.Generator().manual_seed(8)).to(device)
    leaves = [x.requires_grad_() for x in inputs]
    first, state = kernelgen.loglinear_attention(*(x[:, :cut] for x in leaves), output_final_state=True)
    second, _ = kernelgen.loglinear_attention(*(x[:, cut:] for x in leaves), initial_state=state)
    split = _grads((first * do[:, :cut]).sum() + (second * do[:, cut:]).sum(), leaves)
    whole, _ = kernelgen.loglinear_attention(*leaves)
    one_call = _grads((whole * do).sum(), leaves)
    _, want = _ref_grads(inputs, do)
    for name, got, same, ref_grad in zip(NAMES, split, one_call, want):
        assert_close(f"{name} split vs one call", got, same, 1e-4)
        assert_close(f"{name} split vs reference", got, ref_grad, 1e-4)


@pytest.mark.parametrize("positions,T,chunk,token_chunks", [([13, 13], 37, 8, False), ([13, 32], 37, 16, False),
                                                           ([5, 64], 70, 16, False), ([13, 32], 37, 16, True)])
def test_initial_state_and_final_state_gradients(device, monkeypatch, positions, T, chunk, token_chunks):
    # a loss on o and on final_state.states, rows continuing from different positions; with
    # token_chunks the initial state's backward takes its distance spans a token at a time
    _force_chunk(monkeypatch, chunk)
    if token_chunks:
        monkeypatch.setattr(llops, "_SHARE_CHUNK_VALUES", 1)   # one token a chunk
    inputs = _inputs(B=2, T=T, V=32, L=9, device=device, seed=9)
    states, position = _prefix_states(positions, L=9)
    leaves = [x.requires_grad_() for x in inputs] + [states.to(device).requires_grad_()]
    o, final = kernelgen.loglinear_attention(*leaves[:5], initial_state=(leaves[5], position.to(device)),
                                             output_final_state=True)
    gen = torch.Generator().manual_seed(10)
    do = torch.randn(o.shape, generator=gen).to(device)
    d_final = torch.randn(final.states.shape, generator=gen).to(device)
    got = _grads((o * do).sum() + (final.states * d_final).sum(), leaves)

    ref_leaves = [x.detach().double().requires_grad_() for x in leaves]
    ro, (rs, _) = ref.loglinear_attention_reference(*ref_leaves[:5], initial_state=(ref_leaves[5], position),
                                                    output_final_state=True)
    assert_close("o", o, ro, 1e-4)
    assert_close("final_state", final.states, rs, 1e-4)
    want = _grads((ro * do.double()).sum() + (rs * d_final.double()).sum(), ref_leaves)
    for name, g_got, g_want in zip(NAMES, got, want):
        assert_close(name, g_got, g_want, 1e-4)


@pytest.mark.parametrize("extra_levels", [0, 4])
def test_initial_state_with_other_level_counts(device, monkeypatch, extra_levels):
    # level_scales with more columns than the positions need (tokens far from the start merge every
    # state level into their own column), and states with fewer or (zero-padded) more levels than L
    _force_chunk(monkeypatch, 16)
    positions, L = [13, 32], 11
    inputs = _inputs(B=2, T=37, V=32, L=L, device=device, seed=11)
    states, position = _prefix_states(positions, L=9)
    needed = max(positions).bit_length() + 1                # 7: the tokens of 32 + 37 reach distance 7
    assert not states[:, :, needed:].any()
    states = torch.nn.functional.pad(states[:, :, :needed], (0, 0, 0, 0, 0, extra_levels))
    leaves = [x.requires_grad_() for x in inputs] + [states.to(device).requires_grad_()]
    o, _ = kernelgen.loglinear_attention(*leaves[:5], initial_state=(leaves[5], position.to(device)))
    do = torch.randn(o.shape, generator=torch.Generator().manual_seed(12)).to(device)
    got = _grads((o * do).sum(), leaves)
    ref_leaves = [x.detach().double().requires_grad_() for x in leaves]
    ro, _ = ref.loglinear_attention_reference(*ref_leaves[:5], initial_state=(ref_leaves[5], position))
    assert_close("o", o, ro, 1e-4)
    want = _grads((ro * do.double()).sum(), ref_leaves)
    for name, g_got, g_want in zip(NAMES, got, want):
        assert_close(name, g_got, g_want, 1e-4)


def test_final_state_only_loss(device, monkeypatch):
    # o unused: only the final state's own gradients (no kernel backward); q and λ get none
    _force_chunk(monkeypatch, 16)
    inputs = _inputs(B=2, T=37, V=32, L=8, device=device, seed=11)
    leaves = [x.requires_grad_() for x in inputs]
    _, final = kernelgen.loglinear_attention(*leaves, output_final_state=True)
    d_final = torch.randn(final.states.shape, generator=torch.Generator().manual_seed(12)).to(device)
    got = torch.autograd.grad((final.states * d_final).sum(), leaves, allow_unused=True)
    assert got[0] is None and got[4] is None
    ref_leaves = [x.detach().double().requires_grad_() for x in inputs]
    _, (rs, _) = ref.loglinear_attention_reference(*ref_leaves, output_final_state=True)
    want = _grads((rs * d_final.double()).sum(), ref_leaves)
    for name, g_got, g_want in zip(NAMES[1:4], got[1:4], want[1:4]):
        assert_close(name, g_got, g_want, 1e-4)


def test_varlen_state_gradients(device, monkeypatch):
    # packed sequences (one empty) continued from states at positions 5, 0, 25, 3 (misaligned)
    _force_chunk(monkeypatch, 8)
    q, k, v, g, lam = (x[:1].contiguous() for x in _inputs(B=1, T=45, V=32, L=7, device=device, seed=13))
    cu = torch.tensor([0, 5, 5, 30, 45], device=device)
    states, position = _prefix_states([5, 0, 25, 3], L=7)
    leaves = [x.requires_grad_() for x in (q, k, v, g, lam)] + [states.to(device).requires_grad_()]
    o, final = kernelgen.loglinear_attention(*leaves[:5], initial_state=(leaves[5], position.to(device)),
                                             output_final_state=True, cu_seqlens=cu)
    gen = torch.Generator().manual_seed(14)
    do = torch.randn(o.shape, generator=gen).to(device)
    d_final = torch.randn(final.states.shape, generator=gen).to(device)
    got = _grads((o * do).sum() + (final.states * d_final).sum(), leaves)
    ref_leaves = [x.detach().double().requires_grad_() for x in leaves]
    ro, (rs, _) = ref.loglinear_attention_reference(*ref_leaves[:5], initial_state=(ref_leaves[5], position),
                                                    output_final_state=True, cu_seqlens=cu)
    assert_close("o", o, ro, 1e-4)
    assert_close("final_state", final.states, rs, 1e-4)
    want = _grads((ro * do.double()).sum() + (rs * d_final.double()).sum(), ref_leaves)
    for name, g_got, g_want in zip(NAMES, got, want):
        assert_close(name, g_got, g_want, 1e-4)


def test_state_gradients_fp16(device):
    # halves: fp16 q/k/v with fp32 gates, the op's default config, loss on o and the final state
    inputs = _inputs(B=2, T=37, V=32, L=8, dtype=torch.float16, device=device, seed=15)
    states, position = _prefix_states([13, 13])
    leaves = [x.requires_grad_() for x in inputs] + [states.to(device).requires_grad_()]
    o, final = kernelgen.loglinear_attention(*leaves[:5], initial_state=(leaves[5], position.to(device)),
                                             output_final_state=True)
    gen = torch.Generator().manual_seed(16)
    do = torch.randn(o.shape, generator=gen).to(device)
    d_final = torch.randn(final.states.shape, generator=gen).to(device)
    got = _grads((o.float() * do).sum() + (final.states * d_final).sum(), leaves)
    ref_leaves = [x.detach().double().requires_grad_() for x in leaves]
    ro, (rs, _) = ref.loglinear_attention_reference(*ref_leaves[:5], initial_state=(ref_leaves[5], position),
                                                    output_final_state=True)
    want = _grads((ro * do.double()).sum() + (rs * d_final.double()).sum(), ref_leaves)
    for name, g_got, g_want in zip(NAMES, got, want):
        assert g_got.dtype == leaves[NAMES.index(name)].dtype
        assert_close(name, g_got, g_want, GRAD_TOL[torch.float16])


# --------------------------------------------------------------------------------------------
# launches past CUDA's grid limit: (sequence, head) pairs on axis y or z, in groups
# --------------------------------------------------------------------------------------------
GRID_CAP = 7      # five sequences of two heads: a group of three, then one of two


class _GridSpy:
    """A template kernel that records the grid of each launch as (kernel name, grid)."""

    def __init__(self, name, kernel, launches):
        self.name, self.kernel, self.launches = name, kernel, launches

    def __getitem__(self, grid):
        self.launches.append((self.name, tuple(grid)))
        return self.kernel[grid]


def _cap_grids(monkeypatch, cap=GRID_CAP) -> list:
    """Lower the template's grid cap to ``cap``; the list receives every launch of its kernels."""
    monkeypatch.setattr(tmpl, "MAX_GRID_YZ", cap)
    launches = []
    for name, kernel in list(vars(tmpl).items()):
        if name.endswith("_kernel") and hasattr(kernel, "__getitem__"):
            monkeypatch.setattr(tmpl, name, _GridSpy(name, kernel, launches))
    return launches


def _assert_split_within(launches, cap=GRID_CAP, split=("_fwd_level_scan_kernel", "_fwd_block_stack_kernel",
                                                       "_bwd_level_scan_kernel", "_step_kernel")):
    """No grid's y or z extent passes ``cap``, and the kernels in ``split`` that ran ran more than once."""
    assert launches
    for name, grid in launches:
        assert max(grid[1:], default=1) <= cap, f"{name} launched with grid {grid} past the cap {cap}"
    ran = [name for name, _ in launches]
    assert any(ran.count(name) > 1 for name in split if name in ran), ran


def test_launch_groups_fit_the_cap(device, monkeypatch):
    monkeypatch.setattr(tmpl, "MAX_GRID_YZ", GRID_CAP)
    assert tmpl.launch_groups(8, 2) == [(0, 3), (3, 3), (6, 2)]
    assert tmpl.launch_groups(3, 2) == [(0, 3)] and tmpl.launch_groups(7, 1) == [(0, 7)]
    assert tmpl.launch_groups(0, 2) == []
    assert [g.whole for g in tmpl.sequence_groups(3, 2)] == [True]
    assert [g.whole for g in tmpl.sequence_groups(4, 2)] == [False, False]
    # more heads than the cap: no group of whole sequences fits, and the call says why
    monkeypatch.setattr(tmpl, "MAX_GRID_YZ", 1)
    with pytest.raises(ValueError, match=r"H must be <= 1 .*got H=2"):
        kernelgen.loglinear_attention(*_inputs(B=1, T=9, device=device))


def _split_run_inputs(device, packed: bool, with_states: bool):
    """Five sequences of two heads, their initial states (at misaligned positions) or None, and
    cu_seqlens or None: dense rows of 29 tokens, or packed with an empty one. The second launch
    group's sequences run three and four chunks (chunk 3 reads a block that ended a chunk before),
    so a launch that read or wrote another group's slots would show."""
    if packed:
        inputs = [x[:1].contiguous() for x in _inputs(B=1, T=65, L=9, device=device, seed=17)]
        cu = torch.tensor([0, 5, 5, 19, 46, 65], device=device)
    else:
        inputs, cu = _inputs(B=5, T=29, L=9, device=device, seed=17), None
    states = _prefix_states([13, 3, 5, 32, 16], V=16, L=9, seed=18) if with_states else None
    return inputs, states, cu


def _op_forward_backward(inputs, states, cu, with_states: bool):
    """o, the final state (or None) and the gradients of every input (initial states too) under a
    loss on o and on the final state."""
    leaves = [x.clone().requires_grad_() for x in inputs]
    init = None
    if with_states:
        leaves.append(states[0].to(inputs[0].device).requires_grad_())
        init = (leaves[5], states[1].to(inputs[0].device))
    o, final = kernelgen.loglinear_attention(*leaves[:5], initial_state=init, output_final_state=with_states,
                                             cu_seqlens=cu)
    gen = torch.Generator().manual_seed(19)
    loss = (o * torch.randn(o.shape, generator=gen).to(o.device)).sum()
    if with_states:
        loss = loss + (final.states * torch.randn(final.states.shape, generator=gen).to(o.device)).sum()
    return o.detach(), final.states.detach() if with_states else None, _grads(loss, leaves)


@pytest.mark.parametrize("packed,with_states,extra", [
    (False, False, {"stack_in_blocks": 0}),   # stacked block pass (live blocks in its fp32 stack), segments
    (False, True, {}),                         # level scans, with a state in and out
    (True, False, {}),                         # packed: cu_seqlens cut per group, its rows absolute
    (True, True, {})])
def test_split_launches_equal_one_launch(device, monkeypatch, packed, with_states, extra):
    """Past the grid cap the scans, the block passes and the backward's query-state scan launch per
    group of sequences; o, the final state and every gradient are the bits of one launch."""
    _force_chunk(monkeypatch, 8, **extra)
    inputs, states, cu = _split_run_inputs(device, packed, with_states)
    o, final, grads = _op_forward_backward(inputs, states, cu, with_states)
    launches = _cap_grids(monkeypatch)
    split_o, split_final, split_grads = _op_forward_backward(inputs, states, cu, with_states)
    _assert_split_within(launches)
    assert torch.equal(split_o, o)
    if with_states:
        assert torch.equal(split_final, final)
    for name, got, want in zip(NAMES, split_grads, grads):
        assert torch.equal(got, want), name


def test_split_decode_steps_equal_one_launch(device, monkeypatch):
    """Decode steps past the grid cap (sequences at different positions, in place and into a new
    buffer) give the bits of one launch."""
    states, position = _prefix_states([13, 3, 5, 32, 16], V=16, L=9, seed=18)
    q, k, v, g, lam = (x[:, 0] for x in _inputs(B=5, T=1, L=9, device=device, seed=20))
    config = {"block_v": 16, "num_warps": 4}

    def steps():
        found = (states.clone().to(device), position.clone().to(device))
        outs = []
        for _ in range(3):
            o, found = kernelgen.loglinear_attention_step(q, k, v, g, lam, found)
            outs.append(o)
        fresh = torch.full_like(found[0], float("nan"))
        outs.append(tmpl.step(q, k, v, g, lam, found[0], found[1], 0.25, config, new_states=fresh))
        return outs, found[0], fresh

    outs, final, fresh = steps()
    launches = _cap_grids(monkeypatch)
    split_outs, split_final, split_fresh = steps()
    _assert_split_within(launches)
    assert all(torch.equal(a, b) for a, b in zip(split_outs, outs))
    assert torch.equal(split_final, final) and torch.equal(split_fresh, fresh)


def test_block_segments_fit_the_cap(device, monkeypatch):
    """Segments of the stacked pass sit on axis z: a sequence of more segments than the cap takes
    longer ones (16 chunks in segments of 2: 8 past a cap of 7, so 4 of 4). One sequence a launch
    at a cap equal to H."""
    launches = _cap_grids(monkeypatch)
    q, k, v, g, lam = _inputs(B=2, T=121, H=GRID_CAP, L=9, device=device, seed=21)
    config = _config(8)
    plan = tmpl.make_plan(2, 121, config["chunk"], None, None, device)
    o, _ = tmpl.forward(q, k, v, g, lam, 16 ** -0.5, config, plan, out=_nan_like(v))
    _assert_split_within(launches)
    assert launches.count(("_fwd_block_stack_kernel", (1, GRID_CAP, 4))) == 2
    ro, _ = ref.loglinear_attention_reference(q, k, v, g, lam)
    assert_close("o", o, ro, TOL[torch.float32])


# --------------------------------------------------------------------------------------------
# bad inputs
# --------------------------------------------------------------------------------------------
def test_bad_inputs(device):
    q, k, v, g, lam = _inputs(B=1, T=9, device=device)
    with pytest.raises(ValueError, match=r"L >= .* = 5 levels"):
        kernelgen.loglinear_attention(q, k, v, g, lam[..., :4])
    with pytest.raises(ValueError, match="k must be"):
        kernelgen.loglinear_attention(q, k[:, :, :1], v, g, lam)
    with pytest.raises(ValueError, match="g must be"):
        kernelgen.loglinear_attention(q, k, v, g[..., None], lam)
    with pytest.raises(TypeError, match="v must have the dtype of q"):
        kernelgen.loglinear_attention(q, k, v.half(), g, lam)
    with pytest.raises(TypeError, match="g must have dtype"):
        kernelgen.loglinear_attention(q, k, v, g.long(), lam)
    with pytest.raises(ValueError, match="head size K"):
        big = _inputs(B=1, T=3, K=512, device=device)
        kernelgen.loglinear_attention(*big[:2], *_inputs(B=1, T=3, device=device)[2:])
    with pytest.raises(ValueError, match="cu_seqlens must rise"):
        kernelgen.loglinear_attention(q, k, v, g, lam, cu_seqlens=torch.tensor([0, 4, 8], device=device))
    with pytest.raises(TypeError, match="initial_state must be"):
        kernelgen.loglinear_attention(q, k, v, g, lam, initial_state=torch.zeros(1))
    state = LogLinearState.zeros(1, 2, 7, 16, 16, device=device)
    with pytest.raises(TypeError, match="initial_state.states must be float32"):
        kernelgen.loglinear_attention(q, k, v, g, lam, initial_state=(state.states.double(), state.position))
    state.position.fill_(40)
    state.max_position = 40
    with pytest.raises(ValueError, match=r"L >= .* levels"):
        kernelgen.loglinear_attention_step(q[:, 0], k[:, 0], v[:, 0], g[:, 0], lam[:, 0, :, :5], state)


# --------------------------------------------------------------------------------------------
# templates
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["loglinear_attention.fwd", "loglinear_attention.bwd", "loglinear_attention.step"])
def test_template_cpu_workload(device, name):
    from kernelgen.templates import get_template
    template = get_template(name)
    shape = template.cpu_workload[0]
    default = template.default_config(shape)
    assert template.check_config(default, shape) is None
    # the first valid non-default config, without listing a space of millions
    configs = [default] + list(itertools.islice((c for c in template.iter_grid(shape) if c != default), 1))
    for config in configs:
        inputs = template.make_inputs(shape, "fp16", "", device, torch.Generator().manual_seed(0))
        outputs = template.allocate_outputs(inputs, shape, "fp16", "")
        for buffer in outputs.values():
            buffer.fill_(float("nan"))
        template.launch(config, inputs, outputs, shape, "")
        for out_name, want in template.reference(inputs, shape, "").items():
            assert_close(f"{name} {config} {out_name}", outputs[out_name], want, template.tolerance("fp16", out_name))


def test_check_config_rejects_impossible():
    fwd, bwd = tmpl.LogLinearForward(), tmpl.LogLinearBackward()
    shape = {"B": 1, "T": 4096, "H": 16, "K": 256, "V": 256, "L": 13}
    huge = {**fwd.default_config(shape), "chunk": 128, "out_bv": 128, "out_warps": 4}
    assert "registers" in fwd.check_config(huge, shape) or "shared" in fwd.check_config(huge, shape)
    assert "scan_bk" in fwd.check_config({**fwd.default_config(shape), "scan_bk": 128},
                                         {**shape, "K": 16, "V": 16})
    assert "chunk" in bwd.check_config({**bwd.default_config(shape), "chunk": 64}, {**shape, "T": 20})
    assert fwd.check_config(fwd.default_config(shape), shape) is None
    assert bwd.check_config(bwd.default_config(shape), shape) is None
    # what a hand-edited tuned file may hold: refused, so dispatch runs the default instead
    for name, bad in (("stack_segment", 24), ("chunk", 48), ("out_bv", 96)):
        assert "power of two" in fwd.check_config({**fwd.default_config(shape), name: bad}, shape)
    assert "power of two" in bwd.check_config({**bwd.default_config(shape), "dqk_bv": 48}, shape)
    # the pair-pass layout Triton 3.6 miscompiles is refused in both; its neighbours run
    miscompiled = {"stack_pairs": 1, "scan_bk": 64, "scan_bv": 32, "scan_warps": 4}
    for template in (fwd, bwd):
        assert "miscompiled" in template.check_config({**template.default_config(shape), **miscompiled}, shape)
        assert template.check_config({**template.default_config(shape), **miscompiled, "scan_warps": 8}, shape) is None
    # the tuning candidates run where they are offered, inside the space; none writes dk in the dv
    # kernel at V = 256 (no dv tile spans it)
    assert not any(c.get("dk_with_dv") for c in bwd.candidates(shape))
    for template in (fwd, bwd):
        for small in template.quick_workload:
            offered = template.candidates(small)
            assert offered and all(template.check_config({**template.default_config(small), **c}, small) is None
                                   for c in offered)
            assert all(v in template.space[k] for c in offered for k, v in c.items())


# --------------------------------------------------------------------------------------------
# GPU (bf16, target-like shapes)
# --------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("head", [64, 128])
def test_gpu_bf16_forward_backward(head):
    q, k, v, g, lam = _inputs(B=2, T=2000, H=4, K=head, V=head, L=12, dtype=torch.bfloat16, device="cuda")
    inputs = [x.requires_grad_() for x in (q, k, v, g, lam)]
    o, _ = kernelgen.loglinear_attention(*inputs)
    do = torch.randn_like(o)
    grads = torch.autograd.grad(o, inputs, do)
    for b in range(2):
        for h in range(0, 4, 3):
            sl = [x.detach()[b:b + 1, :, h:h + 1] for x in inputs]
            ro, rgrads = _ref_grads(sl, do[b:b + 1, :, h:h + 1])
            assert_close("o", o[b:b + 1, :, h:h + 1], ro, 2e-2)
            for name, got, want in zip(("dq", "dk", "dv", "dg", "dlevel_scales"), grads, rgrads):
                assert_close(name, got[b:b + 1, :, h:h + 1], want, 1e-1 if name == "dg" else 5e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("head", [64, 128])
def test_gpu_bf16_save_blocks(head, monkeypatch):
    """save_blocks at the real widths with the shipped configs: the gradients of the backward that
    reads the forward's blocks match the one that rebuilds them (the two passes may tile the
    blocks differently, so equal to bf16 rounding, not bit for bit)."""
    q, k, v, g, lam = _inputs(B=2, T=2000, H=4, K=head, V=head, L=12, dtype=torch.bfloat16, device="cuda")
    builds = _count_block_builds(monkeypatch)
    grads = {}
    for save in (False, True):
        inputs = [x.detach().clone().requires_grad_() for x in (q, k, v, g, lam)]
        builds.clear()
        o, _ = kernelgen.loglinear_attention(*inputs, save_blocks=save)
        grads[save] = torch.autograd.grad(o, inputs, torch.ones_like(o))
    if head == 128:   # the shipped configs there share the chunk and build level 1 inline in both
        assert len(builds) == 1
    for name, a, b in zip(("dq", "dk", "dv", "dg", "dlevel_scales"), grads[False], grads[True]):
        assert_close(name, b, a, 1e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("extra", [{"out_inline_l1": 0}, {"stack_pairs": 1, "scan_warps": 8}])
def test_gpu_bf16_forward_variants(extra):
    """The forward's tuned alternatives in bf16 (the interpreter's bf16 products are not trusted):
    level-1 blocks stored by the block pass, and the pair pass (with level 1 inline)."""
    shape = dict(B=2, T=2000, H=4, K=128, V=128, L=12)
    q, k, v, g, lam = _inputs(**shape, dtype=torch.bfloat16, device="cuda")
    template = tmpl.LogLinearForward()
    config = {**template.default_config(shape), **extra}
    plan = tmpl.make_plan(2, 2000, config["chunk"], None, None, "cuda")
    o, _ = tmpl.forward(q, k, v, g, lam, 128 ** -0.5, config, plan, out=_nan_like(v))
    ro, _ = ref.loglinear_attention_reference(q, k, v, g, lam)
    assert_close("o", o, ro, 2e-2)


@pytest.mark.gpu
def test_gpu_long_sequence_and_state_levels():
    q, k, v, g, lam = _inputs(B=1, T=131072, H=2, K=128, V=128, L=18, dtype=torch.bfloat16, device="cuda")
    o, state = kernelgen.loglinear_attention(q, k, v, g, lam, output_final_state=True)
    assert torch.isfinite(o).all() and state.states.shape[2] == 18 + 1 and state.max_position == 131072
    # the last 1000 tokens against the reference started from the state at T - 1000
    _, head_state = kernelgen.loglinear_attention(*(x[:, :-1000] for x in (q, k, v, g, lam)), output_final_state=True)
    tail, _ = ref.loglinear_attention_reference(*(x[:, -1000:] for x in (q, k, v, g, lam)),
                                                initial_state=(head_state.states, head_state.position))
    assert_close("tail o", o[:, -1000:], tail, 2e-2)


@pytest.mark.gpu
def test_gpu_decode_matches_prefill():
    q, k, v, g, lam = _inputs(B=4, T=300, H=4, K=128, V=128, L=10, dtype=torch.bfloat16, device="cuda")
    full, _ = kernelgen.loglinear_attention(q, k, v, g, lam)
    _, state = kernelgen.loglinear_attention(*(x[:, :257] for x in (q, k, v, g, lam)), output_final_state=True)
    outs = [kernelgen.loglinear_attention_step(q[:, t], k[:, t], v[:, t], g[:, t], lam[:, t], state)[0]
            for t in range(257, 300)]
    assert_close("decode o", torch.stack(outs, 1), full[:, 257:], 2e-2)


@pytest.mark.gpu
def test_gpu_bf16_split_sequence_gradients():
    # chunks of 64 (the default), a misaligned cut: the second half starts mid-chunk and mid-block
    inputs = _inputs(B=2, T=1500, H=2, K=64, V=64, L=12, dtype=torch.bfloat16, device="cuda", seed=17)
    leaves = [x.requires_grad_() for x in inputs]
    do = torch.randn(2, 1500, 2, 64, device="cuda", dtype=torch.bfloat16)
    cut = 777
    first, state = kernelgen.loglinear_attention(*(x[:, :cut] for x in leaves), output_final_state=True)
    second, end = kernelgen.loglinear_attention(*(x[:, cut:] for x in leaves), initial_state=state,
                                                output_final_state=True)
    d_final = torch.randn_like(end.states)
    loss = (first.float() * do[:, :cut]).sum() + (second.float() * do[:, cut:]).sum() + (end.states * d_final).sum()
    got = torch.autograd.grad(loss, leaves)
    for b in range(2):
        sl = [x.detach()[b:b + 1] for x in leaves]
        ref_leaves = [x.double().requires_grad_() for x in sl]
        ro, (rs, _) = ref.loglinear_attention_reference(*ref_leaves, output_final_state=True)
        want = torch.autograd.grad((ro * do[b:b + 1].double()).sum() + (rs * d_final[b:b + 1].double()).sum(),
                                   ref_leaves)
        for name, g_got, g_want in zip(NAMES, got, want):
            assert_close(name, g_got[b:b + 1], g_want, 1e-1 if name == "dg" else 5e-2)
