"""Argument checks shared by every op; errors name the argument, the expected and the found."""
from __future__ import annotations

import math
import numbers
import os
from typing import Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_scale(scale, head_dim: int, positive: bool = False) -> float:
    """The attention scale as a float: head_dim^-0.5 for None, else a finite real number (numpy
    scalars too; not a bool), and > 0 with ``positive``."""
    if scale is None:
        return head_dim ** -0.5
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f"scale must be a float or None; got {type(scale).__name__}")
    scale = float(scale)
    if positive and not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be > 0 and finite; got {scale}")
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite; got {scale}")
    return scale


def shape_str(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def check_shape(name: str, tensor: torch.Tensor, layout: str, expected: Sequence[int | None]) -> None:
    """``layout`` names the dims ("B, T, H, K"); ``expected`` gives each size or None (any)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [{layout}]; got {type(tensor).__name__}")
    found = tensor.shape
    if len(found) == len(expected):
        for want_size, size in zip(expected, found):   # a plain loop: every op call runs this
            if want_size is not None and want_size != size:
                break
        else:
            return
    want = ", ".join(d if e is None else f"{d}={e}" for d, e in zip(layout.split(", "), expected))
    raise ValueError(f"{name} must be [{want}]; got {shape_str(tuple(found))}")


def check_float(name: str, tensor: torch.Tensor, dtypes: Sequence[torch.dtype] = FLOAT_DTYPES) -> None:
    if tensor.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have dtype in ({allowed}); got {str(tensor.dtype).replace('torch.', '')}")


def check_one_device(**tensors: torch.Tensor | None) -> tuple[str, torch.Tensor]:
    """All given tensors on one device; returns the first (name, tensor)."""
    first_name = first = None
    for name, tensor in tensors.items():
        if tensor is None:
            continue
        if first is None:
            first_name, first = name, tensor
        elif tensor.device != first.device:
            raise ValueError(f"{name} is on {tensor.device} but {first_name} is on {first.device}; "
                             "all inputs must be on one device")
    if first is None:
        raise ValueError("no tensor given")
    return first_name, first


def check_same_device(**tensors: torch.Tensor | None) -> torch.device:
    """All given tensors on one device, and a device the kernels can run on."""
    first_name, first = check_one_device(**tensors)
    check_runnable_device(first_name, first)
    return first.device


def interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def bf16_dot_on_interpreter(*tensors: torch.Tensor | None) -> bool:
    """Whether a call would feed bf16 operands (all of ``tensors`` bf16) to ``tl.dot`` under the
    Triton interpreter, which multiplies them as their raw 16-bit patterns (Triton 3.9; fp16 and
    fp32 are right; triton-lang/triton#11584). The ops built on tl.dot then run the call in fp32
    and round the outputs back to bf16: slower, and more precise than bf16 on a GPU."""
    # tensor attributes first: a GPU call (the ops' hot path) never reads the environment here
    return all(isinstance(t, torch.Tensor) and t.dtype == torch.bfloat16 and t.device.type == "cpu"
               for t in tensors) and interpreter_on()


def check_runnable_device(name: str, tensor: torch.Tensor) -> None:
    if tensor.device.type == "cuda":
        return
    if tensor.device.type == "cpu" and interpreter_on():
        return
    raise ValueError(f"{name} is on {tensor.device}; kernelgen kernels run on CUDA tensors "
                     "(or on the CPU under the Triton interpreter, TRITON_INTERPRET=1)")


def check_cu_seqlens(cu_seqlens, batch: int) -> torch.Tensor:
    """``cu_seqlens`` as the packed-sequence ops take it: a 1-D int32/int64 tensor [N+1] with N >= 1,
    and the inputs' batch size 1. Returns it contiguous; the values are checked by
    ``check_cu_values`` once its device is known to match."""
    check_shape("cu_seqlens", cu_seqlens, "N+1", (None,))
    if cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"cu_seqlens must be int32 or int64; got {str(cu_seqlens.dtype).replace('torch.', '')}")
    if cu_seqlens.numel() < 2:
        raise ValueError(f"cu_seqlens must be [N+1] with N >= 1 (N+1 >= 2 offsets); got {cu_seqlens.numel()}")
    if batch != 1:
        raise ValueError(f"cu_seqlens packs sequences along T and needs B = 1 (batch size 1); got B={batch}")
    return cu_seqlens.contiguous()


def check_cu_values(cu_seqlens: torch.Tensor, length: int) -> list[int] | None:
    """0 = c_0 <= ... <= c_N = T: offsets outside [0, T] would send the kernels out of bounds.
    Returns the offsets as a list (the one host sync, for callers that need them too); skipped,
    returning None, while a CUDA graph is being captured."""
    if cu_seqlens.is_cuda and torch.cuda.is_current_stream_capturing():
        return None
    bounds = [int(x) for x in cu_seqlens.tolist()]
    if bounds[0] != 0 or bounds[-1] != length or any(b < a for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"cu_seqlens must rise from 0 to T={length} (non-decreasing); got {bounds}")
    return bounds
