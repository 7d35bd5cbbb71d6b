"""Triton fused attention driven by the simulator's tile plan (`kernels/plan.py`).

One forward kernel serves every single-pass mask (dense, causal, sliding windows with sinks and
chunks, segments, neighborhood/GNA in row-major or tiled token order, MoBA-style block selection,
varlen packed sequences): each program owns one (sequence, query tile) row of the plan and one
query head, and walks that row's tile list — full tiles with no mask arithmetic, partial tiles
with their element mask, empty tiles never visited. Heads map GQA/MQA/SQA-style: kv head = query
head // (heads_q // heads_kv). The backward (FlashAttention-2's algorithm: preprocess D =
rowsum(dO * O), dK/dV over the transposed plan, dQ over the forward plan) serves the same masks.
Decode: a split-KV kernel (query heads of a kv head packed into the rows; MLA's latent cache read
as K and V) and the combine kernel.

Tensors follow torch SDPA's layout (batch, heads, seqlen, head_dim); internally they are packed
(tokens, heads, head_dim). Accumulation is fp32 everywhere; `tl.dot` runs in IEEE fp32 for fp32
inputs (no TF32), so fp32 results compare with a float64 reference tightly.

Set TRITON_INTERPRET=1 before importing this module to run it on a CPU (tests do); the
interpreter has no bf16, so bf16 inputs are computed in fp32 there. Without a GPU and without the
interpreter a call raises a RuntimeError that says so. Arguments are checked before any launch by
the helpers of `kernels/checks.py` (shared by `attention` and `decode`).
"""
from __future__ import annotations

import hashlib
import os
import re

import numpy as np
import torch
import triton
import triton.language as tl

from . import checks
from .plan import build_plan, mask_of, token_order


# -- shared pieces ------------------------------------------------------------------------------------
@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    """tl.dot with fp32 accumulation; IEEE fp32 products (no TF32) for fp32 inputs."""
    if IEEE:
        out = tl.dot(a, b, input_precision="ieee")
    else:
        out = tl.dot(a, b)
    return out


# Triton chose the interpreter (TRITON_INTERPRET, read when triton was imported) iff its jit returned an
# interpreted function: the kernels' own type is the truth, whatever the environment says now.
INTERPRET = type(_dot).__name__ == "InterpretedFunction"


@triton.jit
def _plan_row(ROWS, row):
    """A plan row: (first packed row of the tile, its length, first packed row of the other side, that
    side's length, the tile list's [lo, hi))."""
    base = ROWS + row * 6
    return (tl.load(base), tl.load(base + 1), tl.load(base + 2), tl.load(base + 3), tl.load(base + 4).to(tl.int32),
            tl.load(base + 5).to(tl.int32))


@triton.jit
def _full_kv(K, V, keys, hk, stride_kt, stride_kh, stride_vt, stride_vh, offs_d, offs_dv, D: tl.constexpr,
             DV: tl.constexpr):
    """A full tile's K and V rows `keys` of kv head hk: every key in bounds, so no mask but the padded head
    dims' (constant): the loads Triton pipelines."""
    k = tl.load(K + keys[:, None] * stride_kt + hk * stride_kh + offs_d[None, :], mask=offs_d[None, :] < D, other=0.0)
    v = tl.load(V + keys[:, None] * stride_vt + hk * stride_vh + offs_dv[None, :], mask=offs_dv[None, :] < DV,
                other=0.0)
    return k, v


# -- the forward ------------------------------------------------------------------------------------
@triton.jit
def _fwd_kernel(Q, K, V, O, LSE, ROWS, KV_START, PART, MASKS, FIRST_PART, scale,
                stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
                group, D: tl.constexpr, DV: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, IEEE: tl.constexpr):
    """One query tile: its full tiles first, in a loop with no branch and no mask arithmetic (K/V loads
    unconditional, so Triton pipelines them), then its partial tiles (bounds and the element mask; one
    stage). Scores
    in base 2: the softmax scale times log2(e) folded into one multiply, exp2 on the SFU (as FlashAttention);
    the LSE written in natural log for the backward."""
    row = tl.program_id(0)
    h = tl.program_id(1)
    hk = h // group
    q_start, q_len, k_start, k_len, lo, hi = _plan_row(ROWS, row)
    mid = tl.load(FIRST_PART + row)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    m_ok = offs_m < q_len
    q = tl.load(Q + (q_start + offs_m)[:, None] * stride_qt + h * stride_qh + offs_d[None, :],
                mask=m_ok[:, None] & (offs_d[None, :] < D), other=0.0)
    qk_scale = scale * 1.4426950408889634  # log2(e): exp(x) = exp2(x log2(e))
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running row maxima, base 2
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)
    for e in range(lo, mid):  # full tiles: in bounds and live everywhere
        k, v = _full_kv(K, V, k_start + tl.load(KV_START + e) + offs_n, hk, stride_kt, stride_kh, stride_vt, stride_vh,
                        offs_d, offs_dv, D, DV)
        s = _dot(q, tl.trans(k), IEEE) * qk_scale
        m_new = tl.maximum(m_i, tl.max(s, 1))  # finite: every score of a full tile is live
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, IEEE)
        m_i = m_new
    for e in tl.range(mid, hi, num_stages=1):  # partial tiles (bounds, the element mask): few, not pipelined, so
        # the loop adds no shared-memory buffers to the full loop's (the simulator's Triton forward figure)
        n0 = tl.load(KV_START + e)
        p_idx = tl.load(PART + e)
        keys = k_start + n0 + offs_n
        n_ok = (n0 + offs_n) < k_len
        k = tl.load(K + keys[:, None] * stride_kt + hk * stride_kh + offs_d[None, :],
                    mask=n_ok[:, None] & (offs_d[None, :] < D), other=0.0)
        v = tl.load(V + keys[:, None] * stride_vt + hk * stride_vh + offs_dv[None, :],
                    mask=n_ok[:, None] & (offs_dv[None, :] < DV), other=0.0)
        live = tl.load(MASKS + p_idx.to(tl.int64) * BLOCK_M * BLOCK_N + offs_m[:, None] * BLOCK_N + offs_n[None, :])
        s = tl.where(live != 0, _dot(q, tl.trans(k), IEEE) * qk_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with nothing live yet
        alpha = tl.math.exp2(m_i - m_safe)
        p = tl.math.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, IEEE)
        m_i = m_new
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    out = acc / l_safe[:, None]
    tl.store(O + (q_start + offs_m)[:, None] * stride_ot + h * stride_oh + offs_dv[None, :],
             out.to(O.dtype.element_ty), mask=m_ok[:, None] & (offs_dv[None, :] < DV))
    lse = tl.where(l_i == 0.0, float("-inf"), m_i * 0.6931471805599453 + tl.log(l_safe))  # ln(2) m + ln(l)
    tl.store(LSE + (q_start + offs_m) * tl.num_programs(1) + h, lse, mask=m_ok)


