"""Formula templates: many sweep rows of dense or causal attention as one formula over per-row work terms.

A workbook row's time is a formula over the Inputs (hardware figures, calibration factors) and the row's
own work terms (CTAs, full and partial tiles, bytes, the tile counts of its longest and shortest CTAs).
Rows that the closed forms price (`vectorized._closed_forms`: mha/gqa/mqa without -p values, fused
families) and that make the same discrete choices (tile, CTAs per SM, how many CTA classes bound the
longest and shortest CTA, whether a helper kernel runs or the decode splits) share one formula: the
model's own kernel-time functions (`model.kernel_time`, `cta_duration`, the tile costs,
`pricing.elementwise_time`, `bound.unit_times`) evaluated once on symbolic inputs and `Expr.column`
leaves, whose values are arrays over the rows. Every row's numbers are checked against the sweep's.

What a row's template computes equals what pricing that row alone on symbolic inputs computes
(`sweep.formula_rows`), at the written figures and after any edit of them (tests/test_templates.py),
at a fraction of the cost: the tree is built once per class of rows, not once per row.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .bound import unit_times
from .dtypes import DTYPE_BYTES
from .families import bwd_tile_candidates, decode_tile_candidates, fwd_tile_candidates
from .formulas import Expr, clear_interned, largest, smallest
from .model import (SMRates, _bwd_tile_costs, _fwd_tile_costs, cta_duration, kernel_time, resolve_family,
                    slot_tile_times)
from .pricing import elementwise_time
from .rates import rates
from .vectorized import TERM_CLASSES, _closed_forms, _legal_tiles


@dataclass
class Template:
    """Rows (indices into the arrays given) that share formulas: their kernels [(name, Expr)] in launch
    order (the time is their sum), the speed-of-light bound, and dense attention's time (None where not
    asked for). Each Expr's value is an array over `rows` (or one number for all of them)."""
    rows: np.ndarray
    kernels: list
    bound: object
    dense: object = None


def closed_form_templates(hw, shw, kernel, scal, cal, *, batch, seqlen_q, seqlen_kv, heads_q, heads_kv,
                          head_dim_qk, head_dim_v, causal, dtype, kv_dtype=None, phase="prefill", dense=None):
    """Templates of the configurations given as arrays (one entry each, as `predict_many` takes them, the
    standard layout and a fused family: `vectorized.FAST_VARIANTS`), on Hardware `hw` and its symbolic twin
    `shw` (`formulas.symbolic_hardware`), family `kernel`, calibration `cal` (what `predict_many` takes)
    whose symbolic twin is `scal`. `dense`: a boolean array, the rows that need dense attention's time too
    (the same configuration, not causal). Returns (templates, the rows no template covers: more than
    TERM_CLASSES CTA classes bound a longest or shortest CTA)."""
    arrays = dict(batch=batch, seqlen_q=seqlen_q, seqlen_kv=seqlen_kv, heads_q=heads_q, heads_kv=heads_kv,
                  head_dim_qk=head_dim_qk, head_dim_v=head_dim_v)
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in arrays.items()}
    causal = np.asarray(causal, dtype=bool)
    n = causal.size
    kw = dict(dtype=dtype, kv_dtype=kv_dtype, phase=phase, calibration=cal)
    main = _Terms(hw, kernel, arrays, causal, kw)
    want = np.zeros(n, dtype=bool) if dense is None else np.asarray(dense, dtype=bool)
    base = _Terms(hw, kernel, {k: v[want] for k, v in arrays.items()}, np.zeros(int(want.sum()), dtype=bool), kw) \
        if want.any() else None
    base_of = np.full(n, -1)
    base_of[want] = np.arange(int(want.sum()))
    ok = main.ok & (base.ok[np.maximum(base_of, 0)] | ~want if base is not None else True)
    key = np.stack([main.key, np.where(want, base.key[np.maximum(base_of, 0)] if base is not None else 0, -1)], axis=1)
    fam = resolve_family(hw, kernel)
    r_sym = rates(shw, fam, scal)
    out = []
    cols = np.flatnonzero(ok)
    if cols.size:
        uniq, inv = np.unique(key[cols], axis=0, return_inverse=True)
        for g in range(len(uniq)):
            rows = cols[inv.ravel() == g]
            clear_interned()  # a template's formulas share nodes with each other, not with other templates'
            kernels, bound = main.build(rows, r_sym, shw, fam, dtype, kv_dtype)
            dense_t = None
            if want[rows[0]]:
                dense_kernels, _ = base.build(base_of[rows], r_sym, shw, fam, dtype, kv_dtype, bound=False)
                dense_t = sum((t for _, t in dense_kernels[1:]), dense_kernels[0][1])
            out.append(Template(rows, kernels, bound, dense_t))
    return out, np.flatnonzero(~ok)


