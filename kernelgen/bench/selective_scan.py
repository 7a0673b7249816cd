"""Bench cases for the selective scan: kernelgen (tuned pick, and each backend forced) vs mamba-ssm
and a PyTorch reference.

Inputs as a Mamba block passes them: u, delta, B, C bf16 ([batch, N, L], one group), A, D and
delta_bias fp32, delta_softplus=True, no z (the issue's target). fwd+bwd is one forward plus
``torch.autograd.grad`` of every input for a random upstream gradient. The decode step updates an
fp32 state in place; its target is 70% of 3.0 TB/s on the state's read + write alone.

The PyTorch reference is a loop over L (one step of [batch, dim, N] tensor ops per token); it is
meant as the baseline a user would write, not a fast path (at L=4096 it launches ~25k kernels).
"""
from __future__ import annotations

from typing import Any, Callable

from kernelgen.bench import BenchCase, optional_import, template_work

# (batch, dim, L, N, target_ms from the issue or None)
# L = 4093: rows that are not 16-byte aligned (any L % 8 != 0 in bf16), read as shifted vectors.
FORWARD = [(8, 2048, 4096, 16, 0.40), (2, 1536, 2048, 16, None), (4, 1024, 1024, 64, None),
           (8, 2048, 4093, 16, None)]
FORWARD_BACKWARD = [(8, 2048, 4096, 16, 1.3), (2, 1536, 2048, 16, None)]
# (batch, dim, N); the target is 70% of 3.0 TB/s over the fp32 state read and written once.
DECODE = [(256, 4096, 16), (1, 4096, 16), (32, 2048, 128)]
DECODE_TARGET_BANDWIDTH = 0.7 * 3.0e12
TORCH_LOOP_MAX_L = 4096