# -- the backward ------------------------------------------------------------------------------------
@triton.jit
def _bwd_preprocess(O, DO, DELTA, n_rows, DV: tl.constexpr, BLOCK_DV: tl.constexpr, BLOCK: tl.constexpr):
    """D = rowsum(dO * O) per (token, head) row of the packed (tokens * heads, dv) tensors."""
    r = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # int64: tokens x heads x dv may pass 2^31
    c = tl.arange(0, BLOCK_DV)
    ok = (r[:, None] < n_rows) & (c[None, :] < DV)
    o = tl.load(O + r[:, None] * DV + c[None, :], mask=ok, other=0.0).to(tl.float32)
    do = tl.load(DO + r[:, None] * DV + c[None, :], mask=ok, other=0.0).to(tl.float32)
    tl.store(DELTA + r, tl.sum(o * do, 1), mask=r < n_rows)


@triton.jit
def _bwd_dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV_, ROWS, Q_START, PART, MASKS, FIRST_PART, scale, n_heads,
                     stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dot, stride_doh,
                     stride_dkt, stride_dkh, stride_dvt, stride_dvh, group, D: tl.constexpr, DV: tl.constexpr, BLOCK_D: tl.constexpr,
                     BLOCK_DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, IEEE: tl.constexpr):
    """One program per (sequence, kv tile) row of the transposed plan and query head: dK and dV of
    that head (summed over the GQA group by the caller). Its full query tiles first, in a loop with no
    branch (rows past the sequence load as zeros and add nothing: their dO is 0), then its partial
    ones (the element mask; one stage). P = exp2(S scale log2(e) - LSE log2(e)), computed transposed (S^T = K Q^T,
    dP^T = V dO^T): every dot has the tile's BLOCK_N keys as its rows, so on Hopper each one is a warpgroup MMA
    when BLOCK_N >= 64 (Triton lowers a dot of fewer rows to mma.sync), as Triton's tutorial computes it."""
    row = tl.program_id(0)
    h = tl.program_id(1)
    hk = h // group
    k_start_row, k_len_tile, q_base, q_len, lo, hi = _plan_row(ROWS, row)  # transposed plan: kv tile first
    mid = tl.load(FIRST_PART + row)
    offs_n = tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    n_ok = offs_n < k_len_tile
    k = tl.load(K + (k_start_row + offs_n)[:, None] * stride_kt + hk * stride_kh + offs_d[None, :],
                mask=n_ok[:, None] & (offs_d[None, :] < D), other=0.0)
    v = tl.load(V + (k_start_row + offs_n)[:, None] * stride_vt + hk * stride_vh + offs_dv[None, :],
                mask=n_ok[:, None] & (offs_dv[None, :] < DV), other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], dtype=tl.float32)
    qk_scale = scale * 1.4426950408889634  # log2(e)
    for e in range(lo, mid):  # full tiles: every in-bounds query row sees every key of the tile
        rows = q_base + tl.load(Q_START + e) + offs_m
        m_ok = rows < q_base + q_len
        q = tl.load(Q + rows[:, None] * stride_qt + h * stride_qh + offs_d[None, :],
                    mask=m_ok[:, None] & (offs_d[None, :] < D), other=0.0)
        do = tl.load(DO + rows[:, None] * stride_dot + h * stride_doh + offs_dv[None, :],
                     mask=m_ok[:, None] & (offs_dv[None, :] < DV), other=0.0)
        lse = tl.load(LSE + rows * n_heads + h, mask=m_ok, other=0.0) * 1.4426950408889634
        delta = tl.load(DELTA + rows * n_heads + h, mask=m_ok, other=0.0)
        pt = tl.math.exp2(_dot(k, tl.trans(q), IEEE) * qk_scale - lse[None, :])  # P^T: [BLOCK_N, BLOCK_M]
        dv += _dot(pt.to(do.dtype), do, IEEE)
        dst = pt * (_dot(v, tl.trans(do), IEEE) - delta[None, :]) * scale  # dS^T
        dk += _dot(dst.to(q.dtype), q, IEEE)
    for e in tl.range(mid, hi, num_stages=1):  # partial tiles: bounds and the element mask
        m0 = tl.load(Q_START + e)
        p_idx = tl.load(PART + e)
        rows = q_base + m0 + offs_m
        m_ok = (m0 + offs_m) < q_len
        q = tl.load(Q + rows[:, None] * stride_qt + h * stride_qh + offs_d[None, :],
                    mask=m_ok[:, None] & (offs_d[None, :] < D), other=0.0)
        do = tl.load(DO + rows[:, None] * stride_dot + h * stride_doh + offs_dv[None, :],
                     mask=m_ok[:, None] & (offs_dv[None, :] < DV), other=0.0)
        lse = tl.load(LSE + rows * n_heads + h, mask=m_ok, other=0.0)
        delta = tl.load(DELTA + rows * n_heads + h, mask=m_ok, other=0.0)
        lse_ok = tl.where(lse == float("-inf"), 0.0, lse) * 1.4426950408889634  # a row with no live key
        pt = tl.math.exp2(_dot(k, tl.trans(q), IEEE) * qk_scale - lse_ok[None, :])
        # transposed plan: masks are [BLOCK_N, BLOCK_M]
        live = tl.load(MASKS + p_idx.to(tl.int64) * BLOCK_N * BLOCK_M + offs_n[:, None] * BLOCK_M + offs_m[None, :])
        pt = tl.where((live != 0) & n_ok[:, None] & m_ok[None, :], pt, 0.0)
        dv += _dot(pt.to(do.dtype), do, IEEE)
        dst = pt * (_dot(v, tl.trans(do), IEEE) - delta[None, :]) * scale
        dk += _dot(dst.to(q.dtype), q, IEEE)
    tl.store(DK + (k_start_row + offs_n)[:, None] * stride_dkt + h * stride_dkh + offs_d[None, :], dk,
             mask=n_ok[:, None] & (offs_d[None, :] < D))
    tl.store(DV_ + (k_start_row + offs_n)[:, None] * stride_dvt + h * stride_dvh + offs_dv[None, :], dv,
             mask=n_ok[:, None] & (offs_dv[None, :] < DV))


