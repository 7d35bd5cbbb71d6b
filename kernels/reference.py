"""Float64 references: attention written out with torch matmuls and the simulator's mask definition
(`Mask.mask_mod`), the ground truth of every kernel test. `dtype=` computes the same formula at
another precision: the tests' same-precision baseline (flash-attention's rule: a kernel's error
against float64 must stay within twice that baseline's)."""
from __future__ import annotations

import math

import numpy as np
import torch

from .plan import mask_of


def _softmax_masked(s, live):
    s = s.masked_fill(~live, float("-inf"))
    m = s.amax(-1, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    p = torch.exp(s - m).masked_fill(~live, 0.0)
    den = p.sum(-1, keepdim=True)
    return p / torch.where(den == 0, torch.ones_like(den), den)  # a row with no live key: zeros


def _one(q, k, v, mask, scale, dtype):
    """q (Hq, Lq, d), k (Hkv, Lk, d), v (Hkv, Lk, dv) -> (Hq, Lq, dv)."""
    hq, lq, _ = q.shape
    hkv, lk, _ = k.shape
    if hq % hkv:
        raise ValueError(f"query heads {hq} must be a multiple of kv heads {hkv}")
    if lk == 0:
        return q.new_zeros(hq, lq, v.shape[-1], dtype=dtype)
    live = torch.as_tensor(np.asarray(mask.mask_mod(np.arange(lq)[:, None], np.arange(lk)[None, :], lq, lk),
                                      dtype=bool), device=q.device)
    k = k.repeat_interleave(hq // hkv, 0).to(dtype)
    v = v.repeat_interleave(hq // hkv, 0).to(dtype)
    s = (q.to(dtype) @ k.transpose(-1, -2)) * scale
    return _softmax_masked(s, live).to(dtype) @ v


def reference(q, k, v, variant: str = "mha", cu_seqlens_q=None, cu_seqlens_k=None, dtype=torch.float64, **params):
    """Attention of `variant` in `dtype` (float64 by default), output in `dtype`. Same arguments as
    `attnsim.kernels.attention`."""
    params = dict(params)
    causal = params.pop("causal", False)
    scale = params.pop("scale", None)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if cu_seqlens_q is not None:
        ck = cu_seqlens_k if cu_seqlens_k is not None else cu_seqlens_q
        outs = []
        for i in range(len(cu_seqlens_q) - 1):
            q0, q1, k0, k1 = int(cu_seqlens_q[i]), int(cu_seqlens_q[i + 1]), int(ck[i]), int(ck[i + 1])
            mask = mask_of(variant, params, causal, q1 - q0, k1 - k0)
            outs.append(_one(q[q0:q1].transpose(0, 1), k[k0:k1].transpose(0, 1), v[k0:k1].transpose(0, 1),
                             mask, scale, dtype).transpose(0, 1))
        return torch.cat(outs)
    mask = mask_of(variant, params, causal, q.shape[2], k.shape[2])
    return torch.stack([_one(q[b], k[b], v[b], mask, scale, dtype) for b in range(q.shape[0])])


def decode_reference(q, k_cache, v_cache=None, ctx_lens=None, causal: bool = True, rope_dim: int = 0,
                     scale=None, dtype=torch.float64, splits=None):
    """`decode` in `dtype`: each sequence's step queries against its context (bottom-right causal among
    the step's tokens). Absorbed MLA (v_cache None): V = the first (d - rope_dim) channels of the cache."""
    B, Hq, n_q, d = q.shape
    L = k_cache.shape[2]
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    v_cache = k_cache[..., :d - rope_dim] if v_cache is None else v_cache
    outs = []
    for b in range(B):
        n = L if ctx_lens is None else int(ctx_lens[b])
        qi = np.arange(n_q)[:, None]
        kj = np.arange(n)[None, :]
        live = torch.as_tensor((kj <= qi + n - n_q) if causal else np.ones((n_q, n), dtype=bool), device=q.device)
        if n == 0:
            outs.append(q.new_zeros(Hq, n_q, v_cache.shape[-1], dtype=dtype))
            continue
        k = k_cache[b, :, :n].repeat_interleave(Hq // k_cache.shape[1], 0).to(dtype)
        v = v_cache[b, :, :n].repeat_interleave(Hq // v_cache.shape[1], 0).to(dtype)
        s = (q[b].to(dtype) @ k.transpose(-1, -2)) * scale
        outs.append(_softmax_masked(s, live).to(dtype) @ v)
    return torch.stack(outs)
