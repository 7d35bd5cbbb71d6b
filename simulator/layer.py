"""`--scope layer`: the attention block around the core — Q/K/V and output projections as GEMMs.

For mha/gqa/mqa: X[B*L, d_model] -> Q, K, V by one fused QKV GEMM (N = heads_q*d + 2*heads_kv*d),
the attention core, then O[B*L, heads_q*dv] -> [B*L, d_model]. Train adds, per projection, the
input-gradient GEMM (dX = dY W^T) and the weight-gradient GEMM (dW = X^T dY). Decode projects
only the new tokens (seqlen_q per sequence); the cache is read by the core.
Later variants (issue 4) add RoPE, routers, convolutions and latent projections here.
"""
from __future__ import annotations

from .bound import Work
from .gemm import gemm
from .hardware import Hardware
from .workload import Workload


def projection_gemms(w: Workload, hw: Hardware, d_model: int):
    """(kernels, useful Work) of the projections of one attention layer."""
    tokens = w.batch * w.seqlen_q
    s = w.dtype_bytes
    n_qkv = w.heads_q * w.head_dim_qk + w.heads_kv * (w.head_dim_qk + w.head_dim_v)
    n_o_in = w.heads_q * w.head_dim_v
    shapes = [("qkv_proj", tokens, n_qkv, d_model), ("o_proj", tokens, d_model, n_o_in)]
    if w.phase == "train":
        shapes += [("o_proj_dx", tokens, n_o_in, d_model), ("o_proj_dw", n_o_in, d_model, tokens),
                   ("qkv_proj_dx", tokens, d_model, n_qkv), ("qkv_proj_dw", d_model, n_qkv, tokens)]
    kernels = [gemm(name, hw, m, n, k, 1, w.dtype, "fp32", b_shared=True) for name, m, n, k in shapes]
    work = Work(tensor=[(2.0 * m * n * k, w.dtype, "fp32") for _, m, n, k in shapes],
                hbm_bytes=float(sum((m * k + k * n + m * n) * s for _, m, n, k in shapes)))
    return kernels, work