@triton.jit
def _bwd_dq_kernel(Q, K, V, DO, LSE, DELTA, DQ, ROWS, KV_START, PART, MASKS, FIRST_PART, scale, n_heads,
                   stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dot, stride_doh,
                   group, D: tl.constexpr, DV: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, IEEE: tl.constexpr):
    """One program per (sequence, query tile) row of the forward plan and query head: dQ. Its full kv
    tiles first, in a loop with no branch and unmasked K/V loads (pipelined), then its partial ones."""
    row = tl.program_id(0)
    h = tl.program_id(1)
    hk = h // group
    q_start, q_len, k_start, k_len, lo, hi = _plan_row(ROWS, row)
    mid = tl.load(FIRST_PART + row)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    m_ok = offs_m < q_len
    rows = q_start + offs_m
    q = tl.load(Q + rows[:, None] * stride_qt + h * stride_qh + offs_d[None, :],
                mask=m_ok[:, None] & (offs_d[None, :] < D), other=0.0)
    do = tl.load(DO + rows[:, None] * stride_dot + h * stride_doh + offs_dv[None, :],
                 mask=m_ok[:, None] & (offs_dv[None, :] < DV), other=0.0)
    lse = tl.load(LSE + rows * n_heads + h, mask=m_ok, other=0.0)
    lse = tl.where(lse == float("-inf"), 0.0, lse) * 1.4426950408889634  # base 2
    delta = tl.load(DELTA + rows * n_heads + h, mask=m_ok, other=0.0)
    qk_scale = scale * 1.4426950408889634
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for e in range(lo, mid):  # full tiles: in bounds and live everywhere
        k, v = _full_kv(K, V, k_start + tl.load(KV_START + e) + offs_n, hk, stride_kt, stride_kh, stride_vt, stride_vh,
                        offs_d, offs_dv, D, DV)
        p = tl.math.exp2(_dot(q, tl.trans(k), IEEE) * qk_scale - lse[:, None])
        ds = p * (_dot(do, tl.trans(v), IEEE) - delta[:, None]) * scale
        dq += _dot(ds.to(k.dtype), k, IEEE)
    for e in tl.range(mid, hi, num_stages=1):  # partial tiles: bounds and the element mask
        n0 = tl.load(KV_START + e)
        p_idx = tl.load(PART + e)
        keys = k_start + n0 + offs_n
        n_ok = (n0 + offs_n) < k_len
        k = tl.load(K + keys[:, None] * stride_kt + hk * stride_kh + offs_d[None, :],
                    mask=n_ok[:, None] & (offs_d[None, :] < D), other=0.0)
        v = tl.load(V + keys[:, None] * stride_vt + hk * stride_vh + offs_dv[None, :],
                    mask=n_ok[:, None] & (offs_dv[None, :] < DV), other=0.0)
        p = tl.math.exp2(_dot(q, tl.trans(k), IEEE) * qk_scale - lse[:, None])
        live = tl.load(MASKS + p_idx.to(tl.int64) * BLOCK_M * BLOCK_N + offs_m[:, None] * BLOCK_N + offs_n[None, :])
        p = tl.where((live != 0) & m_ok[:, None] & n_ok[None, :], p, 0.0)
        ds = p * (_dot(do, tl.trans(v), IEEE) - delta[:, None]) * scale
        dq += _dot(ds.to(k.dtype), k, IEEE)
    tl.store(DQ + rows[:, None] * stride_qt + h * stride_qh + offs_d[None, :], dq.to(DQ.dtype.element_ty),
             mask=m_ok[:, None] & (offs_d[None, :] < D))


