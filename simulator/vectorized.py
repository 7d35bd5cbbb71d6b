"""The vectorized prediction for sweeps: the same model as `model.predict`, over numpy arrays.

Differences from the single prediction, both tested against it:
* tile counts come from closed forms (dense: two row classes; causal: sums of floors of
  arithmetic progressions), exact;
* the makespan is the closed form max(longest CTA, waves x mean CTA) instead of the LPT list
  schedule, and a CTA class's duration sums compute and streaming before taking the larger.
Supports the fused prefill forward of dense and causal masks (mha/gqa/mqa) for fa2/fa3/fa4/triton.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .bound import attention_work, unit_times
from .errors import AttnsimError
from .families import can_implement, check_family, fwd_tile_candidates
from .hardware import DTYPE_BYTES, Hardware
from . import schedule
from .masks import CausalMask, DenseMask
from .model import SMRates, _fwd_tile_costs, resolve_family


def floor_sum(n, m, a, b):
    """sum_{i=0}^{n-1} floor((a*i + b) / m), elementwise over int64 arrays (n >= 0, m >= 1, a, b >= 0)."""
    n, m, a, b = (np.array(x, dtype=np.int64) for x in np.broadcast_arrays(n, m, a, b))
    ans = np.zeros_like(n)
    active = n > 0
    while active.any():
        q = np.where(active, a // m, 0)
        ans += np.where(active, (n - 1) * n // 2 * q, 0)
        a = np.where(active, a % m, a)
        q = np.where(active, b // m, 0)
        ans += np.where(active, n * q, 0)
        b = np.where(active, b % m, b)
        y = a * n + b
        active &= y >= m
        n, b, m, a = (np.where(active, y // m, n), np.where(active, y % m, b),
                      np.where(active, a, m), np.where(active, m, a))
    return ans


def _affine_sum(r0, r1, step, base, div):
    """sum over r in [r0, r1) of floor((step*r + base) / div), for step*r + base >= 0 on the range."""
    n = np.maximum(r1 - r0, 0)
    return floor_sum(n, div, step, step * np.maximum(r0, 0) + base)


def causal_row_totals(lq, lk, bm, bn):
    """Exact (full, non-empty) kv-tile totals over all query tiles of a bottom-right causal mask:
    per complete row r the counts are floor((affine in r) / bn), summed with `floor_sum`."""
    off = lk - lq
    n_qf = lq // bm  # complete query tiles
    n_kv = -(-lk // bn)
    # non-empty of complete row r: floor((r*bm + bm - 1 + off) / bn) + 1 while 0 <= num <= lk - 1
    r_lo = np.clip(-(-(-off - bm + 1) // bm), 0, n_qf)  # first r with num >= 0
    r_sat = np.clip(-(-(lk - bm - off) // bm), r_lo, n_qf)  # first r with num >= lk - 1
    ne = _affine_sum(r_lo, r_sat, bm, bm - 1 + off, bn) + (r_sat - r_lo) + (n_qf - r_sat) * n_kv
    # full of complete row r: floor(min(r*bm + off + 1, lk) / bn) while r*bm + off + 1 > 0
    f_lo = np.clip(-(-(-off) // bm), 0, n_qf)  # first r with r*bm + off + 1 >= 1
    f_sat = np.clip(-(-(lk - off - 1) // bm), f_lo, n_qf)  # first r with r*bm + off + 1 >= lk
    full = _affine_sum(f_lo, f_sat, bm, off + 1, bn) + (n_qf - f_sat) * (lk // bn)
    # the ragged last row (rows n_qf*bm .. lq-1) is all partial
    last = np.minimum(lq - 1 + off, lk - 1)
    ne_rag = np.where((lq % bm != 0) & (last >= 0), last // bn + 1, 0)
    return full, ne + ne_rag


def dense_row_totals(lq, lk, bm, bn):
    n_kv = -(-lk // bn)
    return (lq // bm) * (lk // bn), -(-lq // bm) * n_kv


def _row(mask, r, lq, lk, bm, bn):
    """(full, partial) kv tiles of query tile r (clipped to the last tile), via the mask's own row_tiles."""
    r = np.minimum(r, -(-lq // bm) - 1)
    q_lo = r * bm
    f, ne = mask.row_tiles(q_lo, np.minimum(q_lo + bm, lq) - 1, q_lo + bm <= lq, lq, lk, bn)
    return f, ne - f


def predict_many(hw: Hardware, kernel: str | None = None, *, batch, seqlen_q, seqlen_kv=None, heads_q,
                 heads_kv=None, head_dim_qk, head_dim_v=None, causal=False, dtype: str = "bf16",
                 phase: str = "prefill") -> dict:
    """Vectorized prediction of the fused prefill forward over broadcast arrays of configurations.

    Returns a dict of arrays: time_s, bound_s, flops (executed), useful_flops, hbm_bytes, tiles_full,
    tiles_partial, tiles_empty, waves, ctas. Shapes follow numpy broadcasting of the inputs.
    """
    if phase != "prefill":
        raise AttnsimError(f"predict_many supports phase='prefill'; got {phase!r} (use predict() per configuration)")
    fam = resolve_family(hw, kernel)
    seqlen_kv = seqlen_q if seqlen_kv is None else seqlen_kv
    heads_kv = heads_q if heads_kv is None else heads_kv
    head_dim_v = head_dim_qk if head_dim_v is None else head_dim_v
    B, LQ, LK, HQ, HKV, D, DV, CAUSAL = (np.asarray(x) for x in np.broadcast_arrays(
        batch, seqlen_q, seqlen_kv, heads_q, heads_kv, head_dim_qk, head_dim_v, causal))
    shape = B.shape  # work on flat arrays, reshape the results at the end
    B, LQ, LK, HQ, HKV, D, DV = (x.astype(np.int64).ravel() for x in (B, LQ, LK, HQ, HKV, D, DV))
    CAUSAL = CAUSAL.astype(bool).ravel()
    for name, x in (("batch", B), ("seqlen_q", LQ), ("seqlen_kv", LK), ("heads_q", HQ), ("heads_kv", HKV),
                    ("head_dim_qk", D), ("head_dim_v", DV)):
        if x.size and x.min() < 1:
            raise AttnsimError(f"{name} must be positive everywhere; min is {x.min()}")
    if (HQ % HKV).any():
        raise AttnsimError("heads_q must be divisible by heads_kv everywhere")
    check_family(fam, hw, dtype, int(D.max()), int(DV.max()))
    s = DTYPE_BYTES[dtype]
    rates = SMRates.of(hw, fam, dtype, "fp32")
    lat = hw.dram_latency_s
    slices = B * HQ
    dp_of = np.array([fam.pad_head_dim(int(x)) or 0 for x in range(int(max(D.max(), DV.max())) + 1)])
    DP, DVP = dp_of[D], dp_of[DV]

    n = B.size
    out = {"time_s": np.full(n, np.inf), "waves": np.zeros(n)}
    for k in ("flops", "tiles_full", "tiles_partial", "tiles_empty", "ctas"):
        out[k] = np.zeros(n, dtype=np.int64)
    # group the configurations by what picks the tile: padded head dims and causal
    span = int(dp_of.max()) + 1
    key = (DP * span + DVP) * 2 + CAUSAL  # few distinct values: bincount beats a sort
    for kv in np.flatnonzero(np.bincount(key)):
        dp, dvp, c = kv // 2 // span, kv // 2 % span, kv % 2
        sel = key == kv
        lq, lk, sl = LQ[sel], LK[sel], slices[sel]
        d, dv = D[sel], DV[sel]
        legal = [(t, can_implement(fam, hw, t, int(dp), int(dvp), dtype))
                 for t in fwd_tile_candidates(fam, hw, int(dp), int(dvp), bool(c), dtype)]
        legal = [(t, leg) for t, leg in legal if leg.ok]
        # the family's policy, as in model._choose: its table's first legal tile, or (autotune) the fastest
        for tile, leg in (legal if fam.autotune else legal[:1]):
            bm, bn = tile.block_m, tile.block_n
            n_q = -(-lq // bm)
            n_kv = -(-lk // bn)
            n_ctas = sl * n_q
            k = np.maximum(1, np.minimum(leg.ctas_per_sm, -(-n_ctas // hw.sm_count)))
            mask = CausalMask() if c else DenseMask()
            full, ne = (causal_row_totals if c else dense_row_totals)(lq, lk, bm, bn)
            part = ne - full
            # per-tile times scale with k (slot share); _fwd_tile_costs is linear in k
            tc = _fwd_tile_costs(hw, fam, tile, 1, int(dp), int(dvp), s, s, rates)

            def duration(f, p):
                return 2 * lat + np.maximum((f * tc.t_full + p * tc.t_partial) * k, (f + p) * lat / tile.stages)

            total = n_q * 2 * lat + np.maximum((full * tc.t_full + part * tc.t_partial) * k,
                                               ne * lat / tile.stages)  # one slice's CTAs
            # longest CTA: the last complete query tile or the ragged one; shortest: the first
            t_max = np.maximum(duration(*_row(mask, lq // bm - 1 + (lq < bm), lq, lk, bm, bn)),
                               duration(*_row(mask, n_q - 1, lq, lk, bm, bn)))
            t_min = duration(*_row(mask, 0 * lq, lq, lk, bm, bn))
            slots = hw.sm_count * k
            makespan = schedule.closed_makespan(n_ctas, total * sl, t_max, t_min, slots)
            hbm = sl * lq * (d + dv) * s + (sl // (HQ[sel] // HKV[sel])) * lk * (d + dv) * s + sl * lq * 4
            visited = ne * sl
            l2 = visited * bn * (d + dv) * s + sl * lq * (d + dv) * s
            t = hw.kernel_launch_overhead_s + np.maximum(np.maximum(makespan, hbm / hw.hbm_bandwidth_bytes_per_s),
                                                         l2 / hw.l2_bandwidth_bytes_per_s if hw.l2_bandwidth_bytes_per_s else 0.0)
            better = t < out["time_s"][sel]
            idx = np.flatnonzero(sel)[better]
            out["time_s"][idx] = t[better]
            out["flops"][idx] = (visited * int(tc.flops))[better]
            out["tiles_full"][idx] = (full * sl)[better]
            out["tiles_partial"][idx] = (part * sl)[better]
            out["tiles_empty"][idx] = ((n_q * n_kv - ne) * sl)[better]
            out["ctas"][idx] = n_ctas[better]
            out["waves"][idx] = (n_ctas / slots)[better]
    if np.isinf(out["time_s"]).any():
        raise AttnsimError(f"no legal forward tile of kernel family {fam.name!r} on {hw.name} for some configurations")
    live = np.where(CAUSAL, CausalMask().live_pairs(LQ, LK), LQ * LK)
    w = SimpleNamespace(batch=B, heads_q=HQ, heads_kv=HKV, seqlen_q=LQ, seqlen_kv=LK, head_dim_qk=D,
                        head_dim_v=DV, dtype=dtype, kv_dtype=dtype, qk_accum="fp32", pv_accum="fp32", phase=phase)
    work = attention_work(w, live)
    ut = unit_times(work, hw)
    out["bound_s"] = np.maximum.reduce([np.broadcast_to(v, (n,)) for v in ut.values()])
    out["useful_flops"] = 2 * (D + DV) * live * slices
    out["hbm_bytes"] = work.hbm_bytes + slices * LQ * 4
    return {k: v.reshape(shape) for k, v in out.items()}