def torch_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The PyTorch baseline: the recurrence one step at a time with an fp32 state (B, C [batch, N, L])."""
    import torch
    import torch.nn.functional as F
    dt = delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias.float()[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    u32, Bf, Cf = u.float(), B.float(), C.float()
    h = u32.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        h = torch.exp(dt[:, :, t, None] * A) * h + (dt[:, :, t] * u32[:, :, t])[..., None] * Bf[:, None, :, t]
        ys.append(torch.einsum("bdn,bn->bd", h, Cf[:, :, t]))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D[:, None] * u32
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(u.dtype)


def torch_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """One decode step in PyTorch (vectorized; updates state in place)."""
    import torch
    import torch.nn.functional as F
    dt = dt.float() + (dt_bias.float() if dt_bias is not None else 0.0)
    if dt_softplus:
        dt = F.softplus(dt)
    state.copy_(torch.exp(dt[..., None] * A) * state + (dt * x.float())[..., None] * B.float()[:, None, :])
    y = torch.einsum("bdn,bn->bd", state, C.float())
    if D is not None:
        y = y + D * x.float()
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(x.dtype)


def _scan_inputs(batch: int, dim: int, length: int, n_states: int) -> dict[str, Any]:
    import torch
    gen = torch.Generator(device="cuda").manual_seed(0)
    bf16 = torch.bfloat16

    def randn(*size):
        return torch.randn(*size, device="cuda", generator=gen)

    return {"u": randn(batch, dim, length).to(bf16), "delta": (0.5 * randn(batch, dim, length)).to(bf16),
            "A": -(0.5 + 0.5 * n_states * torch.rand(dim, n_states, device="cuda", generator=gen)),
            "B": randn(batch, n_states, length).to(bf16), "C": randn(batch, n_states, length).to(bf16),
            "D": randn(dim), "delta_bias": -2.0 + 0.5 * randn(dim)}


def _forced_backend_fwd(backend: str, inputs: dict[str, Any]) -> Callable[[], Any]:
    """The forward with the backend forced (its tuned config when the tuned pick is that backend)."""
    import torch

    from kernelgen.dispatch import config_for
    from kernelgen.templates import selective_scan as ss
    u = inputs["u"]
    batch, dim, length = u.shape
    shape = {"batch": batch, "dim": dim, "L": length, "N": inputs["A"].shape[1]}
    config = config_for(ss.FWD, shape, u.dtype, "", u.device)
    if config.get("backend") != backend:
        config = (ss.FWD.triton_default_config(shape) if backend == "triton"
                  else {"backend": "cuda", **ss._cuda.cuda_default_config(ss._cuda_shape(shape), "fwd")})
    B4, C4 = inputs["B"].unsqueeze(1), inputs["C"].unsqueeze(1)
    out = torch.empty_like(u)
    return lambda: ss.selective_scan_fwd(config, u, inputs["delta"], inputs["A"], B4, C4, inputs["D"], None,
                                         inputs["delta_bias"], True, None, out, None)


def _make_scan(batch: int, dim: int, length: int, n_states: int, mode: str, mamba, cuda_ok: bool):
    def make() -> dict[str, Callable[[], Any]]:
        import torch

        import kernelgen
        inputs = _scan_inputs(batch, dim, length, n_states)
        scans: dict[str, Callable] = {"kernelgen": kernelgen.selective_scan}
        if mamba is not None:
            scans["mamba_ssm selective_scan_fn"] = mamba.selective_scan_fn
        if length <= TORCH_LOOP_MAX_L:
            scans["torch reference (loop over L)"] = torch_selective_scan
        order = ("u", "delta", "A", "B", "C", "D")
        if mode == "fwd":
            providers = {name: (lambda scan=scan: scan(*(inputs[k] for k in order), None, inputs["delta_bias"], True))
                         for name, scan in scans.items()}
            providers["kernelgen triton"] = _forced_backend_fwd("triton", inputs)
            if cuda_ok:
                providers["kernelgen cuda"] = _forced_backend_fwd("cuda", inputs)
            return providers
        leaves = [inputs[k].requires_grad_() for k in order] + [inputs["delta_bias"].requires_grad_()]
        dout = torch.randn(batch, dim, length, device="cuda", dtype=torch.bfloat16)

        def fwd_bwd(scan):
            out = scan(*(inputs[k] for k in order), None, inputs["delta_bias"], True)
            return torch.autograd.grad(out, leaves, dout)
        return {name: (lambda scan=scan: fwd_bwd(scan)) for name, scan in scans.items()}
    return make


def _make_step(batch: int, dim: int, n_states: int, mamba_step, cuda_ok: bool):
    def make() -> dict[str, Callable[[], Any]]:
        import torch

        import kernelgen
        from kernelgen.templates import selective_scan as ss
        gen = torch.Generator(device="cuda").manual_seed(0)
        bf16 = torch.bfloat16

        def randn(*size):
            return torch.randn(*size, device="cuda", generator=gen)

        state = randn(batch, dim, n_states)
        x, dt, z = randn(batch, dim).to(bf16), (0.5 * randn(batch, dim)).to(bf16), randn(batch, dim).to(bf16)
        A = -(0.5 + 0.5 * n_states * torch.rand(dim, n_states, device="cuda", generator=gen))
        B, C = randn(batch, n_states).to(bf16), randn(batch, n_states).to(bf16)
        D, dt_bias = randn(dim), -2.0 + 0.5 * randn(dim)
        args = (state, x, dt, A, B, C, D, z, dt_bias, True)
        providers = {"kernelgen": lambda: kernelgen.selective_state_update(*args),
                     "torch reference": lambda: torch_state_update(*args)}
        if mamba_step is not None:
            providers["mamba_ssm selective_state_update"] = lambda: mamba_step.selective_state_update(*args)
        out = torch.empty_like(x)
        shape = {"batch": batch, "dim": dim, "N": n_states}
        B3, C3 = B.unsqueeze(1), C.unsqueeze(1)
        from kernelgen.dispatch import config_for
        tuned = config_for(ss.STEP, shape, bf16, "z", "cuda")
        configs = {"kernelgen triton": tuned if tuned.get("backend") == "triton" else ss.STEP.default_config(shape)}
        if cuda_ok:
            configs["kernelgen cuda"] = {"backend": "cuda", **ss._cuda.cuda_default_config(ss._cuda_shape(shape), "step")}
        for name, config in configs.items():
            providers[name] = (lambda config=config: ss.selective_state_update_run(
                config, state, state, x, dt, A, B3, C3, D, z, dt_bias, True, out))
        return providers
    return make


def cases(quick: bool) -> list[BenchCase]:
    from kernelgen.templates import selective_scan as ss
    mamba = optional_import("mamba_ssm.ops.selective_scan_interface")
    mamba_step = optional_import("mamba_ssm.ops.triton.selective_state_update")
    cuda_reason = ss.cuda_unavailable()
    skipped_peers = {} if mamba is not None else {"mamba_ssm selective_scan_fn": "mamba-ssm not installed"}
    out = []
    for mode, shapes in (("fwd", FORWARD), ("fwd+bwd", FORWARD_BACKWARD)):
        for batch, dim, length, n_states, target in (shapes[:1] if quick else shapes):
            shape = {"batch": batch, "dim": dim, "L": length, "N": n_states}
            skipped = dict(skipped_peers)
            if mode == "fwd" and cuda_reason is not None:
                skipped["kernelgen cuda"] = cuda_reason
            if length > TORCH_LOOP_MAX_L:
                skipped["torch reference (loop over L)"] = f"L={length}: one step at a time is far too slow"
            flops, moved = template_work(ss.FWD, ss.BWD, shape, "bf16", with_backward=mode != "fwd")
            out.append(BenchCase(
                op="selective_scan", mode=mode, shape=shape, dtype="bf16", flops=flops, bytes=moved,
                make=_make_scan(batch, dim, length, n_states, mode, mamba, cuda_reason is None),
                target_ms=target, skipped=skipped,
                note="u, delta, B, C bf16; A, D, delta_bias fp32; softplus; no z"
                     + ("; fwd+bwd runs the Triton forward (it saves checkpoints)" if mode != "fwd" else "")))
    for batch, dim, n_states in (DECODE[:1] if quick else DECODE):
        shape = {"batch": batch, "dim": dim, "N": n_states}
        state_bytes = 8.0 * batch * dim * n_states
        skipped = {} if mamba_step is not None else {"mamba_ssm selective_state_update": "mamba-ssm not installed"}
        if cuda_reason is not None:
            skipped["kernelgen cuda"] = cuda_reason
        out.append(BenchCase(
            op="selective_state_update", mode="step", shape=shape, dtype="bf16",
            flops=ss.STEP.flops(shape, "bf16", "z"), bytes=ss.STEP.bytes(shape, "bf16", "z"),
            make=_make_step(batch, dim, n_states, mamba_step, cuda_reason is None),
            target_ms=state_bytes / DECODE_TARGET_BANDWIDTH * 1e3 if (batch, dim, n_states) == DECODE[0] else None,
            skipped=skipped, note="fp32 state updated in place; x, dt, z, B, C bf16; target: 70% of 3.0 TB/s "
                                  "on the state read + write"))
    return out