# -- decode: split-KV over the cache, then the combine ----------------------------------------------
@triton.jit
def _decode_split_kernel(Q, K, V, OP, LP, ctx_lens, scale, n_q, splits, per_split,
                         stride_qb, stride_qr, stride_kb, stride_kt, stride_kh, stride_vb, stride_vt, stride_vh,
                         group, causal_off: tl.constexpr, D1: tl.constexpr, D2: tl.constexpr,
                         BLOCK_D1: tl.constexpr, BLOCK_D2: tl.constexpr, DV: tl.constexpr, BLOCK_DV: tl.constexpr,
                         BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr, IEEE: tl.constexpr,
                         V_IS_K1: tl.constexpr = False):
    """Program (sequence b, kv head hk and a block of BLOCK_R of its rows, split s): the group's query
    rows (row = token * group + head, packed GQA) against keys [s * per_split, (s + 1) * per_split) of the context. Scores are
    q[:D1] . k[:D1] + q[D1:D1+D2] . k[D1:D1+D2] (D2 = 0: plain heads; MLA: latent + rope). With
    V_IN_K the V pointer is K itself (MLA: V = the latent, the first DV channels of the cache row), and
    `V_IS_K1` (DV = D1) takes V from the K tile already loaded: each latent row is read once for both
    dots. Scores in base 2 (scale x log2(e) in one multiply, exp2). Writes fp32 partial outputs and
    natural-log log-sum-exps; `causal_off` = 1 applies the bottom-right causal mask among the step's n_q
    query tokens."""
    b = tl.program_id(0).to(tl.int64)  # int64: b * stride_kb passes 2^31 for large caches
    n_rb = (n_q * group + BLOCK_R - 1) // BLOCK_R  # row blocks per kv head
    hk = (tl.program_id(1) // n_rb).to(tl.int64)
    rb = tl.program_id(1) % n_rb
    sp = tl.program_id(2)
    L = tl.load(ctx_lens + b)
    offs_r = rb * BLOCK_R + tl.arange(0, BLOCK_R)
    r_ok = offs_r < n_q * group
    tok = offs_r // group
    head = hk * group + offs_r % group
    offs_n = tl.arange(0, BLOCK_N)
    o1 = tl.arange(0, BLOCK_D1)
    heads_q = group * (tl.num_programs(1) // n_rb)
    q1 = tl.load(Q + b * stride_qb + (tok * heads_q + head)[:, None] * stride_qr + o1[None, :],
                 mask=r_ok[:, None] & (o1[None, :] < D1), other=0.0)
    if D2 > 0:
        o2 = tl.arange(0, BLOCK_D2)
        q2 = tl.load(Q + b * stride_qb + (tok * heads_q + head)[:, None] * stride_qr + D1
                     + o2[None, :], mask=r_ok[:, None] & (o2[None, :] < D2), other=0.0)
    odv = tl.arange(0, BLOCK_DV)
    m_i = tl.full([BLOCK_R], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_R], dtype=tl.float32)
    acc = tl.zeros([BLOCK_R, BLOCK_DV], dtype=tl.float32)
    qk_scale = scale * 1.4426950408889634  # log2(e)
    lo = sp * per_split
    hi = tl.minimum(lo + per_split, L)
    for n0 in range(lo, hi, BLOCK_N):
        keys = n0 + offs_n
        n_ok = keys < hi
        kp = K + b * stride_kb + keys[:, None] * stride_kt + hk * stride_kh
        k1 = tl.load(kp + o1[None, :], mask=n_ok[:, None] & (o1[None, :] < D1), other=0.0)
        s = _dot(q1, tl.trans(k1), IEEE)
        if D2 > 0:
            k2 = tl.load(kp + D1 + o2[None, :], mask=n_ok[:, None] & (o2[None, :] < D2), other=0.0)
            s += _dot(q2, tl.trans(k2), IEEE)
        s = s * qk_scale
        live = n_ok[None, :] & r_ok[:, None]
        if causal_off:
            live = live & (keys[None, :] <= (tok + L - n_q)[:, None])
        s = tl.where(live, s, float("-inf"))
        if V_IS_K1:
            v = k1
        else:
            v = tl.load(V + b * stride_vb + keys[:, None] * stride_vt + hk * stride_vh + odv[None, :],
                        mask=n_ok[:, None] & (odv[None, :] < DV), other=0.0)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.math.exp2(m_i - m_safe)
        p = tl.math.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, IEEE)
        m_i = m_new
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    out_row = (b * n_q + tok) * heads_q + head  # [B, n_q, Hq] rows, then splits
    tl.store(OP + (out_row * splits + sp)[:, None] * DV + odv[None, :], acc / l_safe[:, None],
             mask=r_ok[:, None] & (odv[None, :] < DV))
    lse = tl.where(l_i == 0.0, float("-inf"), m_i * 0.6931471805599453 + tl.log(l_safe))  # ln(2) m + ln(l)
    tl.store(LP + out_row * splits + sp, lse, mask=r_ok)


@triton.jit
def _decode_combine_kernel(OP, LP, O, n_rows, splits, DV: tl.constexpr, BLOCK_DV: tl.constexpr,
                           BLOCK_S: tl.constexpr):
    """O = sum_s exp(lse_s - lse) O_s with lse = logsumexp_s lse_s, per query row."""
    r = tl.program_id(0).to(tl.int64)
    offs_s = tl.arange(0, BLOCK_S)
    s_ok = offs_s < splits
    lse_s = tl.load(LP + r * splits + offs_s, mask=s_ok, other=float("-inf"))
    m = tl.max(lse_s, 0)
    m = tl.where(m == float("-inf"), 0.0, m)
    w = tl.exp(lse_s - m)
    w = w / tl.maximum(tl.sum(w, 0), 1e-30)
    odv = tl.arange(0, BLOCK_DV)
    o_s = tl.load(OP + (r * splits + offs_s)[:, None] * DV + odv[None, :],
                  mask=s_ok[:, None] & (odv[None, :] < DV), other=0.0)
    tl.store(O + r * DV + odv, tl.sum(o_s * w[:, None], 0).to(O.dtype.element_ty), mask=odv < DV)


# -- configurations ----------------------------------------------------------------------------------
def default_splits(programs: int, sms: int, kv_blocks: int) -> int:
    """The decode's split count when the caller gives none: FlashAttention-2's heuristic
    (`model.num_splits_heuristic`, style "fa2": no split when the programs nearly fill the SMs, else the
    fewest splits whose wave efficiency reaches 85% of the best) on FA2's 2 x SMs, as the simulator's
    `attnsim` family splits (`model.split_sms`)."""
    from attnsim.simulator.model import num_splits_heuristic
    return num_splits_heuristic(programs, 2 * sms, kv_blocks, style="fa2")


FAMILY = "attnsim"  # the simulator's family of these kernels: their tiles, ranked as it prices them


def _pow2(n: int) -> int:
    return max(16, 1 << (int(n) - 1).bit_length())


def _space():
    """The simulator's Triton tile space (families._TRITON_SPACE: tutorial 06's autotune configs)."""
    from attnsim.simulator.families import _TRITON_SPACE
    return tuple((t.block_m, t.block_n, t.num_warps, t.stages) for t in _TRITON_SPACE)


CANDIDATES = _space()  # BLOCK_M, BLOCK_N, warps, stages


def _elem(dtype) -> str:
    """The simulator's element type of a torch dtype, for shared-memory sizes (fp32: 4 bytes)."""
    return {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype]


def _legal_tiles(cands, d, dv, dtype, device, hw, workload, mask, backward, part=None):
    """`cands` (BLOCK_M, BLOCK_N, warps, stages) that the simulator's `can_implement` (Triton family)
    accepts on `hw` (default: the CUDA device's profile), the tile `predict` chooses for `workload`
    (train, for the backward; `part` "dkdv" or "dq": that kernel's own tile and legality) first; under the
    interpreter one 16 x 16 config (autotune cannot run there); None when no profile matches the device."""
    if hw is None and (INTERPRET or device is None or device.type != "cuda"):
        return [(16, 16, 4, 1)]
    from attnsim.simulator.errors import AttnsimError
    from attnsim.simulator.families import Tile, can_implement, get_family
    from attnsim.simulator.masks import Mask
    hw = hw or hardware_of(device)
    if hw is None:
        return None
    fam = get_family(FAMILY)
    ok = [c for c in cands if can_implement(fam, hw, Tile(*c), _pow2(d), _pow2(dv), _elem(dtype), backward=backward,
                                            part=part).ok]
    if workload is not None and ok and (mask is None or isinstance(mask, Mask)):
        from attnsim.simulator.model import predict
        role, w = ("backward", workload.with_(phase="train")) if backward else ("forward", workload)
        try:
            kernels = predict(w, hw, FAMILY, mask).kernels_for(role)
            t = next(k for k in kernels if part is None or k.name == f"attn_bwd_{part}").tile_obj
            best = (t.block_m, t.block_n, t.num_warps, t.stages)
            if best in ok:
                ok.remove(best)
                ok.insert(0, best)
        except (AttnsimError, IndexError, StopIteration):
            pass  # a mask the simulator prices with other tiles (boxes): the legal order stands
    return ok


