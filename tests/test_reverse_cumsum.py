"""The host-launched step shared by the decayed chunked families: reverse_cumsum (the walk from
each sequence's end, and the parallel blocks long sequences take)."""
import pytest
import torch

from kernelgen.templates.reverse_cumsum import reverse_cumsum


def _expected(dG, bounds, H):
    total = dG.double().sum(0)                       # over the partial rows
    out = torch.empty_like(total)
    for start, end in zip(bounds, bounds[1:]):
        out[start:end] = total[start:end].flip(0).cumsum(0).flip(0)
    return out


@pytest.mark.parametrize("block_rows", [None, 4, 32, 64])   # None: the walk at this T; else blocks (4: 16 rows)
@pytest.mark.parametrize("partials", [1, 3])
@pytest.mark.parametrize("varlen", [False, True])
def test_reverse_cumsum_matches_float64(partials, varlen, block_rows, device):
    torch.manual_seed(0)
    H, B, T = 3, 2, 150                               # T spans several 64-row blocks, ragged
    if varlen:
        bounds = [0, 1, 70, 70, 229, 300]
        cu = torch.tensor(bounds, dtype=torch.int32, device=device)
        num_seqs, T_arg, dg = len(bounds) - 1, 300, torch.empty(1, 300, H, device=device)
    else:
        bounds = [0, T, 2 * T]
        cu, num_seqs, T_arg, dg = None, B, T, torch.empty(B, T, H, device=device)   # dg shaped [B, T, H]
    tokens = bounds[-1]
    dG = torch.randn(partials, tokens, H, device=device) * 10 + 3
    reverse_cumsum(dG if partials > 1 else dG[0], dg, cu, num_seqs, T_arg, H, partials=partials,
                   block_rows=block_rows)
    expected = _expected(dG, bounds, H)
    torch.testing.assert_close(dg.reshape(tokens, H).double().cpu(), expected.cpu(), rtol=1e-5, atol=1e-3)


def test_long_sequences_take_blocks_and_stay_exact(device, monkeypatch):
    """From BLOCKS_FROM_T rows the blocks run by default (more than MAX_BLOCKS of them would be
    needed at 16 rows, so blocks grow); mixed signs whose suffix sums cancel to small values."""
    from kernelgen.templates import reverse_cumsum as module
    monkeypatch.setattr(module, "BLOCKS_FROM_T", 1000)
    calls = []
    real = module.reverse_cumsum_blocks
    monkeypatch.setattr(module, "reverse_cumsum_blocks", lambda *a, **k: calls.append(a[5]) or real(*a, **k))
    torch.manual_seed(1)
    H, T = 2, 1500
    assert module.block_rows(T, 16) == 32            # 1500 / 64 blocks -> 32 rows each
    dG = torch.randn(2, T, H, device=device) * 100
    dG[:, : T // 2] -= dG[:, T // 2:].flip(1)                        # the first half cancels the second
    dg = torch.empty(T, H, device=device)
    reverse_cumsum(dG, dg, None, 1, T, H, partials=2)
    assert calls == [H]
    # fp32 rounding is relative to what the sums pass through: Σ_{t' ≥ t} |dG_t'| (the walk's
    # own error here is up to 7e-7 of it)
    scale = _expected(dG.abs(), [0, T], H).cpu()
    error = (dg.double().cpu() - _expected(dG, [0, T], H).cpu()).abs()
    assert (error / scale).max().item() < 2e-6


def test_many_packed_sequences_are_walked(device, monkeypatch):
    """With cu_seqlens, T bounds the longest sequence and sizes the blocks' grid for each of them:
    beyond BLOCKS_MAX_PACKED sequences the walk runs instead."""
    from kernelgen.templates import reverse_cumsum as module
    monkeypatch.setattr(module, "BLOCKS_FROM_T", 100)
    took_blocks = []
    real = module.reverse_cumsum_blocks
    monkeypatch.setattr(module, "reverse_cumsum_blocks", lambda *a, **k: took_blocks.append(a[3]) or real(*a, **k))
    H = 2
    for num_seqs in (module.BLOCKS_MAX_PACKED, module.BLOCKS_MAX_PACKED + 1):
        bounds = [7 * i for i in range(num_seqs + 1)]
        cu = torch.tensor(bounds, dtype=torch.int32, device=device)
        dG = torch.randn(1, bounds[-1], H, device=device)
        dg = torch.empty(bounds[-1], H, device=device)
        reverse_cumsum(dG[0], dg, cu, num_seqs, max(bounds[-1], 100), H)
        torch.testing.assert_close(dg.double().cpu(), _expected(dG, bounds, H).cpu(), rtol=1e-5, atol=1e-5)
    assert took_blocks == [module.BLOCKS_MAX_PACKED]


def test_packed_walk_needs_no_bound_on_the_longest_sequence(device):
    """The walk of packed sequences covers each whole sequence even when T is below its length."""
    H, bounds = 5, [0, 1, 70, 70, 229, 300]
    cu = torch.tensor(bounds, dtype=torch.int32, device=device)
    dG = torch.randn(3, 300, H, device=device)
    dg = torch.full((300, H), float("nan"), device=device)
    reverse_cumsum(dG, dg, cu, len(bounds) - 1, 100, H, partials=3)   # the longest sequence has 159 rows
    torch.testing.assert_close(dg.double().cpu(), _expected(dG, bounds, H).cpu(), rtol=1e-5, atol=1e-4)
