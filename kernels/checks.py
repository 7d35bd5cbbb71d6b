"""Checks of the public kernel API's arguments (`attention`, `decode` and everything they forward to:
`prepared_forward`, `plan_of`, `prepared_decode`), run before any plan is built or kernel launched.
Both entry points use these helpers, so they refuse the same things with the same words.

Every refusal names the argument and says what it allows, with one rule for the exception type:
TypeError when the argument's kind is wrong (not a torch.Tensor, a tensor dtype outside float16 /
bfloat16 / float32, mixed dtypes, a non-bool flag, a float where an integer belongs, a non-number
scale); ValueError when the kind is right but the value is not (a shape, a zero size, a meta tensor,
mixed devices, a NaN/inf scale, an integer out of range).

float64 is refused, not cast: the kernels compute in float16/bfloat16 (fp32 accumulation) or
float32, so a float64 input would silently lose precision; cast it yourself (e.g. `x.float()`).
Mixed dtypes are refused for the same reason (no silent casts). The float64 references
(`attnsim.kernels.reference`) are not kernels and take any float dtype.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_DTYPE_WORDS = "torch.float16, torch.bfloat16 or torch.float32"


def _kind(x) -> str:
    t = type(x)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def tensor(x, name: str, dims: tuple) -> torch.Tensor:
    """`x` as a kernel operand: a torch.Tensor with one dimension per label of `dims`, holding data
    (not a meta tensor), of dtype float16, bfloat16 or float32."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected torch.Tensor of shape ({', '.join(dims)}), got {_kind(x)}"
                        + (" (convert it with torch.from_numpy)" if isinstance(x, np.ndarray) else ""))
    if x.dim() != len(dims):
        raise ValueError(f"{name} must have {len(dims)} dimensions ({', '.join(dims)}); got shape {tuple(x.shape)}")
    if x.is_meta:
        raise ValueError(f"{name} is a meta tensor (a shape without data): the kernels need data on a GPU, or on the "
                         f"CPU under TRITON_INTERPRET=1")
    if x.dtype not in DTYPES:
        why = (": the kernels compute in float16/bfloat16 (fp32 accumulation) or float32 and do not cast silently; "
               "cast it yourself, e.g. .float()") if x.dtype == torch.float64 else ""
        raise TypeError(f"{name} has dtype {x.dtype}; allowed: {_DTYPE_WORDS}{why}")
    return x


def operands(specs, positive) -> dict:
    """Check the operands `specs` = [(name, tensor or None, dims labels), ...] (None: an absent
    optional operand, skipped): each with `tensor`, then across them — a label (e.g. "batch") names
    one size wherever it appears, every size labelled in `positive` is at least 1, one dtype, one
    device. Returns {label: size}."""
    given = [(n, tensor(x, n, dims), dims) for n, x, dims in specs if x is not None]
    sizes, first = {}, {}
    for n, x, dims in given:
        for label, size in zip(dims, x.shape):
            if label not in sizes:
                sizes[label], first[label] = int(size), n
            elif sizes[label] != size:
                raise ValueError(f"{n}'s {label} is {size} but {first[label]}'s is {sizes[label]}; shapes: "
                                 + ", ".join(f"{m} {tuple(t.shape)} ({', '.join(d)})" for m, t, d in given))
    for n, x, dims in given:
        for label, size in zip(dims, x.shape):
            if label in positive and size < 1:
                raise ValueError(f"{n}'s {label} is {size}: it must be at least 1 (shape {tuple(x.shape)})")
    if len({x.dtype for _, x, _ in given}) > 1:
        raise TypeError("mixed dtypes: " + ", ".join(f"{n} {x.dtype}" for n, x, _ in given)
                        + "; pass one dtype (the kernels do not cast silently)")
    if len({x.device for _, x, _ in given}) > 1:
        raise ValueError("tensors on different devices: " + ", ".join(f"{n} on {x.device}" for n, x, _ in given))
    return sizes


def flag(x, name: str) -> bool:
    """A bool (Python or numpy), nothing else: 'x', 0 and None are refused rather than read as truthy."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    raise TypeError(f"{name}={x!r} must be True or False")


def integer(x, name: str, lo: int, hi: int | None = None) -> int:
    """An integer (Python, numpy or a 0-d integer tensor; not a bool, not a float) in [lo, hi]."""
    if isinstance(x, torch.Tensor) and x.dim() == 0 and not (x.dtype.is_floating_point or x.dtype.is_complex
                                                            or x.dtype == torch.bool):
        x = int(x.item())
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name}={x!r} must be an integer, got {_kind(x)}")
    x = int(x)
    if x < lo or (hi is not None and x > hi):
        raise ValueError(f"{name}={x} must be {'at least ' + str(lo) if hi is None else f'in {lo}..{hi}'}")
    return x


def integers(x, name: str) -> list:
    """A 1-D sequence of integers: a list/tuple of ints, an integer numpy array or torch tensor. Floats
    are refused even when whole (10.5 would otherwise run as 10); bool is refused."""
    if isinstance(x, torch.Tensor):
        if x.is_meta:
            raise ValueError(f"{name} is a meta tensor: it holds no values")
        if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            raise TypeError(f"{name} has dtype {x.dtype}: it must hold integers (e.g. torch.int32 or torch.int64)")
        if x.dim() != 1:
            raise ValueError(f"{name} must be 1-D; got shape {tuple(x.shape)}")
        return [int(v) for v in x.tolist()]
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "iu":
            raise TypeError(f"{name} has dtype {x.dtype}: it must hold integers (e.g. numpy.int64)")
        if x.ndim != 1:
            raise ValueError(f"{name} must be 1-D; got shape {x.shape}")
        return [int(v) for v in x.tolist()]
    if not isinstance(x, (list, tuple)):
        raise TypeError(f"{name}: expected a list of integers or an integer tensor, got {_kind(x)}")
    return [integer(v, f"{name}[{i}]", -(1 << 63)) for i, v in enumerate(x)]


def scale(x, head_dim: int) -> float:
    """The softmax scale: None (1/sqrt(head_dim)) or a finite real number (0 included: uniform weights)."""
    if x is None:
        return 1.0 / math.sqrt(head_dim)
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        raise TypeError(f"scale={x!r} must be a real number or None (1/sqrt(head_dim)), got {_kind(x)}")
    f = float(x)
    if not math.isfinite(f):
        raise ValueError(f"scale={x!r} must be finite")
    return f


def launchable(device: torch.device, interpreting: bool, env_now: str | None) -> None:
    """Refuse a launch Triton cannot make, before it fails with "0 active drivers": the kernels run on
    a GPU, or on the CPU under Triton's interpreter (chosen when triton is first imported)."""
    if interpreting or device.type == "cuda":
        return
    how = ("set TRITON_INTERPRET=1 in the environment before triton or attnsim.kernels is first imported "
           "(e.g. `TRITON_INTERPRET=1 python script.py`), and keep to small shapes in float32 (the interpreter "
           "runs the kernels in numpy, slowly; it has no bfloat16)")
    late = (f" (TRITON_INTERPRET={env_now} is set now, but was not when triton was imported: the kernels were "
            f"compiled for a GPU)") if env_now not in (None, "", "0") else ""
    if torch.cuda.is_available():
        raise RuntimeError(f"the tensors are on {device}, but the Triton kernels run on the GPU: move them there "
                           f"(.cuda()), or to run on the CPU {how}{late}")
    raise RuntimeError(f"no GPU is present: the Triton kernels need a CUDA/ROCm GPU, or Triton's CPU interpreter: "
                       f"{how}{late}")