# Tiles below the autotune spaces, for a device on which none of a space fits (MI300X's 64 KiB LDS at head
# dim 256): the first one the legality check accepts, else the last (Triton then refuses it at launch
# and says what does not fit). The simulator prices only the spaces, so it has no tile to match here.
_FWD_FALLBACKS = ((64, 32, 4, 1), (32, 32, 4, 1), (16, 32, 4, 1), (16, 16, 4, 1))
_BWD_FALLBACKS = ((16, 32, 4, 1), (16, 16, 4, 1))


def _fallback(tiles, d, dv, dtype, device, hw, backward):
    ok = _legal_tiles(list(tiles), d, dv, dtype, device, hw, None, None, backward)
    return (ok or [tiles[-1]])[:1]


def bwd_configs(d: int, dv: int, dtype: torch.dtype, device=None, hw=None, workload=None, mask=None,
                part: str | None = None):
    """Backward tiles: the simulator's Triton backward candidates that `can_implement(backward=True)`
    accepts, the tile `predict` chooses for the call's training workload first. `part` ("dkdv", "dq"):
    the tiles of that kernel (its own compiled facts, its own predicted tile); None: tiles both accept."""
    from attnsim.simulator.families import bwd_tile_candidates, get_family
    prof = hw or (None if INTERPRET or device is None or device.type != "cuda" else hardware_of(device))
    cands = [] if prof is None else [(t.block_m, t.block_n, t.num_warps, t.stages)
                                     for t in bwd_tile_candidates(get_family(FAMILY), prof, d, dv, False, "bf16")]
    ok = _legal_tiles(cands, d, dv, dtype, device, prof, workload, mask, backward=True, part=part)
    return [(32, 64, 4, 1)] if ok is None else (ok or _fallback(_BWD_FALLBACKS, d, dv, dtype, device, prof, True))