def _column(name, v):
    """A work term of a template's rows: a column, or the number itself where every row has the same."""
    if not np.ndim(v):
        return v
    first = v.flat[0]
    return first.item() if (v == first).all() else Expr.column(name, v)


class _Terms:
    """The closed forms' work terms of configurations (`vectorized._terms`), each configuration's part
    (a kind: padded head dims and causal) and position in it, and a key per configuration: equal keys,
    equal formulas."""

    def __init__(self, hw, kernel, arrays, causal, kw):
        parts, works = [], []
        _closed_forms(hw, kernel, **arrays, causal=causal, **kw,
                      collect=lambda p: (works if "works" in p else parts).append(p))
        n = causal.size
        self.parts = parts
        self.works = _joined_works(works, n)
        self.part_of, self.at = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        self.key, self.ok = np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
        offset = 0
        for i, p in enumerate(parts):
            rows = p["rows"]
            self.part_of[rows], self.at[rows] = i, np.arange(len(rows))
            cols = []
            for k in p["kernels"]:
                if "_k" in k:  # a tiled kernel: its tile, CTAs per SM, how many classes bound its CTAs
                    cols += [k["_tile"], k["_k"], k["_nmax"], k["_nmin"]]
                    self.ok[rows] &= (k["_nmax"] <= TERM_CLASSES) & (k["_nmin"] <= TERM_CLASSES)
                    if "_cb_rd" in k:  # decode: split or not, and its row block
                        cols += [k["splits"] > 1, k["_bm"]]
                elif "_runs" in k:
                    cols.append(k["_runs"])
            m = np.stack([np.broadcast_to(np.asarray(c, dtype=np.int64), (len(rows),)) for c in cols], axis=1)
            _, inv = np.unique(m, axis=0, return_inverse=True)
            self.key[rows] = offset + inv.ravel()
            offset += int(inv.max()) + 1 if len(rows) else 0

    def build(self, rows, r, shw, fam, dtype, kv_dtype, bound=True):
        """([(kernel name, Expr)], the bound's Expr) of `rows` (one key): the model's functions on the
        symbolic rates `r` and columns of the rows' work terms."""
        p = self.parts[int(self.part_of[rows[0]])]
        loc = self.at[rows]
        dp, dvp, c = p["kind"]
        s = DTYPE_BYTES[dtype]
        skv = DTYPE_BYTES[kv_dtype or dtype]
        sm_rates = SMRates.of(r, dtype, "fp32")
        out = []
        for i, k in enumerate(p["kernels"]):
            def col(name, v, i=i):  # a per-row work term (a number where it is one for every row)
                return _column(f"{k['name']}#{i}.{name}", v[loc] if np.ndim(v) else v)
            if "_runs" in k:  # a memory-streaming helper of the backward
                if k["_runs"][loc[0]]:
                    out.append((k["name"], elementwise_time(r, col("read", k["_rd"]), col("written", k["_wr"]),
                                                            fp32_ops=col("fp32_ops", k["_ops"]))))
                continue
            what = {"attn_fwd": "forward", "attn_bwd": "backward", "attn_decode": "decode"}[k["name"]]
            kt = int(k["_tile"][loc[0]])
            ks = int(k["_k"][loc[0]])
            if what == "decode":
                tile, _leg = _legal_tiles(fam, r, decode_tile_candidates(fam, r.hw, dp, dvp), dp, dvp, dtype,
                                          kv_dtype or dtype, "decode")[kt]
                tile = replace(tile, block_m=int(k["_bm"][loc[0]]))
                tc = _fwd_tile_costs(r, fam, tile, ks, dp, dvp, s, skv, sm_rates, decode=True)
            elif what == "forward":
                tile, _leg = _legal_tiles(fam, r, fwd_tile_candidates(fam, r.hw, dp, dvp, c, dtype), dp, dvp, dtype,
                                          kv_dtype or dtype, "forward")[kt]
                tc = _fwd_tile_costs(r, fam, tile, ks, dp, dvp, s, skv, sm_rates, causal=c)
            else:
                tile, _leg = _legal_tiles(fam, r, bwd_tile_candidates(fam, r.hw, dp, dvp, c, dtype), dp, dvp, dtype,
                                          dtype, "backward")[kt]
                tc = _bwd_tile_costs(r, fam, tile, ks, dp, dvp, s, sm_rates, causal=c)
            a, b = slot_tile_times(tc, r, tile.stages)

            def extreme(tag, pick):
                m = int(k[f"_n{tag}"][loc[0]])
                if not m:
                    return 0.0
                return pick([cta_duration(r, a, b, col(f"{tag} CTA full tiles {j + 1}", k[f"_{tag}f"][j]),
                                          col(f"{tag} CTA partial tiles {j + 1}", k[f"_{tag}p"][j]), tc.t_cta)
                             for j in range(m)])
            order = fam.order(what) if c and what != "decode" else "balanced"  # a plain causal mask: `launch_order`
            time_s = kernel_time(r, col("CTAs", k["_ctas"]), col("full tiles", k["_full"]),
                                 col("partial tiles", k["_part"]), extreme("max", largest), extreme("min", smallest),
                                 a, b, r.sm_count * ks, col("HBM bytes", k["_hbm"]), col("L2 bytes", k["_l2"]),
                                 tc.t_cta, col("CTA groups", k["_groups"]) if order != "balanced" else 1, order)[0]
            out.append((k["name"], time_s))
            if what == "decode" and k["splits"][loc[0]] > 1:
                out.append(("decode_combine", elementwise_time(r, col("combine read", k["_cb_rd"]),
                                                               col("combine written", k["_cb_wr"]),
                                                               fp32_ops=col("combine fp32_ops", k["_cb_ops"]))))
        return out, (self._bound(rows, shw) if bound else None)

    def _bound(self, rows, shw):
        """bound.min_bound over the rows' work alternatives: the smallest over them of the largest unit time."""
        times = []
        for a, work in enumerate(self.works):
            def col(name, v, a=a):
                return _column(f"bound {a + 1} {name}", v[rows] if np.ndim(v) else v)
            work = replace(work, tensor=[(col(f"tensor FLOPs {j + 1}", f), dt, acc)
                                         for j, (f, dt, acc) in enumerate(work.tensor)],
                           exp=col("exps", work.exp), fp32=col("fp32 ops", work.fp32),
                           smem_bytes=col("smem bytes", work.smem_bytes), hbm_bytes=col("HBM bytes", work.hbm_bytes),
                           piece_tensor=[(col(f"piece FLOPs {j + 1}", f), dt, acc)
                                         for j, (f, dt, acc) in enumerate(work.piece_tensor)],
                           piece_exp=col("piece exps", work.piece_exp))
            times.append(largest(unit_times(work, shw).values()))
        return smallest(times)


