"""The host-launched building block shared by the chunked families: reverse_cumsum."""
import pytest
import torch

from kernelgen.templates.chunk_common import reverse_cumsum


def _expected(dG, bounds, H):
    total = dG.double().sum(0)                       # over the partial rows
    out = torch.empty_like(total)
    for start, end in zip(bounds, bounds[1:]):
        out[start:end] = total[start:end].flip(0).cumsum(0).flip(0)
    return out


@pytest.mark.parametrize("partials", [1, 3])
@pytest.mark.parametrize("varlen", [False, True])
def test_reverse_cumsum_matches_float64(partials, varlen, device):
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
    reverse_cumsum(dG if partials > 1 else dG[0], dg, cu, num_seqs, T_arg, H, partials=partials)
    expected = _expected(dG, bounds, H)
    torch.testing.assert_close(dg.reshape(tokens, H).double().cpu(), expected.cpu(), rtol=1e-5, atol=1e-3)