def configs(d: int, dv: int, dtype: torch.dtype, device=None, hw=None, workload=None, mask=None):
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) candidates: the simulator's Triton tile space filtered
    by its legality check (`can_implement`) on the hardware profile `hw` (default: the CUDA
    device's). With a `workload` (and its `mask`), the tile the simulator predicts fastest for it
    comes first — the kernel runs what the model prices. Under the interpreter one small config
    (autotune cannot run there)."""
    ok = _legal_tiles(CANDIDATES, d, dv, dtype, device, hw, workload, mask, backward=False)
    return [(64, 64, 4, 2)] if ok is None else (ok or _fallback(_FWD_FALLBACKS, d, dv, dtype, device, hw, False))


def hardware_of(device, name: str | None = None):
    """The shipped hardware profile that matches the CUDA device's name (or `name`), or None: a profile
    matches when every word of its key or an alias is a word of the name ('-', '_' and spaces alike),
    and the alias with the most words wins ("NVIDIA A100 80GB PCIe" -> the PCIe profile, not SXM)."""
    from attnsim.simulator.hardware import builtin_profiles
    words = set(re.split(r"[\s_-]+", (name or torch.cuda.get_device_name(device)).lower()))
    best, best_n = None, 0
    for h in builtin_profiles().values():
        for alias in (h.key, *h.aliases):
            aw = set(re.split(r"[\s_-]+", alias.lower()))
            if aw <= words and len(aw) > best_n and any(len(x) >= 4 for x in aw):
                best, best_n = h, len(aw)
    return best


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float32 if (INTERPRET and t.dtype == torch.bfloat16) else t.dtype


# -- host side ---------------------------------------------------------------------------------------
def _packed(x, lens):
    """(B, H, L, d) -> (B * L, H, d) contiguous; varlen (total, H, d) made contiguous."""
    return x.contiguous() if lens is not None else x.transpose(1, 2).reshape(-1, x.shape[1], x.shape[3]).contiguous()


def _cu(cu, total, what):
    """Validated cumulative offsets: integers, starting at 0, non-decreasing, ending at the packed token count."""
    c = checks.integers(cu, what)
    if len(c) < 2 or c[0] != 0 or any(b < a for a, b in zip(c, c[1:])) or c[-1] != total:
        raise ValueError(f"{what} must start at 0, never decrease and end at the {total} packed tokens; got {c}")
    return c


def _check_inputs(q, k, v, varlen):
    """q, k, v checked by the shared helpers: tensors of one float dtype and device, shapes that agree,
    batch, heads and head dims at least 1 (sequence lengths may be 0). Returns {label: size}."""
    lead = ("tokens_q",) if varlen else ("batch",)
    lead_k = ("tokens_kv",) if varlen else ("batch",)
    mid_q = ("heads_q",) if varlen else ("heads_q", "seqlen_q")
    mid_k = ("heads_kv",) if varlen else ("heads_kv", "seqlen_kv")
    return checks.operands([("q", q, lead + mid_q + ("head_dim",)), ("k", k, lead_k + mid_k + ("head_dim",)),
                            ("v", v, lead_k + mid_k + ("head_dim_v",))],
                           positive={"batch", "heads_q", "heads_kv", "head_dim", "head_dim_v"})


def _freeze(v):
    """A hashable, exact stand-in for a parameter value (arrays by their bytes: repr abbreviates them)."""
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, (np.ndarray, torch.Tensor)):
        a = np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v)
        return ("array", a.shape, str(a.dtype), hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest())
    return v


_PLANS: dict = {}
PLAN_CACHE_SIZE = 64


def cached_plan(key, transpose: bool, build):
    """A plan built on the host once per (variant, parameters, causality, sequence lengths, tiles,
    direction): a training loop calls the kernel with the same shapes every step. Oldest out first."""
    k = (key, transpose)
    if k not in _PLANS:
        if len(_PLANS) >= PLAN_CACHE_SIZE:
            _PLANS.pop(next(iter(_PLANS)))
        _PLANS[k] = build()
    return _PLANS[k]


def _box_tiles(mask, bm, bn):
    """BLOCK_M/BLOCK_N of a neighborhood mask: the tokens of the user's q_tile/kv_tile boxes when
    given (each a power of two of at least 16 tokens: tl.dot's smallest block), else the config's."""
    out = []
    for box, dflt, what in ((mask.q_tile, bm, "q_tile"), (mask.kv_tile, bn, "kv_tile")):
        if box is None or mask.token_order != "tiled":
            out.append(dflt)
            continue
        n = int(np.prod(box))
        if n < 16 or n & (n - 1):
            raise ValueError(f"{what}={'x'.join(map(str, box))} holds {n} tokens; the kernel's tiles hold a power of "
                             f"two of at least 16 tokens")
        out.append(n)
    return tuple(out)


class _Problem:
    """Shapes, the plan and the packed tensors of one call."""

    def __init__(self, q, k, v, variant, params, cu_seqlens_q=None, cu_seqlens_k=None):
        if cu_seqlens_q is None and cu_seqlens_k is not None:
            raise ValueError("cu_seqlens_k given without cu_seqlens_q: varlen takes both (or cu_seqlens_q for both)")
        if not isinstance(variant, str):
            raise TypeError(f"variant={variant!r} must be a variant name (str), e.g. 'mha', 'swa', 'block_list'")
        self.varlen = cu_seqlens_q is not None
        _check_inputs(q, k, v, self.varlen)
        if self.varlen:
            cq = _cu(cu_seqlens_q, q.shape[0], "cu_seqlens_q")
            ck = _cu(cu_seqlens_k if cu_seqlens_k is not None else cu_seqlens_q, k.shape[0], "cu_seqlens_k")
            if len(cq) != len(ck):
                raise ValueError(f"cu_seqlens_q has {len(cq) - 1} sequences, cu_seqlens_k {len(ck) - 1}")
            self.seqs = [(cq[i + 1] - cq[i], ck[i + 1] - ck[i]) for i in range(len(cq) - 1)]
            self.hq, self.hkv = q.shape[1], k.shape[1]
            self.batch = len(self.seqs)
        else:
            self.batch, self.hq, lq, _ = q.shape
            self.hkv, lk = k.shape[1], k.shape[2]
            self.seqs = [(lq, lk)] * self.batch
        if self.hq % self.hkv:
            raise ValueError(f"query heads {self.hq} must be a multiple of kv heads {self.hkv} (GQA/MQA/SQA)")
        self.d, self.dv = q.shape[-1], v.shape[-1]
        params = dict(params)
        self.causal = checks.flag(params.pop("causal", False), "causal")
        self.scale = checks.scale(params.pop("scale", None), self.d)
        self.variant, self.params = variant, params
        masks = {shape: mask_of(variant, params, self.causal, *shape) for shape in set(self.seqs)}
        self.mask = next(iter(masks.values()))
        self.workload = self._workload(q)
        bm, bn, self.warps, self.stages = configs(self.d, self.dv, q.dtype, q.device, workload=self.workload,
                                                  mask=self.mask)[0]
        if getattr(self.mask, "token_order", None) is not None:
            if len(set(self.seqs)) > 1:
                raise ValueError("a token-grid variant takes sequences of one length (its grid's)")
            bm, bn = _box_tiles(self.mask, bm, bn)
        self.order = token_order(self.mask, bm, bn)
        self.key = (variant, _freeze(params), self.causal, tuple(self.seqs), bm, bn)
        self.plan = cached_plan(self.key, False, lambda: build_plan(self.mask, self.seqs, bm, bn, self.order))
        self.bm, self.bn = bm, bn
        dev = q.device
        self.rows = torch.as_tensor(self.plan.rows, device=dev)
        self.kv_start = torch.as_tensor(self.plan.kv_start, device=dev)
        self.part = torch.as_tensor(self.plan.part, device=dev)
        self.masks = torch.as_tensor(self.plan.masks, device=dev).contiguous()
        self.first_partial = torch.as_tensor(self.plan.first_partial, device=dev)


    def _workload(self, q):
        """The simulator's Workload of this call (packed varlen as per-sequence lengths when square)."""
        from attnsim.simulator.workload import Workload
        lq, lk = self.seqs[0]
        name = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "bf16"}[q.dtype]  # fp32: priced as bf16
        if self.varlen and any(a != b for a, b in self.seqs):
            return None
        try:
            return Workload(batch=self.batch, seqlen_q=lq, seqlen_kv=lk, heads_q=self.hq, heads_kv=self.hkv,
                            head_dim_qk=self.d, head_dim_v=self.dv, dtype=name, causal=self.causal,
                            seqlens=tuple(a for a, _ in self.seqs) if self.varlen else None)
        except Exception:
            return None

    def permute(self, x, which):
        """Packed (tokens, H, d) into the kernel's token order (NATTEN's permutation for tiled
        neighborhoods: box-major, per dilation group, padding slots zero)."""
        if self.order is None:
            return x
        perm = torch.as_tensor(self.order[0 if which == "q" else 1], device=x.device)
        n = self.seqs[0][0 if which == "q" else 1]
        src = x.view(-1, n, *x.shape[1:])
        out = src.new_zeros(src.shape[0], len(perm), *x.shape[1:])
        out[:, perm >= 0] = src[:, perm[perm >= 0]]
        return out.reshape(-1, *x.shape[1:])

    def unpermute(self, x):
        if self.order is None:
            return x
        perm = torch.as_tensor(self.order[0], device=x.device)
        src = x.view(-1, len(perm), *x.shape[1:])
        out = src.new_empty(src.shape[0], self.seqs[0][0], *x.shape[1:])
        out[:, perm[perm >= 0]] = src[:, perm >= 0]
        return out.reshape(-1, *x.shape[1:])


def _launchable(device):
    checks.launchable(device, INTERPRET, os.environ.get("TRITON_INTERPRET"))


def _fwd(pb: _Problem, q, k, v):
    """Packed q (Tq, Hq, d), k (Tk, Hkv, d), v (Tk, Hkv, dv) in kernel order -> (o, lse)."""
    o = torch.empty(q.shape[0], pb.hq, pb.dv, device=q.device, dtype=q.dtype)
    lse = torch.empty(q.shape[0], pb.hq, device=q.device, dtype=torch.float32)
    grid = (pb.rows.shape[0], pb.hq)
    _fwd_kernel[grid](q, k, v, o, lse, pb.rows, pb.kv_start, pb.part, pb.masks, pb.first_partial, pb.scale,
                      q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
                      o.stride(0), o.stride(1), pb.hq // pb.hkv, D=pb.d, DV=pb.dv, BLOCK_D=_pow2(pb.d),
                      BLOCK_DV=_pow2(pb.dv), BLOCK_M=pb.bm, BLOCK_N=pb.bn, IEEE=q.dtype == torch.float32,
                      num_warps=pb.warps, num_stages=pb.stages)
    return o, lse


def _bwd(pb: _Problem, q, k, v, o, lse, do):
    n_rows = q.shape[0] * pb.hq
    delta = torch.empty(q.shape[0], pb.hq, device=q.device, dtype=torch.float32)
    _bwd_preprocess[(triton.cdiv(n_rows, 64),)](o.contiguous(), do.contiguous(), delta, n_rows, DV=pb.dv,
                                                 BLOCK_DV=_pow2(pb.dv), BLOCK=64)
    if pb.order is not None:  # the tokens sit in the forward's box order: keep its tiles
        tkv = tq = (pb.bm, pb.bn, pb.warps, pb.stages)
    else:  # each backward kernel's own tile (they hold more per tile: dK, dV accumulators, Q and dO; dQ, K, V)
        tkv, tq = (bwd_configs(pb.d, pb.dv, q.dtype, q.device, workload=pb.workload, mask=pb.mask, part=part)[0]
                   for part in ("dkdv", "dq"))
    fplan = cached_plan(pb.key[:-2] + tq[:2], False, lambda: build_plan(pb.mask, pb.seqs, tq[0], tq[1], pb.order))
    tplan = cached_plan(pb.key[:-2] + tkv[:2], True,
                        lambda: build_plan(pb.mask, pb.seqs, tkv[0], tkv[1], pb.order, transpose=True))
    dev = q.device
    t_rows, t_start, t_part, t_masks, t_mid, f_rows, f_start, f_part, f_masks, f_mid = (
        torch.as_tensor(x, device=dev).contiguous() for x in (
            tplan.rows, tplan.kv_start, tplan.part, tplan.masks, tplan.first_partial,
            fplan.rows, fplan.kv_start, fplan.part, fplan.masks, fplan.first_partial))
    group = pb.hq // pb.hkv
    dk = torch.zeros(k.shape[0], pb.hq, pb.d, device=dev, dtype=torch.float32)  # per query head
    dv = torch.zeros(k.shape[0], pb.hq, pb.dv, device=dev, dtype=torch.float32)
    do = do.contiguous()
    dims = dict(D=pb.d, DV=pb.dv, BLOCK_D=_pow2(pb.d), BLOCK_DV=_pow2(pb.dv), IEEE=q.dtype == torch.float32)
    _bwd_dkdv_kernel[(t_rows.shape[0], pb.hq)](
        q, k, v, do, lse, delta, dk, dv, t_rows, t_start, t_part, t_masks, t_mid, pb.scale, pb.hq,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), do.stride(0), do.stride(1),
        dk.stride(0), dk.stride(1), dv.stride(0), dv.stride(1), group, **dims, BLOCK_M=tkv[0], BLOCK_N=tkv[1],
        num_warps=tkv[2], num_stages=tkv[3])
    dq = torch.empty_like(q)
    _bwd_dq_kernel[(f_rows.shape[0], pb.hq)](
        q, k, v, do, lse, delta, dq, f_rows, f_start, f_part, f_masks, f_mid, pb.scale, pb.hq,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), do.stride(0), do.stride(1),
        group, **dims, BLOCK_M=tq[0], BLOCK_N=tq[1], num_warps=tq[2], num_stages=tq[3])
    dk = dk.view(k.shape[0], pb.hkv, group, pb.d).sum(2).to(k.dtype)
    dv = dv.view(k.shape[0], pb.hkv, group, pb.dv).sum(2).to(v.dtype)
    return dq, dk, dv


