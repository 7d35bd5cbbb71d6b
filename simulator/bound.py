"""The speed-of-light bound: the time no implementation of the op can beat on this hardware.

bound_s = max over units u of max( W_u / R_u(device), w_u(largest indivisible piece) / R_u(one SM) )

at `clock_max_hz`, all units overlapping perfectly, efficiencies 1; no tiles, no schedule, no
launch overhead (DESIGN.md section 4). W_u is the *useful* work of unit u:

* tensor: the useful matmul FLOPs of each GEMM at its (dtype, accumulate) rate, summed;
* exp: one exponential per live score (train: two when the backward recomputes P). An exp can run on the SFU or be emulated by a polynomial on the FP32
  pipes (FlashAttention-4 does so on Blackwell), so the exp time is the LP optimum
  (n_exp + W_fp32 / c) / (R_sfu + R_fp32 / c) with c FP32 ops per emulated exp2, and never
  below W_fp32 / R_fp32;
* fp32: FP32 work that no tensor core can take (for softmax attention only a score function's own
  work, e.g. a Gaussian score; row sums and maxima could run on tensor cores or be folded into
  the exp argument; layer ops add RoPE, norms and convolutions);
* smem: K and V must be staged through shared memory at least once (written and read);
* hbm: compulsory traffic, each input read once and each output written once (train: Q, K, V read
  by both passes, dO read, O, dQ, dK, dV written — not O or the LSE read back, which can be
  recomputed; keeping P: P written and read back);
* l2: only where the profile holds a sourced L2 bandwidth (none yet), with the compulsory bytes.

Train takes the smaller bound of the two backward strategies (recompute P, keep P in HBM): see
`attention_work`. The largest indivisible piece of fused attention is one query row against one key — split-KV
splits even a single row across SMs — so its per-SM term is negligible and reported for
completeness.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .dtypes import DTYPE_BYTES
from .formulas import largest, num, smallest
from .hardware import Hardware
from .masks import mask_for, mask_sums
from .ops import Work
from .rates import Rates, peak_rates
from .workload import Workload


@dataclass(frozen=True)
class Bound:
    time_s: float
    unit: str  # the limiting unit
    unit_times_s: dict  # unit -> time at device peak (the piece terms folded in)
    strategy: str = ""  # train: the backward strategy that gives the smaller bound


def attention_work(w: Workload, live_pairs, keep_p: bool = False, live_keys=None, pairs_total=None) -> Work:
    """Useful work of the attention core for a workload whose mask has `live_pairs` per (batch, head).

    Forward per live pair: QK^T 2*d FLOPs (qk_accum; times qk_matmuls), PV 2*dv FLOPs (pv_accum), one
    exp, plus the score function's own work (score_sfu_ops, score_fp32_ops; the backward recomputes
    the SFU part and differentiates the FP32 part at twice its cost).
    Train adds the backward, in one of two ways:
    * recompute P (FlashAttention, the default and what `useful_flops` reports): 2*(3d + 2dv)
      FLOPs per live pair (S again, dQ, dK at the qk shape; dP, dV at the pv shape) and a second exp;
    * keep P (eager): 2*(2d + 2dv) FLOPs per live pair, no second exp, but P written to HBM in the
      forward and read back in the backward (dtype bytes per live pair each way).
    The bound of train is the smaller of the two (`bound`), so no implementation can beat it.
    `live_keys` (default seqlen_kv): keys that some query sees — only those must be read (a sliding
    window in decode reads the window, not the whole cache); dK and dV are written for every key.
    """
    n = w.batch * w.heads_q * live_pairs if pairs_total is None else pairs_total  # live pairs over every head
    d, dv, m = w.head_dim_qk, w.head_dim_v, w.qk_matmuls
    s, skv = DTYPE_BYTES[w.dtype], DTYPE_BYTES[w.kv_dtype]
    q = w.batch * w.heads_q * w.seqlen_q * d * s
    o = w.batch * w.heads_q * w.seqlen_q * dv * s
    kv_all = w.batch * w.heads_kv * w.seqlen_kv * w.seq_dims * skv + w.shared_operand_bytes()
    keys = w.seqlen_kv if live_keys is None else live_keys
    # live_keys of an aggregated batch is summed over its sequences: the per-layer table spans the longest
    kv = w.batch * w.heads_kv * keys * w.seq_dims * skv + w.shared_operand_bytes(np.minimum(keys, w.seqlen_kv))
    tensor = [(2.0 * m * d * n, w.dtype, w.qk_accum), (2.0 * dv * n, w.dtype, w.pv_accum)]
    hbm = q + kv + o
    exps = n * (1.0 + w.score_sfu_ops)
    fp32 = n * w.score_fp32_ops
    strategy = ""
    if w.phase == "train":
        qk_gemms = 2 if keep_p else 3
        tensor += [(qk_gemms * 2.0 * m * d * n, w.dtype, w.qk_accum), (2 * 2.0 * dv * n, w.dtype, w.pv_accum)]
        fp32 += 2 * n * w.score_fp32_ops  # the score function differentiated
        # compulsory: the forward reads Q, K, V and writes O; the backward reads Q, K, V and dO and
        # writes dQ, dK, dV. Reading O and the log-sum-exp back is avoidable (both can be recomputed
        # from Q, K, V, dO), so the bound does not count them.
        hbm = (q + kv + o) + (q + kv + o + q + kv_all)
        if keep_p:
            hbm = hbm + 2 * n * s
            strategy = "keep P in HBM"
        else:
            exps = 2.0 * n * (1.0 + w.score_sfu_ops)
            strategy = "recompute P"
    piece = [(2.0 * m * d, w.dtype, w.qk_accum), (2.0 * dv, w.dtype, w.pv_accum)]
    return Work(tensor=tensor, exp=exps, fp32=fp32, smem_bytes=2.0 * kv, hbm_bytes=hbm * 1.0,
                piece_tensor=piece, piece_exp=1.0, strategy=strategy)


def attention_work_alternatives(w: Workload, live_pairs, live_keys=None, pairs_total=None) -> list:
    """The ways the op can be done that the bound must consider (train: recompute or keep P)."""
    kw = dict(live_keys=live_keys, pairs_total=pairs_total)
    if w.phase == "train":
        return [attention_work(w, live_pairs, **kw), attention_work(w, live_pairs, keep_p=True, **kw)]
    return [attention_work(w, live_pairs, **kw)]


def unit_times(work: Work, hw: Hardware, clock_hz: float | None = None, r: Rates | None = None) -> dict:
    """Time of each unit's useful work at the device's peak rates (`peak_rates`: `clock_max_hz` by
    default, or `clock_hz`; or the rates `r`)."""
    r = peak_rates(hw, clock_hz) if r is None else r

    def tensor_time(items, n_sm):
        return sum(f / r.mma_device(dt, acc, n_sm) for f, dt, acc in items)

    def exp_time(n_exp, fp32, n_sm):
        r_sfu = r.exp_device(n_sm)
        r_fp32 = r.fp32_ops_device(n_sm)  # instructions/s: an FMA is 2 FLOPs, 1 op
        c = r.exp2_emulation_fp32_ops
        return np.maximum(fp32 / r_fp32, (n_exp + fp32 / c) / (r_sfu + r_fp32 / c))

    t = {
        "tensor": np.maximum(tensor_time(work.tensor, r.sm_count), tensor_time(work.piece_tensor, 1)),
        "exp": np.maximum(exp_time(work.exp, work.fp32, r.sm_count), exp_time(work.piece_exp, 0.0, 1)),
        "fp32": work.fp32 / r.fp32_ops_device(),
        "smem": work.smem_bytes / r.smem_device(),
        "hbm": work.hbm_bytes / r.hbm_bytes_per_s,
    }
    if r.l2_bytes_per_s:
        t["l2"] = work.hbm_bytes / r.l2_bytes_per_s
    return t


def bound_of(work: Work, hw: Hardware) -> Bound:
    t = {u: num(v) for u, v in unit_times(work, hw).items()}
    unit = max(t, key=t.get)
    return Bound(largest(t.values()), unit, t, work.strategy)


def min_bound(works, hw: Hardware) -> Bound:
    """The smallest bound over alternative ways of doing the op."""
    return smallest_bound([bound_of(wk, hw) for wk in works])


def smallest_bound(bounds) -> Bound:
    """The bound of the smallest time (its unit and strategy), its time the minimum over all of them."""
    best = min(bounds, key=lambda b: b.time_s)
    return replace(best, time_s=smallest(b.time_s for b in bounds))


def bound(w: Workload, hw: Hardware, mask=None) -> Bound:
    """Speed-of-light time of the attention core of `w` on `hw` (see the module docstring)."""
    mask = mask or mask_for(w.causal)
    pairs, keys = mask_sums(mask, w.real_segments(), w.heads_q)
    return min_bound(attention_work_alternatives(w.aggregate(w.real_segments()), None, keys, pairs_total=pairs), hw)