def _joined_works(chunks, n):
    """The bound's work alternatives of every configuration: each chunk's (`_closed_forms` collects one per
    chunk of configurations, {"rows", "works"}) joined into one per alternative, its fields arrays over the n
    configurations in their order (a field one number in every chunk stays that number)."""
    at = np.concatenate([c["rows"] for c in chunks])

    def joined(values):
        if all(not np.ndim(v) for v in values) and len(set(values)) == 1:
            return values[0]
        out = np.empty(n)
        out[at] = np.concatenate([np.broadcast_to(np.asarray(v, dtype=float), (len(c["rows"]),))
                                  for v, c in zip(values, chunks)])
        return out
    works = []
    for a, first in enumerate(chunks[0]["works"]):
        each = [c["works"][a] for c in chunks]
        works.append(replace(first, tensor=[(joined([w.tensor[j][0] for w in each]), dt, acc)
                                            for j, (_, dt, acc) in enumerate(first.tensor)],
                             exp=joined([w.exp for w in each]), fp32=joined([w.fp32 for w in each]),
                             smem_bytes=joined([w.smem_bytes for w in each]),
                             hbm_bytes=joined([w.hbm_bytes for w in each]),
                             piece_tensor=[(joined([w.piece_tensor[j][0] for w in each]), dt, acc)
                                           for j, (_, dt, acc) in enumerate(first.piece_tensor)],
                             piece_exp=joined([w.piece_exp for w in each])))
    return works