class _Attention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, pb):
        o, lse = _fwd(pb, q, k, v)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.pb = pb
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = _bwd(ctx.pb, q, k, v, o, lse, do)
        return dq, dk, dv, None


def attention(q, k, v, variant: str = "mha", cu_seqlens_q=None, cu_seqlens_k=None, **params):
    """Fused attention of `variant` (its mask from the simulator's definition, parameters named as
    `attnsim predict -p`, plus `causal` and `scale`). q (B, Hq, Lq, d), k (B, Hkv, Lk, d),
    v (B, Hkv, Lk, dv); varlen: packed (total, H, d) with cu_seqlens_q/k. Differentiable."""
    pb = _Problem(q, k, v, variant, params, cu_seqlens_q, cu_seqlens_k)
    _launchable(q.device)
    dt = _compute_dtype(q)
    lens = None if not pb.varlen else True
    qp, kp, vp = (pb.permute(_packed(x.to(dt), lens), w) for x, w in ((q, "q"), (k, "k"), (v, "k")))
    o = _Attention.apply(qp, kp, vp, pb)
    o = pb.unpermute(o)
    if pb.varlen:
        return o.to(q.dtype)
    return o.view(pb.batch, -1, pb.hq, pb.dv).transpose(1, 2).to(q.dtype)


def prepared_forward(q, k, v, variant: str = "mha", **params):
    """A zero-argument function that launches only the forward kernel on these inputs, packed and
    planned once: what a benchmark times (the plan is built on the host once per shape and mask)."""
    pb = _Problem(q, k, v, variant, params, None, None)
    _launchable(q.device)
    dt = _compute_dtype(q)
    qp, kp, vp = (pb.permute(_packed(x.to(dt), None), w) for x, w in ((q, "q"), (k, "k"), (v, "k")))
    return lambda: _fwd(pb, qp, kp, vp)


def plan_of(q, k, v, variant: str = "mha", cu_seqlens_q=None, cu_seqlens_k=None, **params):
    """The launch plan `attention` would run (tile list, partial masks, counts)."""
    return _Problem(q, k, v, variant, params, cu_seqlens_q, cu_seqlens_k).plan


