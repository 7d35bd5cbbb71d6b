"""predict_many: the prediction over arrays of configurations, for every variant.

Dense and causal attention run on closed forms with `model`'s own kernel-time functions (tile totals
as sums of floors of arithmetic progressions; the longest and shortest CTA found exactly among a few
candidate tiles; FlashAttention's split heuristic elementwise in decode). Mask variants (prefill, train,
standard layout) resolve once per distinct geometry and are priced over the array of their batches
(`_by_geometry`). Every other variant, scope or family resolves (`problem.resolve`) and predicts each
configuration in turn. All return what `predict` returns, to 1e-9 (tests/test_vectorized.py,
tests/test_predict_many.py).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from types import SimpleNamespace

import numpy as np

from .bound import attention_work_alternatives, unit_times
from .dtypes import DTYPE_BYTES
from .errors import AttnsimError
from .families import (bwd_tile_candidates, can_implement, check_family, decode_block_m, decode_tile_candidates,
                       fwd_tile_candidates, packs_gqa_decode)
from .hardware import Hardware
from .masks import CausalMask, DenseMask, WindowMask, mask_sums, tile_rows
from .ops import Matmuls, Pointwise
from .model import (SMRates, TIE_REL, _bwd_tile_costs, _fwd_tile_costs, _kv_cols, _legal, backward_bytes,
                    backward_helpers, busy_time, cta_duration, decode_bytes, forward_bytes, kernel_time, resolve_family,
                    slot_tile_times, split_sms)
from .pricing import elementwise_time, run_waste_bytes
from .hardware import load_hardware
from .problem import DEFAULT_SEQLEN, predict_problem, resolve
from .variants import get_variant
from .workload import MAX_BATCH, MAX_HEAD_DIM, MAX_HEADS, MAX_TOKENS, MAX_WORK_FLOPS, Workload, check_limit
from .calibrations import choose
from .rates import rates


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
    """sum over r in [r0, r1) of floor((step*r + base) / div), for step*r + base >= 0 on the range.
    Tiles whose sizes divide one another (most tables) have plain arithmetic sums; `floor_sum` else."""
    n = np.maximum(r1 - r0, 0)
    b = step * np.maximum(r0, 0) + base  # sum_{i < n} floor((step i + b) / div)
    if step % div == 0:  # floor((q div i + b) / div) = q i + floor(b / div)
        return step // div * (n * (n - 1) // 2) + n * (b // div)
    if div % step == 0:  # floor((step i + b) / (q step)) = floor((i + c) / q), c = floor(b / step)
        q, c = div // step, b // step

        def prefix(m):  # sum_{x < m} floor(x / q)
            t = m // q
            return q * (t * (t - 1) // 2) + t * (m - q * t)
        return prefix(n + c) - prefix(c)
    return floor_sum(n, div, step, b)


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
    # the ragged last row (rows n_qf*bm .. lq-1): its rows past lq need no mask, so it counts like a
    # complete one (full from its first row, non-empty up to its last row)
    last = np.minimum(lq - 1 + off, lk - 1)
    ragged = lq % bm != 0
    ne_rag = np.where(ragged & (last >= 0), last // bn + 1, 0)
    m = np.minimum(n_qf * bm + off + 1, lk)
    full_rag = np.where(ragged & (m > 0), np.maximum(m, 0) // bn, 0)
    return full + full_rag, ne + ne_rag


def dense_row_totals(lq, lk, bm, bn):
    n_kv = -(-lk // bn)
    return -(-lq // bm) * (lk // bn), -(-lq // bm) * n_kv  # a ragged query tile is full where its keys are


def _row(mask, r, lq, lk, bm, bn):
    """(full, partial) kv tiles of query tile r (clipped to the last tile), via the mask's own row_tiles."""
    r = np.minimum(r, -(-lq // bm) - 1)
    q_lo = r * bm
    f, ne = mask.row_tiles(q_lo, np.minimum(q_lo + bm, lq) - 1, True, lq, lk, bn)  # query rows: always complete
    return f, ne - f


def _col(mask, c, lq, lk, bm, bn):
    """(full, partial) q tiles of kv tile c (clipped to the last tile), via the mask's own col_tiles."""
    c = np.minimum(np.maximum(c, 0), -(-lk // bn) - 1)
    k_lo = c * bn
    f, ne = mask.col_tiles(k_lo, np.minimum(k_lo + bn, lk) - 1, k_lo + bn <= lk, lq, lk, bm)
    return f, ne - f


def num_splits_many(bnm, num_sms: int, n_blocks, max_splits: int = 128, style: str = "fa2"):
    """FlashAttention's split heuristic (model.num_splits_heuristic, both styles), elementwise."""
    bnm, n_blocks = np.broadcast_arrays(np.asarray(bnm, dtype=np.int64), np.asarray(n_blocks, dtype=np.int64))
    cap = np.minimum(np.minimum(max_splits, num_sms), n_blocks)
    top = int(cap.max()) if cap.size else 1
    best = np.zeros(bnm.shape)

    def eff_of(sp):
        eligible = sp <= cap
        if style != "fa3":
            eligible = eligible & ((sp == 1) | (-(-n_blocks // sp) != -(-n_blocks // max(sp - 1, 1))))
        waves = bnm * sp / num_sms
        return eligible, waves / np.ceil(waves)

    for sp in range(1, top + 1):
        eligible, eff = eff_of(sp)
        best = np.where(eligible, np.maximum(best, eff), best)
    chosen = np.zeros(bnm.shape, dtype=np.int64)
    for sp in range(1, top + 1):
        eligible, eff = eff_of(sp)
        chosen = np.where((chosen == 0) & eligible & (eff >= 0.85 * best), sp, chosen)
    chosen = np.where(chosen == 0, 1, chosen)
    if style == "fa3":
        chosen = np.where(n_blocks <= 4, 1, chosen)
    return np.where(bnm >= 0.8 * num_sms, 1, chosen)


def _kernel(r, tc, tile, k, n_ctas, full, part, d_max, d_min, hbm, l2, groups=1, order="balanced"):
    """One tiled kernel over arrays of configurations: `model.kernel_time` (the scalar path's own
    function) on the totals of full and partial tiles and the longest and shortest CTA (`groups`, `order`:
    the grid's launch order under a causal mask, `model.launch_order`)."""
    a, b = slot_tile_times(tc, r, tile.stages)
    time_s = kernel_time(r, n_ctas, full, part, d_max, d_min, a, b, r.sm_count * k, hbm, l2, tc.t_cta, groups,
                         order)[0]
    visited, slots = np.asarray(full + part, dtype=float), r.sm_count * k
    busy = busy_time({u: v * visited / slots for u, v in tc.parts.items()})  # the units as model._finish has them
    return {"time_s": time_s, "flops": (full + part) * int(tc.flops), "hbm": hbm, "ctas": n_ctas,
            "waves": n_ctas / slots, "busy": busy}


_GEOMETRY = {}  # (direction, BLOCK_M, BLOCK_N, the distinct lengths) -> each candidate tile's (full, partial)
_GEOMETRY_MAX = 256  # entries, each of at most _GEOMETRY_PAIRS distinct length pairs (a few MB in all)
_GEOMETRY_PAIRS = 1024


def _geometry_key(direction, bm, bn, ulq, ulk):
    """The key of `_GEOMETRY` for few distinct lengths (a calibration's rows), else None (a large sweep
    counts them once per call in its own memo)."""
    return (direction, bm, bn, ulq.tobytes(), ulk.tobytes()) if ulq.size <= _GEOMETRY_PAIRS else None


def _candidate_counts(key, per_index, n, boundaries, period):
    """(full, partial) of the mask at each candidate index of `_extremes` (geometry only: the same for
    every calibration and CTAs-per-SM value, so a fit's many evaluations count them once)."""
    got = None if key is None else _GEOMETRY.get(key)
    if got is None:
        span = max(period, 1)
        points = []  # the boundaries, each once (a clip past an end is that end; coinciding clips are one)
        for bd in [np.clip(b, 0, n) for b in boundaries]:
            if not any(np.array_equal(bd, q) for q in points):
                points.append(bd)
        cands = [np.clip(0 * n + j, 0, n - 1) for j in range(span)]  # the first tiles
        cands += [np.clip(n - 1 - j, 0, n - 1) for j in range(span)]  # the last tiles
        cands += [np.clip(bd + j, 0, n - 1) for bd in points for j in range(-span, span)]
        got = [per_index(idx) for idx in cands]
        if key is None:
            return got
        if len(_GEOMETRY) >= _GEOMETRY_MAX:
            _GEOMETRY.pop(next(iter(_GEOMETRY)))
        _GEOMETRY[key] = got
    return got


def _extremes(r, tc, tile, per_index, n, boundaries, period, key=None):
    """(longest, shortest) CTA over indices 0..n-1 (query tiles, or kv tiles in the backward), exact:
    a CTA's duration is 2 x latency + f a + p b with (f, p) its full and partial tiles. Between the
    indices where a clip of the mask's counts starts or ends (`boundaries`, plus 0 and n), f and f + p
    are floors of affine functions of the index, so f a + p b is an increasing line plus a term of
    period `period`: its maximum lies in a region's last `period` indices and its minimum in its first
    (a monotone region: at its ends). Evaluating `per_index` (the mask's own row_tiles / col_tiles) at
    the `period` indices on each side of every boundary finds both."""
    a, b = slot_tile_times(tc, r, tile.stages)
    d_max = d_min = None
    counts = _candidate_counts(key, per_index, n, boundaries, period)
    for f, p in counts:
        d = cta_duration(r, a, b, f, p, tc.t_cta)
        d_max = d if d_max is None else np.maximum(d_max, d)
        d_min = d if d_min is None else np.minimum(d_min, d)
    return d_max, d_min


def _by_k(k, tile_costs):
    """A tile's costs for arrays of CTAs per SM `k`: priced for k = 1 .. max(k) (a handful) and looked up."""
    ks = np.arange(1, int(k.max()) + 1 if k.size else 2)
    tab = tile_costs(ks)
    look = lambda v: np.broadcast_to(np.asarray(v, dtype=float), ks.shape)[k - 1]  # noqa: E731  (a scalar: 0)
    return replace(tab, t_full=look(tab.t_full), t_partial=look(tab.t_partial), t_cta=look(tab.t_cta),
                   parts={u: look(v) for u, v in tab.parts.items()})


def _distinct_lengths(lq, lk):
    """The distinct (seqlen_q, seqlen_kv) pairs and each configuration's index into them (lengths below
    2^31: one int64 key)."""
    lq, lk = np.asarray(lq, dtype=np.int64), np.asarray(lk, dtype=np.int64)
    if lq.size and lq.max() < 1 << 24 and np.array_equal(lq, lk):  # self-attention: a table of the lengths, no sort
        present = np.zeros(int(lq.max()) + 1, dtype=bool)
        present[lq] = True
        u = np.flatnonzero(present)
        return (u, u), (np.cumsum(present) - 1)[lq]
    key = (lq << 31) | lk
    uniq, inv = np.unique(key, return_inverse=True)
    return (uniq >> 31, uniq & ((1 << 31) - 1)), inv.ravel()


def _memo(memo: dict, key, compute):
    """memo[key], computed on first use."""
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def _per_length(k, inv, extremes_at):
    """Per configuration, the (longest, shortest) CTA that `extremes_at(kv)` gives over the distinct
    lengths for the configurations whose CTAs per SM are kv (a handful of values)."""
    d_max, d_min = np.empty(k.shape), np.empty(k.shape)
    for kv in np.flatnonzero(np.bincount(k)):
        on = k == kv
        hi, lo = extremes_at(int(kv))  # arrays over the distinct lengths
        d_max[on], d_min[on] = hi[inv[on]], lo[inv[on]]
    return d_max, d_min


def _row_boundaries(lq, lk, bm):
    """Query tiles where the causal counts' clipping changes."""
    off = lk - lq
    cd = lambda x, m: -(-x // m)  # noqa: E731  (ceil division, negative numerators included)
    return [cd(1 - bm - off, bm), cd(lk - bm - off, bm), cd(-off - 1, bm), cd(lk - off - 1, bm), lq // bm]


def _col_boundaries(lq, lk, bm, bn):
    """Kv tiles where the causal counts' clipping changes."""
    off = lk - lq
    n_q = -(-lq // bm)
    cd = lambda x, m: -(-x // m)  # noqa: E731
    return [cd(off, bn), cd(lq + off, bn), cd(2 + off - bn, bn), cd((n_q - 1) * bm + 2 + off - bn, bn), lk // bn]


def _pick(fam, legal, evaluate, terms=False):
    """The family's tile policy over arrays (model._choose's twin): its table's first legal tile, or
    (autotune) per configuration the candidate with the smallest time (within `model.TIE_REL`), then the
    fewest executed FLOPs, then the least busy time of its units (`model.busy_time`), then the earliest in
    the list. `terms`: each configuration's tile as "_tile", its index in `legal`."""
    results = []
    for i, (tile, leg) in enumerate(legal if fam.autotune else legal[:1]):
        res = evaluate(tile, leg)
        if terms:
            res["_tile"] = np.full(np.shape(res["time_s"]), i)
        results.append(res)
    if not results:
        return None
    if len(results) == 1:
        return results[0]
    time = np.array(np.broadcast_arrays(*[np.asarray(r["time_s"], dtype=float) for r in results]))
    tied = time <= time.min(axis=0) * (1 + TIE_REL)
    flops = np.array(np.broadcast_arrays(*[np.asarray(r["flops"]) for r in results]))
    tied &= flops == np.where(tied, flops, np.iinfo(np.int64).max).min(axis=0)
    busy = np.array(np.broadcast_arrays(*[np.asarray(r["busy"], dtype=float) for r in results]))
    tied &= busy == np.where(tied, busy, np.inf).min(axis=0)
    first = np.argmax(tied, axis=0)  # the earliest of the equals
    best = results[0]
    for i, res in enumerate(results[1:], 1):
        sel = first == i
        if np.any(sel):
            best = {key: np.where(sel, res[key], best[key]) for key in best}
    return best


FAST_VARIANTS = ("mha", "gqa", "mqa")  # dense or causal attention with the standard layout: closed forms
KEYS = ("time_s", "bound_s", "bound", "flops", "useful_flops", "hbm_bytes", "tiles_full", "tiles_partial",
        "tiles_empty", "ctas", "waves", "splits", "memory_bytes")
_CHUNK = 1 << 16  # configurations per closed-form pass (their temporaries stay in cache)
_INT_KEYS = ("flops", "useful_flops", "tiles_full", "tiles_partial", "tiles_empty", "ctas", "splits", "memory_bytes",
             "hbm_bytes")
_UNIT_WIDTH = "<U8"  # the bound's limiting unit: tensor, exp, fp32, smem, hbm, l2, ...


def _blank(k, shape):
    """An answer array of key `k`: zeros (int or float), or empty unit names for "bound"."""
    if k == "bound":
        return np.full(shape, "", dtype=_UNIT_WIDTH)
    return np.zeros(shape, dtype=np.int64 if k in _INT_KEYS else float)


def _memory(B, LQ, LK, HQ, HKV, D, DV, s, skv, phase, splits, extra=0):
    """model.memory_bytes of a fused kernel over arrays (the standard layout, no varlen): Q, O, the K/V
    cache, the log-sum-exp; train: dQ, dO, dK, dV, D, the dQ accumulator (and dK, dV per query head when
    GQA); decode with split-KV: the partial outputs and their LSEs; plus the mask's own buffers (`extra`)."""
    B, LQ, LK, HQ, HKV, D, DV = (np.asarray(x, dtype=np.int64) for x in (B, LQ, LK, HQ, HKV, D, DV))
    q, o = B * HQ * LQ * D * s, B * HQ * LQ * DV * s
    kv = B * LK * HKV * (D + DV) * skv
    rows = B * HQ * LQ
    total = q + o + kv + rows * 4
    if phase == "train":
        total = total + q + o + kv + rows * 4 + rows * D * 4 + np.where(HQ > HKV, B * HQ * LK * (D + DV) * s, 0)
    splits = np.asarray(splits, dtype=np.int64)
    total = total + np.where(splits > 1, rows * (DV + 1) * 4 * splits, 0)
    return total + extra


def _bounds(works, hw, shape):
    """(bound_s, unit) over arrays: bound.min_bound's choice element by element — each work's largest
    unit time (the first unit on a tie, as `max` over the dict), then the smallest work (the first on a tie)."""
    best_t, best_u = None, None
    for wk in works:
        ut = unit_times(wk, hw)
        names = list(ut)
        stack = np.stack([np.broadcast_to(np.asarray(v, dtype=float), shape) for v in ut.values()])
        arg = np.argmax(stack, axis=0)
        t = np.take_along_axis(stack, arg[None], axis=0)[0]
        u = np.asarray(names, dtype=_UNIT_WIDTH)[arg]
        if best_t is None:
            best_t, best_u = t, u
        else:
            better = t < best_t
            best_t, best_u = np.where(better, t, best_t), np.where(better, u, best_u)
    return best_t, best_u


def predict_many(hw: Hardware, kernel: str | None = None, *, variant: str | None = None, params=None,
                 scope: str = "attention", batch=1, seqlen_q=None, seqlen_kv=None, heads_q=32, heads_kv=None,
                 head_dim_qk=128, head_dim_v=None, causal=False, dtype: str = "bf16", kv_dtype: str | None = None,
                 phase: str = "prefill", qk_accum: str = "fp32", pv_accum: str = "fp32", d_model=None,
                 rope_dim=None, calibration="default") -> dict:
    """The prediction over broadcast arrays of configurations: what `predict` returns for each, tie-breaks
    included (time, bound, FLOPs, bytes, tiles, CTAs, waves, splits).

    The array arguments (batch, seqlen_q, seqlen_kv, heads_q, heads_kv, head_dim_qk, head_dim_v,
    causal) broadcast against each other with numpy's rules: scalars apply everywhere, arrays of the
    same shape pair element by element, and axes of length 1 stretch. A grid of every combination:

        predict_many(hw, "fa3", batch=np.array([1, 2, 4])[:, None], seqlen_q=[2048, 4096, 8192],
                     heads_q=32, head_dim_qk=128)    # results shaped (3, 3): batch x seqlen_q

    whereas batch=[1, 2, 4] with seqlen_q=[2048, 4096, 8192] gives three configurations (shape (3,)).
    Shapes that do not broadcast (batch=[1, 2, 3] with seqlen_q=[1024, 2048]) raise AttnsimError
    naming the arguments and their shapes.

    `variant` (a name of `attnsim variants`) and `params` (its -p values, as strings exactly as after
    `-p key=` or typed: {"window_size": "1024,0"}; the same for every configuration; `token_shape` there
    sets the sequence length, `lengths` a varlen batch) resolve as the CLI resolves them
    (`problem.resolve`): defaults, presets and refusals included. Without a variant the heads decide
    (MHA, GQA or MQA). `seqlen_q` defaults to 4096 (decode: 1). Decode: `seqlen_q` is the query tokens of
    a step (q_per_step) and `seqlen_kv` the context (default 4096).

    Dense and causal attention (no variant, or mha/gqa/mqa without parameters) with the standard
    layout at attention scope, fused families and fp32 accumulation run on closed forms over the
    arrays (about 2 million configurations per second on one core); mask variants of prefill and train
    at attention scope are priced once per distinct geometry over their batches (over 100,000 GNA
    configurations per second in large sweeps); everything else resolves and predicts each
    configuration in turn (one mask per parameter set: about 1,000-1,700 configurations/s).
    `calibration` applies to every configuration as `predict` takes it ("default": the shipped
    calibration of the GPU and family; None: the raw model; a file's path; a rates.Calibration).

    Returns a dict of arrays shaped like the broadcast inputs: time_s, bound_s, bound (the bound's
    limiting unit, as `Prediction.bound.unit`), flops (executed),
    useful_flops, hbm_bytes, tiles_full, tiles_partial, tiles_empty, ctas and waves (of the main
    attention kernel: the forward, the decode kernel or eager's QK^T), splits (decode).
    """
    if isinstance(hw, str):
        hw = load_hardware(hw)
    for name, v in (("dtype", dtype), ("kv_dtype", kv_dtype), ("phase", phase), ("scope", scope),
                    ("qk_accum", qk_accum), ("pv_accum", pv_accum), ("kernel", kernel), ("variant", variant)):
        if v is not None and not isinstance(v, str) or (v is None and name in ("dtype", "phase", "scope")):
            raise AttnsimError(f"predict_many: {name}={v!r} must be a name (a string)")
    dtype, kv_dtype = dtype.lower(), kv_dtype.lower() if kv_dtype else None
    # the names and their combinations as a Workload checks them (its messages)
    Workload(dtype=dtype, kv_dtype=kv_dtype, phase=phase, qk_accum=qk_accum, pv_accum=pv_accum)
    for name, v in (("d_model", d_model), ("rope_dim", rope_dim)):
        if v is not None and np.ndim(v):
            raise AttnsimError(f"predict_many: {name} is one number for every configuration; got an array")
    if params is not None and not isinstance(params, Mapping):
        raise AttnsimError(f"predict_many: params must be a dict of -p names to values (e.g. {{'window_size': "
                           f"'1024,0'}}), got {type(params).__name__}")
    params = {k: v for k, v in (params or {}).items() if v is not None}
    causal = False if causal is None else causal
    bad = np.asarray(causal)
    if bad.dtype.kind not in "biu" or not np.isin(bad, (0, 1)).all():
        raise AttnsimError(f"predict_many: causal must be true or false (booleans); got {causal!r}")
    seqlen_q, seqlen_kv = default_lengths(phase, params, seqlen_q, seqlen_kv)
    fast = (not params and scope == "attention" and d_model is None and rope_dim is None
            and (variant is None or variant in FAST_VARIANTS) and qk_accum == pv_accum == "fp32"
            and closed_form_family(resolve_family(hw, kernel), phase))
    if fast:
        if variant is not None:
            heads_kv = _variant_heads_kv(variant, heads_q, heads_kv)
        return _closed_forms(hw, kernel, batch=batch, seqlen_q=seqlen_q, seqlen_kv=seqlen_kv, heads_q=heads_q,
                             heads_kv=heads_kv, head_dim_qk=head_dim_qk, head_dim_v=head_dim_v, causal=causal,
                             dtype=dtype, kv_dtype=kv_dtype, phase=phase, calibration=calibration)
    if variant is None:  # the heads decide: MHA, GQA or MQA (no kv heads given: MHA)
        variant, heads_kv = "gqa", heads_q if heads_kv is None else heads_kv
    return _each(hw, kernel, variant, params, scope, d_model, rope_dim,
                 dict(batch=batch, seqlen_q=seqlen_q, seqlen_kv=seqlen_kv, heads_q=heads_q, heads_kv=heads_kv,
                      head_dim_qk=head_dim_qk, head_dim_v=head_dim_v, causal=causal),
                 dict(dtype=dtype, kv_dtype=kv_dtype, phase=phase, qk_accum=qk_accum, pv_accum=pv_accum), calibration)


def default_lengths(phase: str, params: dict, seqlen_q, seqlen_kv):
    """predict_many's sequence lengths where not given: seqlen_q 4096 (decode: a step of 1 token), a
    decode's context 4096, unless a -p value sets the lengths (token_shape, lengths) or the step's tokens
    (q_per_step)."""
    grid = any(k in params for k in ("token_shape", "lengths"))  # the lengths are set there
    if "q_per_step" in params and phase == "decode" and seqlen_q is not None:
        raise AttnsimError("predict_many: give a decode step's query tokens once: seqlen_q or params['q_per_step']")
    if seqlen_q is None and not grid and "q_per_step" not in params:
        seqlen_q = 1 if phase == "decode" else DEFAULT_SEQLEN
    if phase == "decode" and seqlen_kv is None and not grid:
        seqlen_kv = DEFAULT_SEQLEN  # the context, as `attnsim predict --phase decode` defaults it
    return seqlen_q, seqlen_kv


def configuration_problem(variant: str, params: dict, c: dict, scalars: dict, kernel=None, scope: str = "attention",
                          d_model=None, rope_dim=None):
    """One configuration of predict_many resolved as `_each` resolves it: `c` holds batch, heads_q,
    head_dim_qk, causal and, where given, seqlen_q, seqlen_kv, heads_kv, head_dim_v (after
    `default_lengths`); `scalars` dtype, kv_dtype, phase, qk_accum, pv_accum."""
    decode = scalars["phase"] == "decode"
    p = dict(params)
    if decode and "seqlen_q" in c and ("q_per_step" in {q.name for q in get_variant(variant).params}
                                       or c["seqlen_q"] != 1):
        p["q_per_step"] = c["seqlen_q"]  # a variant without steps refuses more than one token, in its words
    return resolve(variant, p, batch=c["batch"], heads=c["heads_q"], kv_heads=c.get("heads_kv"),
                   seqlen=None if decode else c.get("seqlen_q"), seqlen_kv=c.get("seqlen_kv"),
                   head_dim=c["head_dim_qk"], head_dim_v=c.get("head_dim_v"), causal=c["causal"],
                   scope=scope, d_model=d_model, rope_dim=rope_dim, kernel=kernel, **scalars)


def _broadcast(args: dict, defaulted=()):
    """The array arguments broadcast together (numpy rules), or one AttnsimError line naming them."""
    try:
        return [np.asarray(x) for x in np.broadcast_arrays(*args.values())]
    except ValueError:
        shapes = {}
        for k, v in args.items():
            try:
                shapes[k] = np.shape(v)
            except ValueError:  # a nested list of unequal lengths
                raise AttnsimError(f"predict_many: {k} is a ragged nested list (rows of unequal lengths); "
                                   f"give an array, a list of numbers or a scalar") from None
        arrays = ", ".join(f"{k} {shapes[k]}" for k in args if shapes[k] != () and k not in defaulted)
        raise AttnsimError(f"predict_many: the arguments do not broadcast together (numpy rules): {arrays}; "
                           f"give arrays of one shape, scalars, or axes of length 1 (e.g. batch[:, None] "
                           f"against seqlen_q for a grid)") from None


def _ints(name, x):
    """A flat int64 array of positive whole numbers, or one AttnsimError line (floats must be whole,
    booleans and values past int64 are refused)."""
    x = np.asarray(x)
    if x.dtype.kind == "b" or x.dtype.kind not in "iuf":
        raise AttnsimError(f"predict_many: {name} must hold integers below 2^63 (got {x.dtype} values)")
    if x.dtype.kind == "u" and x.size and x.max() > MAX_TOKENS * MAX_BATCH:
        check_limit(name, int(x.max()), MAX_TOKENS, "(2^24)")
    if x.dtype.kind == "f":
        if not np.isfinite(x).all() or (x != np.floor(x)).any():
            bad = x[~np.isfinite(x) | (x != np.floor(x))].ravel()[0]
            raise AttnsimError(f"predict_many: {name}={float(bad)!r} must be a whole number")
        if x.size and np.abs(x).max() > MAX_TOKENS * MAX_BATCH:
            check_limit(name, int(np.abs(x).max()), MAX_TOKENS, "(2^24)")
    return np.asarray(x, dtype=np.int64).ravel()  # no copy when it already is


def _check_limits(B, LQ, LK, HQ, HKV, D, DV, phase, dtype):
    """Workload's limits over arrays (positive sizes; 2^24 tokens and sequences, 2^16 heads and head
    dims; the 2^62-FLOP padded work, configurations near it checked exactly by Workload, its message)."""
    B, LQ, LK, HQ, HKV, D, DV = np.broadcast_arrays(*(np.asarray(x, dtype=np.int64) for x in (B, LQ, LK, HQ, HKV, D, DV)))
    for name, x, limit, what in (("batch", B, MAX_BATCH, "sequences (2^24)"),
                                 ("seqlen_q", LQ, MAX_TOKENS, "tokens per sequence (2^24)"),
                                 ("seqlen_kv", LK, MAX_TOKENS, "tokens per sequence (2^24)"),
                                 ("heads_q", HQ, MAX_HEADS, "heads (2^16)"), ("heads_kv", HKV, MAX_HEADS, "heads (2^16)"),
                                 ("head_dim_qk", D, MAX_HEAD_DIM, "(2^16)"), ("head_dim_v", DV, MAX_HEAD_DIM, "(2^16)")):
        if x.size and x.min() < 1:
            raise AttnsimError(f"{name} must be positive everywhere; min is {x.min()}")
        if x.size:
            check_limit(name, int(x.max()), limit, what)
    pad = lambda x: -(-x // 256) * 256.0  # noqa: E731
    top = (float(B.max()) * pad(LQ.max()) * pad(LK.max()) * float(HQ.max()) * 2.0
           * (3 * _pow2(D.max()) + 2 * _pow2(DV.max()))) if B.size else 0.0
    if top <= MAX_WORK_FLOPS / 2:  # the work grows with each size: the largest of each bounds every one
        return
    work = B * pad(LQ) * pad(LK) * HQ * 2.0 * (3 * _pow2(D) + 2 * _pow2(DV))
    for i in np.flatnonzero(work > MAX_WORK_FLOPS / 2):  # Workload's exact check (its message)
        Workload(batch=int(B.flat[i]), seqlen_q=int(LQ.flat[i]), seqlen_kv=int(LK.flat[i]), heads_q=int(HQ.flat[i]),
                 heads_kv=int(HKV.flat[i]), head_dim_qk=int(D.flat[i]), head_dim_v=int(DV.flat[i]), phase=phase,
                 dtype=dtype)


def _pow2(x):
    """The next power of two of each element (>= 1), looked up (head dims stay below 2^16 + 1)."""
    x = np.maximum(np.asarray(x, dtype=np.int64), 1)
    top = int(x.max()) if x.size else 1
    table = np.array([float(1 << (v - 1).bit_length()) if v else 1.0 for v in range(top + 1)])
    return table[x]


def _variant_heads_kv(variant, heads_q, heads_kv):
    """The kv heads of mha/gqa/mqa as `resolve` sets them (mha: = heads_q; mqa: 1; gqa: given, or 8 when
    8 divides heads_q), with resolve's refusals; once per distinct (heads_q, heads_kv) pair."""
    if heads_kv is None:
        hq = np.asarray(heads_q)
        out = np.empty(hq.shape, dtype=np.int64)
        for a in set(_ints("heads_q", hq).tolist()):
            out[hq == a] = resolve(variant, heads=a).workload.heads_kv
        return out
    hq, hkv = (_ints(name, x).reshape(np.shape(x)) for name, x in zip(("heads_q", "heads_kv"),
                                                                      np.broadcast_arrays(heads_q, heads_kv)))
    out = np.empty(hq.shape, dtype=np.int64)
    for a, b in set(zip(hq.ravel().tolist(), hkv.ravel().tolist())):
        out[(hq == a) & (hkv == b)] = resolve(variant, heads=a, kv_heads=b).workload.heads_kv
    return out


def _each(hw, kernel, variant, params, scope, d_model, rope_dim, arrays, scalars, calibration="default") -> dict:
    """Every configuration through `problem.resolve` and `problem.predict_problem` (compare=False),
    one at a time: exactly `predict`'s answers, for every variant."""
    defaulted = {k for k in ("seqlen_q", "seqlen_kv", "heads_kv", "head_dim_v") if arrays[k] is None}
    given = {k: v for k, v in arrays.items() if v is not None}
    cols = dict(zip(given, _broadcast(given, defaulted)))
    shape = next(iter(cols.values())).shape
    n = int(np.prod(shape, dtype=np.int64))
    flat = {k: v.ravel().astype(bool) if k == "causal" else _ints(k, v) for k, v in cols.items()}  # whole numbers
    params = dict(params or {})
    out = {k: _blank(k, n) for k in KEYS}
    decode = scalars["phase"] == "decode"
    if not decode and scope == "attention" and n:
        grouped = _by_geometry(hw, kernel, variant, params, flat, n, scalars, calibration)
        if grouped is not None:
            return {k: v.reshape(shape) for k, v in grouped.items()}
    masks = {}  # one mask per (resolved parameters, causality): its memo of tiles serves every batch and head count
    for i in range(n):
        c = {k: v[i].item() for k, v in flat.items()}
        try:
            prob = configuration_problem(variant, params, c, scalars, kernel, scope, d_model, rope_dim)
            key = (repr(sorted(prob.params.items())), prob.workload.causal)
            prob = replace(prob, mask=masks.setdefault(key, prob.mask))
            pred = predict_problem(prob, hw, compare=False, calibration=calibration)
        except AttnsimError as e:
            raise AttnsimError(f"predict_many: configuration {i} ({_describe(c)}): {e}") from None
        for k, v in row_of(pred).items():
            out[k][i] = v
    return {k: v.reshape(shape) for k, v in out.items()}


def _by_geometry(hw, kernel, variant, params, flat, n, scalars, calibration):
    """Prefill and train of a mask variant with the standard layout, vectorized over the batch: each
    distinct (heads, lengths, head dims, causality) resolves once at batch 1, its mask's tile arrays are
    read once, and the kernels are priced over the array of batches with `model`'s own functions (tile
    costs, kernel time, bytes, the helper kernels, the mask's own ops). None when a configuration needs
    what this path does not price (a head layout, varlen, several head groups or passes, a GEMM among
    the mask's ops, an autotuned family, fp16 accumulation, a per-layer operand): the caller then
    predicts each configuration in turn."""
    cols = ("heads_q", "heads_kv", "seqlen_q", "seqlen_kv", "head_dim_qk", "head_dim_v", "causal")
    keys = np.stack([flat[k].astype(np.int64) if k in flat else np.full(n, -1) for k in cols], axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    if len(uniq) > max(64, n // 8):  # few configurations per geometry: the plain loop is as fast
        return None
    batch = flat["batch"]
    out = {k: _blank(k, n) for k in KEYS}
    masks = {}  # one mask per (resolved parameters, causality), as in the per-configuration loop
    for g, key in enumerate(uniq):
        c = {k: int(v) for k, v in zip(cols, key) if v != -1 or k == "causal"}
        sel = np.flatnonzero(inverse == g)
        i0 = int(sel[0])
        try:
            prob = resolve(variant, dict(params), batch=1, heads=c["heads_q"], kv_heads=c.get("heads_kv"),
                           seqlen=c.get("seqlen_q"), seqlen_kv=c.get("seqlen_kv"), head_dim=c["head_dim_qk"],
                           head_dim_v=c.get("head_dim_v"), causal=bool(c["causal"]), kernel=kernel, **scalars)
            prob = replace(prob, mask=masks.setdefault((repr(sorted(prob.params.items())), prob.workload.causal),
                                                       prob.mask))
            w1 = prob.workload
            _check_limits(batch[sel], w1.seqlen_q, w1.seqlen_kv, w1.heads_q, w1.heads_kv, w1.head_dim_qk, w1.head_dim_v,
                          w1.phase, w1.dtype)
        except AttnsimError as e:
            bad = {"batch": int(batch[i0]), **c}
            raise AttnsimError(f"predict_many: configuration {i0} ({_describe(bad)}): {e}") from None
        try:
            rows = _grouped_rows(hw, prob, batch[sel], calibration)
        except AttnsimError as e:
            bad = {"batch": int(batch[i0]), **c}
            raise AttnsimError(f"predict_many: configuration {i0} ({_describe(bad)}): {e}") from None
        if rows is None:
            return None
        for k, v in rows.items():
            out[k][sel] = v
    return out


def _grouped_rows(hw, prob, B, calibration):
    """predict_many's rows for one resolved problem (at batch 1) over the batches `B`, or None when
    the problem is outside what `_by_geometry` prices (see there)."""
    w1 = prob.workload
    if prob.layout is not None or w1.seqlens is not None or prob.kernel == "eager":
        return None
    fam = resolve_family(hw, prob.kernel)
    if (not fam.fused or fam.autotune or w1.qk_accum != "fp32" or w1.pv_accum != "fp32"
            or w1.shared_operand_bytes() or w1.v_in_k):
        return None
    mask = prob.mask.for_lengths(w1.seqlen_q, w1.seqlen_kv)
    if len(mask.passes()) > 1 or len(mask.head_groups(w1.heads_q)) > 1:
        return None
    check_family(fam, hw, w1.dtype, w1.head_dim_qk, w1.head_dim_v, w1.phase, w1.qk_accum, w1.pv_accum, w1.v_in_k)
    mask.check_lengths_limit(w1.seqlen_q, w1.seqlen_kv)
    B = np.asarray(B, dtype=np.int64)
    ns = SimpleNamespace(**{f: getattr(w1, f) for f in ("heads_q", "heads_kv", "seqlen_q", "seqlen_kv", "head_dim_qk",
                                                        "head_dim_v", "dtype", "kv_dtype", "phase", "dtype_bytes")},
                         batch=B)
    extra_ops, gate_work = mask.extra_ops(ns)
    if any(not isinstance(op, (Pointwise, Matmuls)) for op in extra_ops):
        return None
    calibration = choose(calibration, hw, fam, w1.dtype, w1.phase)[0]
    r, lib = rates(hw, fam, calibration), rates(hw, None, calibration)
    lq, lk, hq, hkv, d, dv = w1.seqlen_q, w1.seqlen_kv, w1.heads_q, w1.heads_kv, w1.head_dim_qk, w1.head_dim_v
    s, skv = w1.dtype_bytes, w1.kv_dtype_bytes
    dp, dvp = fam.pad_dims(d, dv)
    live_pairs, live_keys = mask_sums(mask, [(lq, lk, 1)], hq)  # one sequence, every head
    slices = B * hq
    time = 0.0 * B
    hbm = 0 * B
    flops = 0 * B
    for op in extra_ops:  # the mask's own ops (a token permutation, a predictor): library kernels
        if isinstance(op, Pointwise):
            time = time + elementwise_time(lib, op.read, op.write, exps=op.sfu_ops, fp32_ops=op.fp32_ops, runs=op.runs)
            hbm = hbm + np.asarray(op.read + op.write + run_waste_bytes(lib, op.runs)).astype(np.int64)
        else:
            time = time + lib.launch_overhead_s + op.flops / lib.mma_device(w1.dtype, "fp32")
            flops = flops + np.asarray(op.flops).astype(np.int64)
    local = isinstance(mask, WindowMask)
    causal = w1.causal or isinstance(mask, CausalMask)
    # the forward: the family's first legal tile (its table's own choice first)
    tile, leg = _first_legal(fam, r, [mask.adjust_tile(t) for t in fwd_tile_candidates(
        fam, hw, dp, dvp, causal and not local, w1.dtype, local)], dp, dvp, w1, backward=False)
    if tile is None:
        return None  # the single prediction names the reason
    bm, bn = tile.block_m, tile.block_n
    f_it, p_it = mask.iterated_rows(lq, lk, bm, bn)
    f_lv, p_lv = tile_rows(mask, lq, lk, bm, bn)
    nq, nk = mask.n_tiles(bm, bn, lq, lk)
    k = np.maximum(1, np.minimum(leg.ctas_per_sm, -(-(slices * nq) // r.sm_count)))  # as model._legal caps it
    n_ctas = slices * len(f_it)
    tc = _fwd_tile_costs(r, fam, tile, k, dp, dvp, s, skv, SMRates.mixed(r, w1, w1.qk_matmuls * dp, dvp), w1, causal)
    d_max, d_min = _class_extremes(r, tc, tile, f_it, p_it)
    it_full, it_part = slices * int(f_it.sum()), slices * int(p_it.sum())
    fwd_hbm, l2_q_o = forward_bytes(hq * B * lq, hkv * B * live_keys, d, dv, w1.seq_dims, s, skv, True)
    l2 = (it_full + it_part) * bn * _kv_cols(w1, d, dv) * skv + l2_q_o
    plain = type(mask) is CausalMask  # the launch order matters under a plain causal mask (`model.launch_order`)
    t_fwd = kernel_time(r, n_ctas, it_full, it_part, d_max, d_min, *slot_tile_times(tc, r, tile.stages),
                        r.sm_count * k, fwd_hbm, l2, tc.t_cta, slices, fam.order("forward") if plain else "balanced")[0]
    out = {"tiles_full": slices * int(f_lv.sum()), "tiles_partial": slices * int(p_lv.sum()), "ctas": n_ctas,
           "waves": n_ctas / (r.sm_count * k), "splits": 0 * B + 1}
    out["tiles_empty"] = slices * nq * nk - out["tiles_full"] - out["tiles_partial"]
    time, hbm = time + t_fwd, hbm + fwd_hbm
    flops = flops + np.rint((it_full + it_part) * tc.flops).astype(np.int64)
    if w1.phase == "train":
        btile, bleg = _first_legal(fam, r, [mask.adjust_tile(t, backward=True) for t in bwd_tile_candidates(
            fam, hw, dp, dvp, causal, w1.dtype)], dp, dvp, w1, backward=True)
        if btile is None:
            return None
        bm, bn = btile.block_m, btile.block_n
        f_it, p_it = mask.iterated_cols(lq, lk, bm, bn)
        k = np.maximum(1, np.minimum(bleg.ctas_per_sm, -(-(slices * mask.n_tiles(bm, bn, lq, lk)[1]) // r.sm_count)))
        n_ctas = slices * len(f_it)
        tc = _bwd_tile_costs(r, fam, btile, k, dp, dvp, s, SMRates.mixed(r, w1, 3 * w1.qk_matmuls * dp, 2 * dvp), w1,
                             causal)
        d_max, d_min = _class_extremes(r, tc, btile, f_it, p_it)
        it_full, it_part = slices * int(f_it.sum()), slices * int(p_it.sum())
        q_rows = hq * B * lq
        bwd_hbm = backward_bytes(q_rows, hkv * B * lk, hq * B * lk, d, dv, w1.seq_dims, s)
        l2 = (it_full + it_part) * (tc.kv_bytes + 2 * bm * d * 4) + bwd_hbm
        time = time + kernel_time(r, n_ctas, it_full, it_part, d_max, d_min, *slot_tile_times(tc, r, btile.stages),
                                  r.sm_count * k, bwd_hbm, l2, tc.t_cta, slices,
                                  fam.order("backward") if plain else "balanced")[0]
        hbm = hbm + bwd_hbm
        flops = flops + np.rint((it_full + it_part) * tc.flops).astype(np.int64)
        for _, rd, wr, ops, runs in backward_helpers(q_rows, B * lk * w1.seq_dims * s, hq, hkv, d, dv, s):
            if runs:
                time = time + elementwise_time(r, rd, wr, fp32_ops=ops)
                hbm = hbm + rd + wr
    agg = SimpleNamespace(batch=1, heads_q=hq, heads_kv=hkv, seqlen_q=B * lq, seqlen_kv=B * lk, head_dim_qk=d,
                          head_dim_v=dv, dtype=w1.dtype, kv_dtype=w1.kv_dtype, qk_accum="fp32", pv_accum="fp32",
                          phase=w1.phase, qk_matmuls=w1.qk_matmuls, seq_dims=w1.seq_dims, score_sfu_ops=w1.score_sfu_ops,
                          score_fp32_ops=w1.score_fp32_ops, shared_operand_bytes=lambda *a: 0)
    works = attention_work_alternatives(agg, None, B * live_keys, pairs_total=B * live_pairs)
    if gate_work is not None:
        works = [wk + gate_work for wk in works]
    out["bound_s"], out["bound"] = _bounds(works, hw, B.shape)
    out["useful_flops"] = np.rint(sum(f for f, *_ in works[0].tensor)).astype(np.int64)
    out.update(time_s=time, hbm_bytes=hbm, flops=flops)
    ub, ib = np.unique(B, return_inverse=True)  # the mask's own buffers (a permuted copy) per batch
    extra = np.array([prob.mask.extra_memory(w1.with_(batch=int(b))) for b in ub], dtype=np.int64)[np.ravel(ib)]
    out["memory_bytes"] = _memory(B, lq, lk, hq, hkv, d, dv, s, skv, w1.phase, out["splits"], extra.reshape(B.shape))
    return out


def _first_legal(fam, r, tiles, dp, dvp, w, backward):
    """The first tile the legality check accepts (model._choose's rule for the families' tables)."""
    for t in tiles:
        leg = _legal(fam, r, t, dp, dvp, w, backward)
        if leg is not None:
            return t, leg
    return None, None


def _class_extremes(r, tc, tile, full, partial):
    """(longest, shortest) CTA over the CTA classes (full, partial tiles each): each distinct class
    evaluated over the configurations' rates."""
    a, b = slot_tile_times(tc, r, tile.stages)
    pairs = np.unique(np.stack([full, partial], axis=1), axis=0)
    d = [cta_duration(r, a, b, int(f), int(p), tc.t_cta) for f, p in pairs]
    return np.maximum.reduce(d), np.minimum.reduce(d)


def _describe(c: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in c.items())


def row_of(pred) -> dict:
    """One prediction as predict_many's row: time, bound, FLOPs, bytes, the main kernel's tiles, CTAs,
    waves and splits."""
    main = pred.main_kernels
    t = pred.tiles
    return {"time_s": pred.time_s, "bound_s": pred.bound.time_s, "bound": pred.bound.unit, "flops": pred.flops,
            "useful_flops": pred.useful_flops, "hbm_bytes": pred.hbm_bytes, "tiles_full": t["full"],
            "tiles_partial": t["partial"], "tiles_empty": t["empty"], "ctas": main[0].ctas if main else 0,
            "waves": pred.waves, "splits": next((k.splits for k in pred.kernels_for("decode")), 1),
            "memory_bytes": pred.memory_bytes}


def closed_form_family(fam, phase: str) -> bool:
    """Whether `_closed_forms` prices the family in this phase: a fused family, except the training step of one
    that splits its backward into two kernels (`Family.bwd_split`: `model.split_backward`, priced one
    configuration at a time)."""
    return fam.fused and not (phase == "train" and fam.bwd_split)


def _closed_forms(hw: Hardware, kernel: str | None = None, *, batch, seqlen_q, seqlen_kv=None, heads_q,
                  heads_kv=None, head_dim_qk, head_dim_v=None, causal=False, dtype: str = "bf16",
                  kv_dtype: str | None = None, phase: str = "prefill", calibration="default", collect=None) -> dict:
    """Dense and causal attention of a fused family over arrays: closed-form tile totals, the longest
    and shortest CTA among candidate tiles (`_extremes`), the same kernel-time functions as `model`.
    `collect(part)`, when given, receives the work terms (`templates.closed_form_templates`): per kind of
    configuration {"rows": their flat indices, "kind": (padded head dims, causal), "kernels": each kernel's
    answers and terms in launch order}, and per chunk {"rows": ..., "works": the bound's work alternatives}."""
    fam = resolve_family(hw, kernel)
    if not closed_form_family(fam, phase):
        raise ValueError(f"_closed_forms does not price {fam.name}'s {phase} (closed_form_family)")
    kv_dtype = kv_dtype or dtype
    defaulted = {k for k, v in (("seqlen_kv", seqlen_kv), ("heads_kv", heads_kv), ("head_dim_v", head_dim_v))
                 if v is None}  # copies of another argument: not named in a broadcast error
    seqlen_kv = seqlen_q if seqlen_kv is None else seqlen_kv
    heads_kv = heads_q if heads_kv is None else heads_kv
    head_dim_v = head_dim_qk if head_dim_v is None else head_dim_v
    args = {"batch": batch, "seqlen_q": seqlen_q, "seqlen_kv": seqlen_kv, "heads_q": heads_q, "heads_kv": heads_kv,
            "head_dim_qk": head_dim_qk, "head_dim_v": head_dim_v, "causal": causal}
    B, LQ, LK, HQ, HKV, D, DV, CAUSAL = _broadcast(args, defaulted)
    shape = B.shape  # work on flat arrays, reshape the results at the end
    if B.size == 0:  # no configuration: empty answers of the same shape
        return {k: _blank(k, shape) for k in KEYS}
    B, LQ, LK, HQ, HKV, D, DV = (_ints(name, x) for name, x in zip(
        ("batch", "seqlen_q", "seqlen_kv", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v"), (B, LQ, LK, HQ, HKV, D, DV)))
    CAUSAL = CAUSAL.astype(bool).ravel()
    _check_limits(B, LQ, LK, HQ, HKV, D, DV, phase, dtype)
    if not np.array_equal(HQ, HKV) and (HQ % HKV).any():
        raise AttnsimError("heads_q must be divisible by heads_kv everywhere")
    if phase == "decode" and (LQ > LK).any():
        i = int(np.flatnonzero(LQ > LK)[0])
        raise AttnsimError(f"predict_many: configuration {i}: decode: {LQ[i]} query tokens per step exceed the "
                           f"context of {LK[i]} tokens; a step's tokens are part of its context")
    check_family(fam, hw, dtype, int(D.max()), int(DV.max()), phase)
    r = rates(hw, fam, choose(calibration, hw, fam, dtype, phase)[0])
    n = B.size
    out = {k: _blank(k, n) for k in KEYS}
    # causal: what depends on the lengths only is computed once per distinct pair over every chunk
    # (`memo`: per tile and CTAs per SM); `inv` is each configuration's index into the pairs
    inv = np.zeros(n, dtype=np.int64)
    pairs = None
    if phase != "decode" and CAUSAL.any():
        pairs, inv[CAUSAL] = _distinct_lengths(LQ[CAUSAL], LK[CAUSAL])
    memo = {}
    for i in range(0, n, _CHUNK):  # chunks whose temporaries stay in cache; configurations are independent
        part = slice(i, min(i + _CHUNK, n))
        sink = None if collect is None else (lambda got, at=np.arange(part.start, part.stop): collect(
            dict(got, rows=at if got["rows"] is None else at[got["rows"]])))
        res = _closed_chunk(r, fam, dtype, kv_dtype, phase, B[part], LQ[part], LK[part], HQ[part], HKV[part],
                            D[part], DV[part], CAUSAL[part], pairs, inv[part], memo, sink)
        for k in KEYS:
            out[k][part] = res[k]
    return {k: v.reshape(shape) for k, v in out.items()}


def _closed_chunk(r, fam, dtype, kv_dtype, phase, B, LQ, LK, HQ, HKV, D, DV, CAUSAL, pairs, INV, memo,
                  collect=None) -> dict:
    """The closed forms over flat, validated arrays of configurations (`pairs`, `INV`, `memo`, `collect`:
    see `_closed_forms`; here "rows" index the chunk, None for all of it)."""
    terms = collect is not None
    hw = r.hw
    s, skv = DTYPE_BYTES[dtype], DTYPE_BYTES[kv_dtype]
    sm_rates = SMRates.of(r, dtype, "fp32")
    n = B.size
    dp_of = np.array([fam.pad_head_dim(int(x)) or 0 for x in range(int(max(D.max(), DV.max())) + 1)])
    DP, DVP = dp_of[D], dp_of[DV]
    out = {"time_s": np.zeros(n), "flops": np.zeros(n, dtype=np.int64), "hbm_bytes": np.zeros(n, dtype=np.int64),
           "tiles_full": np.zeros(n, dtype=np.int64), "tiles_partial": np.zeros(n, dtype=np.int64),
           "tiles_empty": np.zeros(n, dtype=np.int64), "ctas": np.zeros(n, dtype=np.int64),
           "waves": np.zeros(n), "splits": np.ones(n, dtype=np.int64)}

    span = int(dp_of.max()) + 1
    key = (DP * span + DVP) * 2 + CAUSAL  # few distinct values: one pass each, no sort
    kinds = np.flatnonzero(np.bincount(key)) if n else []

    def add(idx, res, main):
        sel = slice(None) if idx is None else idx  # distinct indices: += is exact
        for k, v in (("time_s", "time_s"), ("flops", "flops"), ("hbm_bytes", "hbm")):
            if main:  # the main kernel comes first: set, then the others add
                out[k][sel] = res[v]
            else:
                out[k][sel] += res[v]
        if main:
            for k in ("tiles_full", "tiles_partial", "tiles_empty", "ctas", "waves", "splits"):
                if k in res:
                    out[k][sel] = res[k]

    for kv in kinds:
        idx = None if len(kinds) == 1 else np.flatnonzero(key == kv)  # one kind: the arrays as they are
        dp, dvp, c = int(kv) // 2 // span, int(kv) // 2 % span, bool(kv % 2)
        g = {name: (x if idx is None else x[idx]) for name, x in (("b", B), ("lq", LQ), ("lk", LK), ("hq", HQ),
                                                                   ("hkv", HKV), ("d", D), ("dv", DV))}
        lengths = (pairs, INV if idx is None else INV[idx], memo) if c else None
        mask = CausalMask() if c else DenseMask()
        if phase == "decode":
            kernels = [_decode(r, fam, mask, dp, dvp, s, skv, sm_rates, dtype, kv_dtype, **g, terms=terms)]
            add(idx, kernels[0], main=True)
        else:
            kernels = [dict(_forward(r, fam, mask, c, dp, dvp, s, skv, sm_rates, dtype, kv_dtype, lengths, **g,
                                     terms=terms), name="attn_fwd")]
            add(idx, kernels[0], main=True)
            if phase == "train":
                for kern in _backward(r, fam, mask, c, dp, dvp, s, sm_rates, dtype, lengths, **g, terms=terms):
                    add(idx, kern, main=False)
                    kernels.append(kern)
        if terms:
            collect({"rows": idx, "kind": (dp, dvp, c), "kernels": kernels})

    live = np.where(CAUSAL, CausalMask().live_pairs(LQ, LK), LQ * LK)
    w = SimpleNamespace(batch=B, heads_q=HQ, heads_kv=HKV, seqlen_q=LQ, seqlen_kv=LK, head_dim_qk=D,
                        head_dim_v=DV, dtype=dtype, kv_dtype=kv_dtype, qk_accum="fp32", pv_accum="fp32", phase=phase,
                        qk_matmuls=1, seq_dims=D + DV, score_sfu_ops=0.0, score_fp32_ops=0.0,
                        shared_operand_bytes=lambda *a: 0)
    works = attention_work_alternatives(w, live)
    out["bound_s"], out["bound"] = _bounds(works, hw, (n,))
    if terms:
        collect({"rows": None, "works": works})
    out["memory_bytes"] = _memory(B, LQ, LK, HQ, HKV, D, DV, s, skv, phase, out["splits"])
    out["useful_flops"] = np.rint(sum(f for f, *_ in works[0].tensor)).astype(np.int64)
    return out


TERM_CLASSES = 4  # the most CTA classes a template's longest (or shortest) CTA is the MAX (MIN) over


def _terms(k, n_ctas, full, part, hbm, l2, classes, groups=1) -> dict:
    """A tiled kernel's work terms over arrays of configurations, what a formula template reads (`templates`):
    CTAs per SM "_k", CTAs "_ctas", full and partial tiles "_full", "_part", HBM and L2 bytes "_hbm",
    "_l2"; and of the CTA classes `classes` [(full tiles, partial tiles, whether some CTA has them)], the
    ones no other class has at least as many of both ("_maxf", "_maxp": (TERM_CLASSES, n), the first
    "_nmax" of each column in use) and those no class has at most as many of ("_minf", "_minp", "_nmin"):
    a duration grows with both counts, so the longest CTA is the MAX over the first, the shortest the MIN
    over the second, at any tile times (`model._class_extremes`). Equal classes count once. A
    configuration with more than TERM_CLASSES such classes has "_nmax" (or "_nmin") above it."""
    n = np.shape(n_ctas)[0]
    out = {"_k": k, "_ctas": n_ctas, "_full": full, "_part": part, "_hbm": hbm, "_l2": l2,
           "_groups": np.broadcast_to(groups, (n,))}
    for tag, sign in (("max", 1), ("min", -1)):
        F = P = L = None
        over = np.zeros(n, dtype=bool)
        for at in range(0, len(classes), 64):  # the front of (the front so far, the next 64 classes)
            batch = classes[at:at + 64]
            f = np.stack([np.broadcast_to(x, (n,)) for x, _, _ in batch]).astype(np.int64)
            p = np.stack([np.broadcast_to(x, (n,)) for _, x, _ in batch]).astype(np.int64)
            v = np.stack([np.broadcast_to(x, (n,)) for _, _, x in batch]).astype(bool)
            if F is not None:
                f, p, v = np.concatenate([F, f]), np.concatenate([P, p]), np.concatenate([L, v])
            F, P, L, count = _front(f, p, v, sign, 64)
            over |= count > 64  # a front cut short: too many classes to tell
        over |= L.sum(axis=0) > TERM_CLASSES
        F, P, L = F[:TERM_CLASSES], P[:TERM_CLASSES], L[:TERM_CLASSES]
        out[f"_{tag}f"], out[f"_{tag}p"] = F, P
        out[f"_n{tag}"] = np.where(over, TERM_CLASSES + 1, L.sum(axis=0))
    return out


def _front(F, P, L, sign, width=TERM_CLASSES):
    """The Pareto front of classes (C, n) per configuration (`_terms`): sorted by full tiles then partial
    ones (descending for sign 1, ascending for -1), a live class is on it when its partial tiles beat
    every earlier one's. Returns its first `width` classes (F, P, live) and its size."""
    key = np.where(L, sign * ((F << 32) + P), -(1 << 62))  # dead classes last
    order = np.argsort(-key, axis=0, kind="stable")
    F, P, L = (np.take_along_axis(x, order, 0) for x in (F, P, L))
    sp = np.where(L, sign * P, np.iinfo(np.int64).min)
    best = np.maximum.accumulate(sp, axis=0)
    prior = np.concatenate([np.full((1, F.shape[1]), np.iinfo(np.int64).min), best[:-1]])
    keep = L & (sp > prior)
    pick = np.argsort(~keep, axis=0, kind="stable")[:width]
    if pick.shape[0] < width:  # fewer classes than columns: pad with dead ones
        pad = width - pick.shape[0]
        F, P, keep = (np.concatenate([x, np.zeros((pad, x.shape[1]), dtype=x.dtype)]) for x in (F, P, keep))
        pick = np.concatenate([pick, np.arange(pick.shape[0], width)[:, None] + 0 * pick[:1]])
    return (np.take_along_axis(F, pick, 0), np.take_along_axis(P, pick, 0), np.take_along_axis(keep, pick, 0),
            keep.sum(axis=0))


def _legal_tiles(fam, r, cands, dp, dvp, dtype, kv_dtype, what):
    """(tile, legality) of the candidates that `can_implement` accepts, in the family's order."""
    legal = [(t, can_implement(fam, r.hw, t, dp, dvp, dtype, kv_dtype, backward=what == "backward",
                               decode=what == "decode")) for t in cands]
    legal = [(t, leg) for t, leg in legal if leg.ok]
    if not legal:
        raise AttnsimError(f"no legal {what} tile of kernel family {fam.name!r} on {r.hw.name} for head dims {dp}/{dvp}")
    return legal


def _forward(r, fam, mask, c, dp, dvp, s, skv, rates, dtype, kv_dtype, lengths, b, lq, lk, hq, hkv, d, dv,
             terms=False):
    """`lengths` (causal): the distinct (seqlen_q, seqlen_kv) pairs, each configuration's index into them
    and the memo of what depends on them only. `terms`: the work terms too (`_terms`)."""
    sl = b * hq
    legal = _legal_tiles(fam, r, fwd_tile_candidates(fam, r.hw, dp, dvp, c, dtype), dp, dvp, dtype, kv_dtype, "forward")
    if c:
        (ulq, ulk), inv, memo = lengths

    def evaluate(tile, leg):
        bm, bn = tile.block_m, tile.block_n
        n_q, n_kv = -(-lq // bm), -(-lk // bn)
        n_ctas = sl * n_q
        k = np.maximum(1, np.minimum(leg.ctas_per_sm, -(-n_ctas // r.sm_count)))
        tc = _by_k(k, lambda ks: _fwd_tile_costs(r, fam, tile, ks, dp, dvp, s, skv, rates, causal=c))
        if c:  # counts and extremes depend on the lengths (and k) only: once per distinct pair, then gathered
            fu, neu = _memo(memo, ("fwd", bm, bn), lambda: causal_row_totals(ulq, ulk, bm, bn))
            full, ne = fu[inv], neu[inv]
            geo = _geometry_key("fwd", bm, bn, ulq, ulk)
            d_max, d_min = _per_length(k, inv, lambda kv: _memo(memo, ("fwd", tile, dp, dvp, kv), lambda: _extremes(
                r, _fwd_tile_costs(r, fam, tile, kv, dp, dvp, s, skv, rates, causal=c), tile,
                lambda x: _row(mask, x, ulq, ulk, bm, bn), -(-ulq // bm), _row_boundaries(ulq, ulk, bm),
                bn // math.gcd(bm, bn), geo)))
        else:
            # dense: every query tile alike (a ragged one too: its rows past the end need no mask)
            full, ne = dense_row_totals(lq, lk, bm, bn)
            a, b_ = slot_tile_times(tc, r, tile.stages)
            d_max = d_min = cta_duration(r, a, b_, lk // bn, n_kv - lk // bn, tc.t_cta)
        hbm, l2_q_o = forward_bytes(sl * lq, b * hkv * lk, d, dv, d + dv, s, skv, True)
        l2 = ne * sl * bn * (d + dv) * skv + l2_q_o
        out = _kernel(r, tc, tile, k, n_ctas, full * sl, (ne - full) * sl, d_max, d_min, hbm, l2, sl,
                      fam.order("forward") if c else "balanced")
        out.update(tiles_full=full * sl, tiles_partial=(ne - full) * sl, tiles_empty=(n_q * n_kv - ne) * sl)
        if terms:  # the CTA classes: every query tile alike (dense), or the candidates of `_extremes`
            classes = ([(lk // bn, n_kv - lk // bn, True)] if not c else [(f[inv], p[inv], True) for f, p in _candidate_counts(
                geo, lambda x: _row(mask, x, ulq, ulk, bm, bn), -(-ulq // bm), _row_boundaries(ulq, ulk, bm),
                bn // math.gcd(bm, bn))])
            out.update(_terms(k, n_ctas, full * sl, (ne - full) * sl, hbm, l2, classes, sl))
        return out

    return _pick(fam, legal, evaluate, terms)


def _backward(r, fam, mask, c, dp, dvp, s, rates, dtype, lengths, b, lq, lk, hq, hkv, d, dv, terms=False):
    """model.fused_backward's kernels: preprocess, the main kernel over kv tiles, dQ convert, GQA reduce.
    `terms`: the work terms too (`_terms`; a helper's read and written bytes, FP32 ops and whether it runs)."""
    sl = b * hq
    rows = sl * lq
    helpers = [{"time_s": np.where(runs, elementwise_time(r, rd, wr, fp32_ops=ops), 0.0), "flops": 0 * rows,
                "hbm": np.where(runs, rd + wr, 0), "name": name,
                **({"_rd": rd, "_wr": wr, "_ops": ops, "_runs": runs & (rows >= 0)} if terms else {})}
               for name, rd, wr, ops, runs in backward_helpers(rows, lk * (d + dv) * s * b, hq, hkv, d, dv, s)]
    hbm = backward_bytes(rows, b * hkv * lk, sl * lk, d, dv, d + dv, s)
    legal = _legal_tiles(fam, r, bwd_tile_candidates(fam, r.hw, dp, dvp, c, dtype), dp, dvp, dtype, dtype, "backward")
    if c:
        (ulq, ulk), inv, memo = lengths

    def evaluate(tile, leg):
        bm, bn = tile.block_m, tile.block_n
        n_kv = -(-lk // bn)
        n_ctas = sl * n_kv
        k = np.maximum(1, np.minimum(leg.ctas_per_sm, -(-n_ctas // r.sm_count)))
        tc = _by_k(k, lambda ks: _bwd_tile_costs(r, fam, tile, ks, dp, dvp, s, rates, causal=c))
        if c:  # the same tile set as the forward's grid
            fu, neu = _memo(memo, ("fwd", bm, bn), lambda: causal_row_totals(ulq, ulk, bm, bn))
            full, ne = fu[inv], neu[inv]
            geo = _geometry_key("bwd", bm, bn, ulq, ulk)
            d_max, d_min = _per_length(k, inv, lambda kv: _memo(memo, ("bwd", tile, dp, dvp, kv), lambda: _extremes(
                r, _bwd_tile_costs(r, fam, tile, kv, dp, dvp, s, rates, causal=c), tile,
                lambda x: _col(mask, x, ulq, ulk, bm, bn), -(-ulk // bn), _col_boundaries(ulq, ulk, bm, bn),
                bm // math.gcd(bm, bn), geo)))
        else:
            # dense: whole kv tiles see every query tile in full; a ragged last one, all of them partial
            full, ne = dense_row_totals(lq, lk, bm, bn)
            a, b_ = slot_tile_times(tc, r, tile.stages)
            n_q = -(-lq // bm)
            whole = cta_duration(r, a, b_, n_q, 0 * n_q, tc.t_cta)
            ragged = np.where(lk % bn != 0, cta_duration(r, a, b_, 0 * n_q, n_q, tc.t_cta), whole)
            d_max, d_min = np.maximum(whole, ragged), np.where(lk >= bn, np.minimum(whole, ragged), ragged)
        l2 = ne * sl * (tc.kv_bytes + 2 * bm * d * 4) + hbm
        out = _kernel(r, tc, tile, k, n_ctas, full * sl, (ne - full) * sl, d_max, d_min, hbm, l2, sl,
                      fam.order("backward") if c else "balanced")
        res = {key: out[key] for key in ("time_s", "flops", "hbm", "busy")}
        if terms:  # the CTA classes: the whole kv tiles and a ragged last one (dense), or `_extremes`' candidates
            n_q = -(-lq // bm)
            classes = ([(n_q, 0 * n_q, lk >= bn), (0 * n_q, n_q, lk % bn != 0)] if not c else [
                (f[inv], p[inv], True) for f, p in _candidate_counts(
                    geo, lambda x: _col(mask, x, ulq, ulk, bm, bn), -(-ulk // bn), _col_boundaries(ulq, ulk, bm, bn),
                    bm // math.gcd(bm, bn))])
            res.update(_terms(k, n_ctas, full * sl, (ne - full) * sl, hbm, l2, classes, sl))
        return res

    main = _pick(fam, legal, evaluate, terms)
    main["name"] = "attn_bwd"
    return helpers[:1] + [main] + helpers[1:]


def _decode(r, fam, mask, dp, dvp, s, skv, rates, dtype, kv_dtype, b, lq, lk, hq, hkv, d, dv, terms=False,
            tile=None):
    """model.fused_decode over arrays: packed GQA rows, split-KV, the combine kernel. `terms`: the work
    terms too (`_terms`; the combine kernel's bytes and FP32 ops as "_cb_rd", "_cb_wr", "_cb_ops"; the row
    block "_bm"). `tile`: the row block fitted already (`families.decode_block_m`)."""
    pack = packs_gqa_decode(fam, lq)
    grp = np.where(pack, hq // hkv, 1)
    sl = b * np.where(pack, hkv, hq)
    rows = lq * grp
    if tile is None:
        tile = _legal_tiles(fam, r, decode_tile_candidates(fam, r.hw, dp, dvp), dp, dvp, dtype, kv_dtype, "decode")[0][0]
        fits = decode_block_m(fam, tile, rows)
        kinds = np.unique(fits)
        if len(kinds) > 1:  # row blocks that differ by configuration: each group on its own, then put together
            args = dict(b=b, lq=lq, lk=lk, hq=hq, hkv=hkv, d=d, dv=dv)
            return _merged(rows.size, [(sel, _decode(r, fam, mask, dp, dvp, s, skv, rates, dtype, kv_dtype, terms=terms,
                                                     tile=replace(tile, block_m=int(bm)),
                                                     **{k: v[sel] for k, v in args.items()}))
                                       for bm in kinds.tolist() for sel in [fits == bm]])
        tile = replace(tile, block_m=int(kinds[0])) if kinds.size else tile
    tile, leg = _legal_tiles(fam, r, [tile], dp, dvp, dtype, kv_dtype, "decode")[0]
    bm, bn = tile.block_m, tile.block_n
    n_m, n_kv = -(-rows // bm), -(-lk // bn)
    splits = (num_splits_many(sl * n_m, split_sms(fam, r.hw), n_kv, style=fam.split_style) if fam.split_kv
              else np.ones_like(n_m))
    per = -(-n_kv // splits)
    full = ne = ctas = 0 * rows
    splits_of = []  # per row block: (f, ne, u, on): its tiles and how many splits hold some
    for row in range(int(n_m.max())):
        on = row < n_m
        r0 = row * bm
        r1 = np.minimum(r0 + bm, rows) - 1
        f_r, ne_r = mask.row_tiles(r0 // grp, np.maximum(r1, r0) // grp, r0 + bm <= rows, lq, lk, bn)
        f_r, ne_r = np.where(on, f_r, 0), np.where(on, ne_r, 0)
        u_r = -(-ne_r // per)
        full, ne, ctas = full + f_r, ne + ne_r, ctas + u_r
        splits_of.append((f_r, ne_r, u_r, on & (ne_r > 0)))
    n_ctas = sl * ctas
    k = np.maximum(1, np.minimum(leg.ctas_per_sm, -(-n_ctas // r.sm_count)))
    tc = _fwd_tile_costs(r, fam, tile, k, dp, dvp, s, skv, rates, decode=True)
    a, b_ = slot_tile_times(tc, r, tile.stages)
    # split j of a row block takes kv tiles [j per, (j + 1) per): its partial tiles grow with j (they sit
    # at the row's end), so the longest CTA is the second-to-last or the last split, the shortest the
    # first or the last one
    t_max = t_min = None
    for f_r, ne_r, u_r, live in splits_of:
        for j in (0 * u_r, np.maximum(u_r - 2, 0), np.maximum(u_r - 1, 0)):
            length = np.clip(ne_r - j * per, 0, per)
            nf = np.clip(f_r - j * per, 0, length)
            dur = cta_duration(r, a, b_, nf, length - nf, tc.t_cta)
            t_max = np.where(live, dur, 0.0) if t_max is None else np.maximum(t_max, np.where(live, dur, 0.0))
            t_min = np.where(live, dur, np.inf) if t_min is None else np.minimum(t_min, np.where(live, dur, np.inf))
    t_min = np.where(np.isfinite(t_min), t_min, 0.0)
    q_rows = b * hq * lq
    hbm, partial_b = decode_bytes(b * hkv * lk * (d + dv) * skv, q_rows, d, dv, s, splits)
    l2 = ne * sl * bn * (d + dv) * skv + hbm
    kern = _kernel(r, tc, tile, k, n_ctas, full * sl, (ne - full) * sl, t_max, t_min, hbm, l2)
    combine = np.where(splits > 1, elementwise_time(r, partial_b, q_rows * dv * s, fp32_ops=3.0 * q_rows * dv * splits),
                       0.0)
    out = {"time_s": kern["time_s"] + combine, "flops": kern["flops"],
           "hbm": hbm + np.where(splits > 1, partial_b + q_rows * dv * s, 0), "tiles_full": full * sl,
           "tiles_partial": (ne - full) * sl, "tiles_empty": (n_m * n_kv - ne) * sl, "ctas": n_ctas,
           "waves": kern["waves"], "splits": splits, "name": "attn_decode"}
    if terms:  # each row block's first, second-to-last and last split that holds tiles: the CTA classes
        classes = []
        for f_r, ne_r, u_r, live in splits_of:
            for j in (0 * u_r, np.maximum(u_r - 2, 0), np.maximum(u_r - 1, 0)):
                length = np.clip(ne_r - j * per, 0, per)
                nf = np.clip(f_r - j * per, 0, length)
                classes.append((nf, length - nf, live))
        out.update(_terms(k, n_ctas, full * sl, (ne - full) * sl, hbm, l2, classes), _tile=0 * k, _bm=bm + 0 * k,
                   _cb_rd=partial_b, _cb_wr=q_rows * dv * s, _cb_ops=3.0 * q_rows * dv * splits)
    return out


def _merged(n: int, parts) -> dict:
    """One answer dict over n configurations from [(boolean selection, the answers of those)]: arrays
    along their last axis (a work term may be (TERM_CLASSES, n)), names as they are."""
    out = {}
    for sel, res in parts:
        for key, v in res.items():
            if isinstance(v, str):
                out[key] = v
                continue
            v = np.asarray(v)
            if key not in out:
                shape = v.shape[:-1] if v.ndim and v.shape[-1] == int(sel.sum()) else v.shape
                out[key] = np.zeros(shape + (n,), dtype=v.dtype)
            out[key][..., sel] = v
    return out
