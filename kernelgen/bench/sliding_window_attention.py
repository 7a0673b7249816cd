"""Bench cases for sliding-window attention: kernelgen vs FlexAttention, fla and SDPA.

Peers, timed side by side on the issue's target shapes (bf16):
  - torch FlexAttention with a sliding-window block mask, compiled once in make();
  - fla ``parallel_attn(window_size=W)`` (fla.ops.attn), when installed and when it takes a window;
  - torch SDPA full causal attention (does T^2/2 work, the usual dense baseline).
TFLOP/s count only the attended (query, key) pairs: 4 * pairs * D forward, 2.5x that backward.
A decode case compares one step against flash-attn's ``flash_attn_with_kvcache`` (when installed)
and SDPA over the window's slice of the cache.
"""
from __future__ import annotations

from typing import Any, Callable

from kernelgen.bench import BenchCase, optional_import, template_work

# (shape, forward target ms, forward + backward target ms) from issue 6 (H100, bf16).
TARGETS = [
    ({"B": 8, "T": 4096, "HQ": 16, "H": 16, "D": 128, "W": 512}, 0.35, 1.6),
    ({"B": 8, "T": 4096, "HQ": 16, "H": 16, "D": 64, "W": 128}, 0.13, None),
    ({"B": 1, "T": 65536, "HQ": 16, "H": 16, "D": 128, "W": 512}, 0.75, None),
]
DECODE_SHAPE = {"B": 8, "HQ": 32, "H": 8, "D": 128, "W": 4096}


def _runner(forward: Callable[[], Any], leaves: list, grad: bool, grad_out) -> Callable[[], Any]:
    """A zero-argument callable: the forward alone, or forward and backward to every leaf."""
    import torch
    if not grad:
        return forward

    def run():
        out = forward()
        out = out[0] if isinstance(out, tuple) else out
        return torch.autograd.grad(out, leaves, grad_out)
    return run


def _flex_provider(qt, kt, vt, window: int, scale: float, grad: bool, grad_out_t, providers, skipped) -> None:
    import torch
    name = "torch flex_attention (compiled, window block mask)"
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        def sliding_window(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & (q_idx - kv_idx < window)

        length = qt.shape[2]
        try:   # _compile builds the block mask without materialising a T x T boolean mask
            mask = create_block_mask(sliding_window, B=None, H=None, Q_LEN=length, KV_LEN=length,
                                     device=qt.device, _compile=True)
        except TypeError:
            mask = create_block_mask(sliding_window, B=None, H=None, Q_LEN=length, KV_LEN=length, device=qt.device)
        flex = torch.compile(flex_attention, dynamic=False)
        gqa = {"enable_gqa": True} if qt.shape[1] != kt.shape[1] else {}
        run = _runner(lambda: flex(qt, kt, vt, block_mask=mask, scale=scale, **gqa), [qt, kt, vt], grad, grad_out_t)
        run()   # compile now, so a failure is reported as skipped and timing sees no compilation
        torch.cuda.synchronize()
        providers[name] = run
    except Exception as error:  # noqa: BLE001 - a peer that cannot run is reported, not fatal
        skipped[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:100] if str(error) else ''}"


def _fla_provider(q, k, v, window: int, scale: float, grad: bool, grad_out, providers, skipped) -> None:
    import torch
    name = "fla parallel_attn(window_size)"
    attn = optional_import("fla.ops.attn")
    if attn is None or not hasattr(attn, "parallel_attn"):
        skipped[name] = "fla.ops.attn.parallel_attn not importable"
        return
    try:
        run = _runner(lambda: attn.parallel_attn(q, k, v, scale=scale, window_size=window), [q, k, v], grad, grad_out)
        run()
        torch.cuda.synchronize()
        providers[name] = run
    except Exception as error:  # noqa: BLE001
        skipped[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:100] if str(error) else ''}"