def prepared_decode(q, k_cache, v_cache=None, ctx_lens=None, causal: bool = True, splits: int | None = None,
                    rope_dim: int = 0, scale: float | None = None):
    """(launch, output shape): `launch()` runs the split and combine kernels of `decode` on inputs
    validated and packed once (what a benchmark times); see `decode` for the arguments."""
    v_in_k = v_cache is None
    size = checks.operands([("q", q, ("batch", "heads_q", "step_tokens", "head_dim")),
                            ("k_cache", k_cache, ("batch", "heads_kv", "context", "head_dim")),
                            ("v_cache", v_cache, ("batch", "heads_kv", "context", "head_dim_v"))],
                           positive={"batch", "heads_q", "heads_kv", "step_tokens", "head_dim", "head_dim_v"})
    B, Hq, n_q, d, Hkv, L = (size[x] for x in ("batch", "heads_q", "step_tokens", "head_dim", "heads_kv", "context"))
    if Hq % Hkv:
        raise ValueError(f"query heads {Hq} must be a multiple of kv heads {Hkv}")
    causal = checks.flag(causal, "causal")
    rope_dim = checks.integer(rope_dim, "rope_dim", 0, d - 1)
    if rope_dim and not v_in_k:
        raise ValueError(f"rope_dim={rope_dim}: 0..{d - 1}, and only for a latent cache (v_cache=None)")
    shortest = n_q if causal else 1  # every step token sees at least one key (causal: bottom-right aligned)
    need = f"at least {shortest}" + (f" (causal=True: one key per step token, {n_q} of them)" if causal else "")
    if ctx_lens is None:
        if L < shortest:
            raise ValueError(f"k_cache's context is {L}: it must hold {need}; or pass ctx_lens")
        lens_list = [L] * B
    else:
        lens_list = checks.integers(ctx_lens, "ctx_lens")
        if len(lens_list) != B or not all(shortest <= x <= L for x in lens_list):
            raise ValueError(f"ctx_lens: one context length per sequence ({B}), each {need} and at most {L} (the "
                             f"cache's length); got {lens_list}")
    if splits is not None:
        splits = checks.integer(splits, "splits", 1)
    sc = checks.scale(scale, d)
    _launchable(q.device)
    dv = (d - rope_dim) if v_in_k else v_cache.shape[-1]
    dt = _compute_dtype(q)
    qs = q.to(dt).transpose(1, 2).reshape(B, n_q * Hq, d).contiguous()  # row = token * Hq + head (small)
    kc = k_cache.to(dt).transpose(1, 2)  # (B, L, Hkv, d) strides over the caller's cache: no copy of it
    vc = kc if v_in_k else v_cache.to(dt).transpose(1, 2)
    if kc.stride(-1) != 1 or vc.stride(-1) != 1:
        raise ValueError("the cache's head_dim must be its innermost, contiguous dimension")
    lens = torch.tensor(lens_list, dtype=torch.int32, device=q.device)
    group = Hq // Hkv
    rows = n_q * group
    wide = max(_pow2(d), _pow2(dv)) >= 256  # MLA's latent, head dims over 128 (as padded): fewer rows and keys per
    # program, more warps (registers, smem); the simulator's `attnsim` decode tiles make the same choice
    block_r = min(_pow2(rows), 16 if (wide or INTERPRET) else 64)
    n_rb = triton.cdiv(rows, block_r)
    block_n = 16 if INTERPRET else (32 if wide else 64)
    warps = 8 if wide else 4
    if splits is None:  # FlashAttention-2's wave-efficiency search over split counts
        sms = 1 if q.device.type != "cuda" else torch.cuda.get_device_properties(q.device).multi_processor_count
        splits = default_splits(B * Hkv * n_rb, sms, triton.cdiv(L, block_n))
    per = triton.cdiv(triton.cdiv(L, splits), block_n) * block_n
    op = torch.empty(B * n_q * Hq * splits, dv, device=q.device, dtype=torch.float32)
    lp = torch.empty(B * n_q * Hq * splits, device=q.device, dtype=torch.float32)
    o = torch.empty(B * n_q * Hq, dv, device=q.device, dtype=q.dtype if not INTERPRET else dt)
    d1, d2 = (d - rope_dim, rope_dim) if rope_dim else (d, 0)

    def launch():
        _decode_split_kernel[(B, Hkv * n_rb, splits)](
            qs, kc, vc, op, lp, lens, sc, n_q, splits, per,
            qs.stride(0), qs.stride(1), kc.stride(0), kc.stride(1), kc.stride(2), vc.stride(0), vc.stride(1),
            vc.stride(2), group, causal_off=1 if causal else 0, D1=d1, D2=d2, BLOCK_D1=_pow2(d1),
            BLOCK_D2=_pow2(d2) if d2 else 16, DV=dv, BLOCK_DV=_pow2(dv), BLOCK_R=block_r, BLOCK_N=block_n,
            V_IS_K1=bool(v_in_k and dv == d1),
            IEEE=dt == torch.float32, num_warps=warps, num_stages=2)
        _decode_combine_kernel[(B * n_q * Hq,)](op, lp, o, B * n_q * Hq, splits, DV=dv, BLOCK_DV=_pow2(dv),
                                                BLOCK_S=_pow2(splits))
        return o

    return launch, (B, n_q, Hq, dv)


def decode(q, k_cache, v_cache=None, ctx_lens=None, causal: bool = True, splits: int | None = None,
           rope_dim: int = 0, scale: float | None = None):
    """Split-KV decode. q (B, Hq, n_q, d) — the step's query tokens; k_cache (B, Hkv, L, d) and
    v_cache (B, Hkv, L, dv). MLA absorbed: v_cache=None and rope_dim > 0 — k_cache (B, 1, L,
    rank + rope) is the latent cache, V its first `rank` channels, q (B, H, n_q, rank + rope) the
    absorbed queries. ctx_lens: per-sequence context lengths (default L). Returns (B, Hq, n_q, dv)."""
    launch, (B, n_q, Hq, dv) = prepared_decode(q, k_cache, v_cache, ctx_lens, causal, splits, rope_dim, scale)
    return launch().view(B, n_q, Hq, dv).transpose(1, 2).to(q.dtype)


__all__ = ["attention", "decode", "plan_of", "prepared_forward", "prepared_decode", "configs", "bwd_configs",
           "hardware_of"]
