"""Chunk building blocks shared by the chunked attention families (linear, log-linear, ...).

Every helper is a ``@triton.jit`` function inlined into the caller's kernel. They take and return
register tiles, so one kernel can chain them without touching memory:

    bos, eos          = sequence_bounds(...)       where sequence n lives in the packed token axis
    g                 = load_log_decay(...)        per-token log decay of a chunk, 0 past the end
    G = tl.cumsum(g)                               chunk-local cumulative log decay (fp32)
    D                 = causal_decay(G, ...)       exp(G_t − G_s) for s ≤ t, 0 above the diagonal
    x                 = feature_map(x, FEATURE)    φ applied in registers, fp32
    dx                = feature_map_grad(x, ...)   φ'(x) for the chain rule
    xx                = outer_features(x, ...)     vec(x ⊗ x), [BT, BK*BK] (second-order maps)

The host-launched step every decayed family's backward ends with, the reverse cumsum of dL/dG,
is in reverse_cumsum.py.

Decay factors are always exponentials of *differences* of cumulative sums, masked before the exp,
so they never overflow for g ≤ 0 however long the chunk.
"""
import triton
import triton.language as tl

# Feature maps, as the kernels' FEATURE constexpr (constexpr globals so kernels may read them).
FEAT_IDENTITY = tl.constexpr(0)
FEAT_ELU1 = tl.constexpr(1)
FEAT_RELU = tl.constexpr(2)
FEAT_TAYLOR2 = tl.constexpr(3)

FEATURE_CODES = {None: 0, "identity": 0, "elu1": 1, "relu": 2, "taylor2": 3}


@triton.jit
def sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN: tl.constexpr):
    """First and one-past-last token row (int64) of sequence ``i_n`` in the packed token axis."""
    if IS_VARLEN:
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        eos = tl.load(cu_seqlens + i_n + 1).to(tl.int64)
    else:
        bos = i_n.to(tl.int64) * T
        eos = bos + T
    return bos, eos


@triton.jit
def load_log_decay(g, g_offsets, mask, gamma, USE_G: tl.constexpr, USE_GAMMA: tl.constexpr):
    """Log decay of each row of a chunk in fp32: g[row] (data-dependent), gamma (constant per
    head) or 0; rows outside ``mask`` get 0 so cumulative sums stop growing past the end."""
    if USE_G:
        b_g = tl.load(g + g_offsets, mask=mask, other=0.0).to(tl.float32)
    elif USE_GAMMA:
        b_g = tl.where(mask, gamma, 0.0)
    else:
        b_g = tl.zeros(g_offsets.shape, dtype=tl.float32)
    return b_g


@triton.jit
def causal_decay(b_G, BT: tl.constexpr, HAS_DECAY: tl.constexpr, TRANSPOSED: tl.constexpr = False):
    """[BT, BT] fp32: exp(G_t − G_s) where s ≤ t, else 0; rows are t (queries) and columns s
    (keys), or the transpose (rows s, columns t) with TRANSPOSED, for key-major products."""
    o_t = tl.arange(0, BT)
    if TRANSPOSED:
        causal = o_t[:, None] <= o_t[None, :]
        diff = b_G[None, :] - b_G[:, None]
    else:
        causal = o_t[:, None] >= o_t[None, :]
        diff = b_G[:, None] - b_G[None, :]
    if HAS_DECAY:
        b_D = tl.exp(tl.where(causal, diff, float("-inf")))
    else:
        b_D = tl.where(causal, 1.0, 0.0)
    return b_D


@triton.jit
def chunk_total(b_G):
    """The last row of an inclusive cumsum over BT rows, i.e. the chunk's total log decay, bitwise
    what the cumsum gave that row. A separate tl.sum rounds differently, so Γ(last token → chunk
    end) = exp(total − G_last) would be 1 ± ulp(|G|) rather than 1: 1e-4 relative on the state
    under strong decay (g = −20)."""
    BT: tl.constexpr = b_G.shape[0]
    return tl.sum(tl.where(tl.arange(0, BT) == BT - 1, b_G, 0.0), 0)


@triton.jit
def feature_map(x, FEATURE: tl.constexpr):
    """φ(x) in fp32: identity (and taylor2's linear part), elu(x)+1, or relu(x)."""
    x = x.to(tl.float32)
    if FEATURE == FEAT_ELU1:
        x = tl.where(x > 0, x + 1.0, tl.exp(tl.minimum(x, 0.0)))
    elif FEATURE == FEAT_RELU:
        x = tl.maximum(x, 0.0)
    return x


@triton.jit
def feature_map_in_dtype(x, mask, FEATURE: tl.constexpr):
    """φ(x) kept in x's dtype (tensor-core operand); entries outside ``mask`` are 0. Identity and
    taylor2 (whose linear part is the identity) return x untouched: loads already zero-fill."""
    if FEATURE == FEAT_ELU1:
        x = tl.where(mask, feature_map(x, FEATURE), 0.0).to(x.dtype)
    elif FEATURE == FEAT_RELU:
        x = tl.where(x > 0, x, 0.0).to(x.dtype)
    return x


@triton.jit
def feature_map_grad(x, FEATURE: tl.constexpr):
    """φ'(x) in fp32 (1 for identity)."""
    x = x.to(tl.float32)
    if FEATURE == FEAT_ELU1:
        d = tl.where(x > 0, 1.0, tl.exp(tl.minimum(x, 0.0)))
    elif FEATURE == FEAT_RELU:
        d = tl.where(x > 0, 1.0, 0.0)
    else:
        d = tl.full(x.shape, 1.0, tl.float32)
    return d


@triton.jit
def outer_features(x, BT: tl.constexpr, BK: tl.constexpr):
    """vec(x_t ⊗ x_t) per row: [BT, BK] -> [BT, BK*BK], column i*BK + j holds x_i·x_j, in x's dtype
    (a half-precision product rounds once, as a cast of the fp32 product would)."""
    return tl.reshape(x[:, :, None] * x[:, None, :], (BT, BK * BK))


@triton.jit
def outer_features_grad(dxx, x, BT: tl.constexpr, BK: tl.constexpr):
    """Chain rule of ``outer_features``: d/dx_m of Σ_ij dxx_ij x_i x_j = Σ_j dxx_mj x_j + Σ_i dxx_im x_i."""
    d3 = tl.reshape(dxx, (BT, BK, BK))
    return tl.sum(d3 * x[:, None, :], 2) + tl.sum(d3 * x[:, :, None], 1)
