"""Real kernels for the attention variants, and the float64 references they are checked against.

* `attention(q, k, v, variant=..., **params)`: the Triton fused kernel (forward, and backward through
  autograd) for any single-pass mask variant, and `variant="block_list"` with explicit per-query-block
  key-block lists (`block_q`, `block_k`, `kv_blocks`: a MoBA gate's output); parameters are the `-p` keys of `attnsim predict`
  plus `causal` and `scale`; tensors (batch, heads, seqlen, head_dim) as torch SDPA takes them.
  Causal masks and windows align bottom-right when seqlen_q < seqlen_kv (FlashAttention's
  convention, not SDPA's `is_causal`).
* `decode(q, k_cache, v_cache, ...)`: split-KV decode for GQA/MQA and absorbed MLA (latent cache).
* `reference(...)`, `decode_reference(...)`: float64 PyTorch references from the same mask definition.
* `attnsim.kernels.cupy_eager`, `attnsim.kernels.microbench`: CuPy eager attention and the ceiling
  micro-benchmarks; `attnsim.kernels.nvrtc`: NVRTC compilation without a device.

Inputs are checked before any launch (`kernels/checks.py`, shared by `attention` and `decode`): a
TypeError for a wrong kind (not a torch.Tensor; a dtype other than float16, bfloat16, float32 —
float64 is refused, not cast, and so are mixed dtypes; a non-bool `causal`; a float where an integer
belongs, as in `cu_seqlens_q` or `ctx_lens`), a ValueError for a wrong value (shapes, a zero batch,
head count or head dim, zero step tokens, meta tensors, a NaN/inf `scale`), each naming the argument.
Without a GPU the kernels run under Triton's interpreter: set TRITON_INTERPRET=1 before triton or
this package's kernels are first imported (small shapes, float32); otherwise a call raises a
RuntimeError that says so.

Backends are imported lazily: importing this package needs neither torch, triton nor cupy; calling a
kernel without them raises a clear error. The simulator never imports this package.
"""
from __future__ import annotations

import importlib


def _need(*modules):
    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError as e:
            raise ImportError(f"attnsim.kernels needs {m} for this call ({e}); install it, e.g. "
                              f"pip install 'attnsim[triton]'") from None


def attention(q, k, v, variant: str = "mha", **params):
    """Fused attention with the Triton kernel (see kernels/triton_attention.py)."""
    _need("torch", "triton")
    from .triton_attention import attention as run
    return run(q, k, v, variant, **params)


def decode(q, k_cache, v_cache=None, **params):
    """Split-KV decode with the Triton kernel (GQA/MQA; absorbed MLA with v_cache=None, rope_dim=...)."""
    _need("torch", "triton")
    from .triton_attention import decode as run
    return run(q, k_cache, v_cache, **params)


def reference(q, k, v, variant: str = "mha", **params):
    """Float64 PyTorch reference of `attention` from the shared mask definition."""
    _need("torch")
    from .reference import reference as run
    return run(q, k, v, variant, **params)


def decode_reference(q, k_cache, v_cache=None, **params):
    """Float64 PyTorch reference of `decode`."""
    _need("torch")
    from .reference import decode_reference as run
    return run(q, k_cache, v_cache, **params)