def _make(shape: dict[str, int], grad: bool, case: BenchCase) -> Callable[[], dict[str, Callable[[], Any]]]:
    def make():
        import torch
        import kernelgen
        B, T, HQ, H, D, W = (shape[d] for d in ("B", "T", "HQ", "H", "D", "W"))
        scale = D ** -0.5
        q = torch.randn(B, T, HQ, D, device="cuda", dtype=torch.bfloat16, requires_grad=grad)
        k = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, requires_grad=grad)
        v = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, requires_grad=grad)
        do = torch.randn_like(q)
        providers: dict[str, Callable[[], Any]] = {
            "kernelgen": _runner(lambda: kernelgen.sliding_window_attention(q, k, v, W), [q, k, v], grad, do)}
        providers["kernelgen"]()   # first call: dispatch lookup and Triton compilation, outside timing
        # Peers in their native [B, H, T, D] layout (copied here, not inside the timed call).
        qt, kt, vt = (x.detach().transpose(1, 2).contiguous().requires_grad_(grad) for x in (q, k, v))
        do_t = do.transpose(1, 2).contiguous()
        _flex_provider(qt, kt, vt, W, scale, grad, do_t, providers, case.skipped)
        _fla_provider(q, k, v, W, scale, grad, do, providers, case.skipped)
        gqa = {"enable_gqa": True} if HQ != H else {}
        providers["torch SDPA causal (full T, not windowed)"] = _runner(
            lambda: torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=True, scale=scale, **gqa),
            [qt, kt, vt], grad, do_t)
        return providers
    return make


def _make_decode(shape: dict[str, int], case: BenchCase) -> Callable[[], dict[str, Callable[[], Any]]]:
    def make():
        import torch
        import kernelgen
        B, HQ, H, D, W = (shape[d] for d in ("B", "HQ", "H", "D", "W"))
        cache_len = 2 * W
        q = torch.randn(B, 1, HQ, D, device="cuda", dtype=torch.bfloat16)
        k_cache = torch.randn(B, cache_len, H, D, device="cuda", dtype=torch.bfloat16)
        v_cache = torch.randn_like(k_cache)
        lengths = torch.full((B,), cache_len, device="cuda", dtype=torch.int32)
        providers: dict[str, Callable[[], Any]] = {
            "kernelgen": lambda: kernelgen.sliding_window_attention_decode(q, k_cache, v_cache, lengths, W)}
        providers["kernelgen"]()
        flash = optional_import("flash_attn")
        name = "flash_attn_with_kvcache(window_size=(W-1, 0))"
        if flash is None or not hasattr(flash, "flash_attn_with_kvcache"):
            case.skipped[name] = "flash_attn not installed"
        else:
            providers[name] = lambda: flash.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=lengths,
                                                                    causal=True, window_size=(W - 1, 0))
        # Every cache holds cache_len tokens here, so the window is one slice for all sequences.
        qt = q.transpose(1, 2)
        kt = k_cache[:, cache_len - W:].transpose(1, 2)
        vt = v_cache[:, cache_len - W:].transpose(1, 2)
        gqa = {"enable_gqa": True} if HQ != H else {}
        providers["torch SDPA over the window slice"] = (
            lambda: torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, **gqa))
        return providers
    return make


def cases(quick: bool) -> list[BenchCase]:
    from kernelgen.templates.sliding_window_attention import BACKWARD, DECODE, FORWARD
    out = []
    for index, (shape, fwd_ms, fwd_bwd_ms) in enumerate(TARGETS[:1] if quick else TARGETS):
        modes = [("fwd", fwd_ms)] + ([("fwd+bwd", fwd_bwd_ms)] if index < 2 else [])
        for mode, target in modes:
            grad = mode == "fwd+bwd"
            flops, nbytes = template_work(FORWARD, BACKWARD, shape, "bf16", with_backward=grad)
            case = BenchCase(op="sliding_window_attention", mode=mode, shape=dict(shape), dtype="bf16", flops=flops,
                             bytes=nbytes, make=lambda: {}, target_ms=target,
                             note="TFLOP/s over attended pairs only; SDPA does the full causal T^2/2")
            case.make = _make(shape, grad, case)
            out.append(case)
    if not quick:
        case = BenchCase(op="sliding_window_attention", mode="decode", shape=dict(DECODE_SHAPE), dtype="bf16",
                         flops=DECODE.flops(DECODE_SHAPE, "bf16"), bytes=DECODE.bytes(DECODE_SHAPE, "bf16"),
                         make=lambda: {}, note="cache of 2W tokens per sequence, reads the last W")
        case.make = _make_decode(DECODE_SHAPE, case)
        out.append(case)
    return out
