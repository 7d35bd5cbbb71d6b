"""Design search: the mask parameters that reach a target speed (`attnsim search`).

    space(variant, name, ...)           the candidate values of one varied parameter (-p strings)
    Spec(...)                           a search: the variant, the problem, the varied parameters
    run(spec) -> Result                 every legal combination priced, the best first, the Pareto front

Each candidate is resolved and priced as `attnsim predict` prices it (`problem.resolve`,
`problem.predict_problem`), its speedup over dense attention taken against one dense prediction on the same
family and calibration (`model.speedup_over_dense`, as predict's `speedup` block). A combination `resolve`
or the kernel family refuses (NATTEN's rules: stride <= kernel size, kernel size x dilation <= extent; a
tile box the family cannot run) is illegal: never ranked, counted by reason.

Reach (what a query keeps, for the quality side of the trade): `keys_per_query` = live pairs / query
tokens of one head, and `fraction` = live pairs / dense pairs. `fully_block_sparse`: the kernel's main
pass has no partial (masked) tile.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import AttnsimError

MAX_CANDIDATES = 1 << 17  # 131,072: a larger space needs force=True (--force)
OBJECTIVES = ("time", "speedup")
# The parameters a search may vary, per variant, and how their values are written (-p grammar).
SEARCHABLE = {
    "gna": ("stride", "kernel_size", "dilation", "q_tile", "kv_tile"),
    "na": ("kernel_size", "dilation", "q_tile", "kv_tile"),
    "swa": ("window_size", "sink", "attention_chunk"),
    "moba": ("block_size", "top_k"),
    "vmoba": ("block", "top_k"),
    "segment": ("segments",),
    "moa": ("spans",),
}
_TUPLES = ("stride", "kernel_size", "dilation", "q_tile", "kv_tile", "block")  # per-dimension values (AxBxC)


@dataclass
class Spec:
    """A search. `vary`: {name: [value strings] or None (the default space of `space`)}; `fixed`: the
    other -p values (strings); `workload`: resolve's keyword arguments (batch, heads, seqlen, causal...)."""
    variant: str
    hardware: str
    vary: dict
    fixed: dict = field(default_factory=dict)
    workload: dict = field(default_factory=dict)
    kernel: str | None = None
    objective: str = "time"
    top: int = 20
    min_reach: str | None = None  # "2048" (keys per query) or "5%" (of the dense pairs)
    max_time: float | None = None
    budget: int | None = None  # moa: the mean span over the head groups (the default space of spans)
    groups: int = 4  # moa: head groups of the default space of spans
    calibration: object = "default"


@dataclass
class Result:
    evaluated: int  # candidates priced
    illegal: dict  # reason -> count
    candidates: list  # the best first (after the constraints), at most `top`
    pareto: list  # speedup against reach: no other candidate is faster and reaches as far
    fully_block_sparse_min_stride: str | None
    constrained_out: int = 0  # legal candidates the constraints removed
    total: int = 0  # combinations enumerated
    reason: str = ""  # why the table is empty, when it is
    minimal_strides: list | None = None  # block-sparse strides no other one is <= in every dimension
    illegal_examples: dict = field(default_factory=dict)  # reason -> one refused combination and its message

    def to_json(self) -> dict:
        return {"evaluated": self.evaluated, "illegal": self.illegal, "illegal_examples": self.illegal_examples,
                "constrained_out": self.constrained_out, "candidates": self.candidates, "pareto": self.pareto,
                "fully_block_sparse_min_stride": self.fully_block_sparse_min_stride,
                "fully_block_sparse_minimal_strides": self.minimal_strides,
                **({"reason": self.reason} if self.reason else {})}


# -- the spaces -----------------------------------------------------------------------------------
def _fmt(v) -> str:
    return "x".join(str(int(x)) for x in v) if isinstance(v, (tuple, list)) else str(v)


def _dims(text, nd, name):
    """A per-dimension value (k or AxBxC) as a tuple of nd integers."""
    parts = [p for p in re.split(r"[x,]", str(text).strip()) if p]
    if not parts or not all(p.isdigit() for p in parts):
        raise AttnsimError(f"{name}={text!r}: expected positive integers per dimension (k or AxBxC)")
    vals = [int(p) for p in parts]
    if len(vals) == 1:
        vals = vals * nd
    if len(vals) != nd:
        raise AttnsimError(f"{name}={text!r} has {len(vals)} values for a {nd}-dimensional token grid")
    return tuple(vals)


def space(variant: str, name: str, fixed: dict, shape=None, seqlen=None, tiles=()) -> list:
    """The default candidate values of `name` (strings in the -p grammar), given the fixed parameters:
    stride: 1..kernel_size per dimension; dilation: 1..extent // kernel_size; kernel_size: 1..extent (odd
    sizes and the extent); q_tile / kv_tile: boxes of powers of two per dimension holding one of `tiles`
    tokens (the family's tile sides); window_size: powers of two up to the sequence (each side, or left
    only with right 0 when causal); sink, attention_chunk: 0 and powers of two; block_size: powers of two
    64..seqlen; top_k: 1..8; segments: powers of two 64..seqlen; block: powers of two per dimension;
    spans (moa): `fixed["groups"]` spans, powers of two 64..seqlen in increasing order, whose mean is at
    most `fixed["budget"]`."""
    from .na import _pow2_boxes, NADim
    nd = len(shape) if shape else 1
    pow2 = lambda hi, lo=1: [1 << b for b in range(max(lo, 1).bit_length() - 1, max(hi, 1).bit_length()) if lo <= 1 << b <= hi]  # noqa: E731
    if name == "stride":
        ks = _dims(fixed.get("kernel_size", "7"), nd, "kernel_size")
        return [_fmt(v) for v in itertools.product(*(range(1, k + 1) for k in ks))]
    if name == "dilation":
        ks = _dims(fixed.get("kernel_size", "7"), nd, "kernel_size")
        return [_fmt(v) for v in itertools.product(*(range(1, max(n // k, 1) + 1) for n, k in zip(shape, ks)))]
    if name == "kernel_size":
        return [_fmt(v) for v in itertools.product(*(sorted(set(range(1, n + 1, 2)) | {n}) for n in shape))]
    if name in ("q_tile", "kv_tile"):
        dims = [NADim(n, 1) for n in shape]
        return list(dict.fromkeys(_fmt(b) for t in sorted(set(tiles)) for b in _pow2_boxes(dims, t, limit=1 << 12)))
    if name == "window_size":
        return [f"{w},{0 if fixed.get('causal') else w}" for w in pow2(seqlen, 16)]
    if name in ("sink", "attention_chunk"):
        return ["0"] + [str(v) for v in pow2(seqlen, 64 if name == "attention_chunk" else 1)]
    if name == "block_size":
        return [str(v) for v in pow2(seqlen, 64)]
    if name == "top_k":
        return [str(v) for v in range(1, 9)]
    if name == "segments":
        return [str(v) for v in pow2(seqlen, 64)]
    if name == "block":
        return [_fmt(v) for v in itertools.product(*(pow2(n) for n in shape))]
    if name == "spans":
        budget = fixed.get("budget")
        if budget is None:
            raise AttnsimError("--vary spans: give --budget N (the mean span over the head groups the candidates keep "
                               "within) or the span lists to try (-p spans=1024,2048;2048,4096)")
        groups = int(fixed.get("groups") or 4)
        sizes = pow2(seqlen, 64)
        return [",".join(map(str, c)) for c in itertools.combinations_with_replacement(sizes, groups)
                if sum(c) <= budget * groups]
    raise AttnsimError(f"--vary {name}: no default space; give its values with -p {name}=A;B;C")


def _reason(msg: str) -> str:
    """An illegal combination's reason with its numbers taken out (so counts group like reasons)."""
    head = msg.split(";")[0].strip()
    return re.sub(r"\b\d+(?:x\d+)*\b", "N", head)


# -- the search -------------------------------------------------------------------------------------
def _check_names(spec: Spec):
    """The varied names: some, each one the variant searches, none also fixed (AttnsimError)."""
    own = SEARCHABLE.get(spec.variant)
    if own is None:
        raise AttnsimError(f"attnsim search has no parameters to vary for variant {spec.variant!r}; searchable: "
                           + ", ".join(f"{v} ({', '.join(p)})" for v, p in SEARCHABLE.items()))
    for n in spec.vary:
        if n not in own:
            raise AttnsimError(f"--vary {n}: variant {spec.variant} searches {', '.join(own)}")
        if n in spec.fixed:
            raise AttnsimError(f"-p {n} is varied: give its candidates as alternatives joined by ';' "
                               f"(e.g. -p {n}=A;B) with --vary {n}, or drop it from --vary")
    if not spec.vary:
        raise AttnsimError("--vary names no parameter; e.g. --vary stride,q_tile,kv_tile")


def combinations(spec: Spec, tiles=()) -> tuple:
    """(names, [tuple of values]) of the varied parameters: their product."""
    _check_names(spec)
    names = list(spec.vary)
    shape = _shape(spec)
    seqlen = math.prod(shape) if shape else spec.workload.get("seqlen") or 4096
    values = []
    for n in names:
        vals = spec.vary[n]
        if vals is None:
            vals = space(spec.variant, n, {**spec.fixed, "causal": spec.workload.get("causal"), "budget": spec.budget,
                                           "groups": spec.groups}, shape, seqlen, tiles)
        if not vals:
            raise AttnsimError(f"--vary {n}: its space is empty for these fixed parameters")
        values.append(list(dict.fromkeys(vals)))
    return names, values


def _shape(spec: Spec):
    ts = spec.fixed.get("token_shape") or spec.workload.get("token_shape")
    if ts is None:
        return None
    return tuple(int(x) for x in re.split(r"[x,]", str(ts)) if x)


def size(spec: Spec, tiles=()) -> int:
    _, values = combinations(spec, tiles)
    return math.prod(len(v) for v in values)


def _reach_limit(text):
    """--min-reach: "N" keys per query, or "P%" of the dense pairs -> (kind, value)."""
    t = str(text).strip()
    try:
        if t.endswith("%"):
            v = float(t[:-1]) / 100
            if not 0 <= v <= 1:
                raise ValueError
            return "fraction", v
        v = float(t)
        if v < 0 or not math.isfinite(v):
            raise ValueError
        return "keys_per_query", v
    except ValueError:
        raise AttnsimError(f"--min-reach {text!r}: a number of keys per query (e.g. 2048) or a percentage of the "
                           f"dense pairs (e.g. 5%)") from None


def family_tiles(spec: Spec) -> tuple:
    """The tile sides (tokens) the kernel family runs forward on this GPU: the boxes q_tile / kv_tile may hold."""
    from .families import fwd_tile_candidates
    from .hardware import load_hardware
    from .model import resolve_family
    hw = load_hardware(spec.hardware)
    fam = resolve_family(hw, spec.kernel)
    d = int(spec.workload.get("head_dim") or 128)
    dp, dvp = fam.pad_dims(d, int(spec.workload.get("head_dim_v") or d), False)
    cands = fwd_tile_candidates(fam, hw, dp, dvp, False, spec.workload.get("dtype", "bf16"))
    return tuple(sorted({t.block_m for t in cands})), tuple(sorted({t.block_n for t in cands}))


def validate(spec: Spec, hw):
    """Bad input, said once before any candidate is priced (AttnsimError): a variant without searchable
    parameters or a name it does not search; a fixed -p value, the workload or the kernel that resolve refuses
    whatever the varied parameters are (an error that names no varied parameter); a candidate value that is
    not a value of its parameter (its own check, alone)."""
    from .problem import resolve
    from .variants import _check_value, get_variant, parse_param
    _check_names(spec)
    if spec.variant != "moa" and spec.budget is not None:
        raise AttnsimError("--budget and --groups are for --variant moa --vary spans")
    try:
        resolve(spec.variant, dict(spec.fixed), kernel=spec.kernel, hw=hw, **spec.workload)
    except AttnsimError as e:
        head = str(e).split(";")[0]  # what is wrong (the rest may list what is allowed)
        if not any(re.search(rf"\b{re.escape(n)}\b", head) for n in spec.vary):
            raise
    params = {p.name: p for p in get_variant(spec.variant).params}
    for n, vals in spec.vary.items():
        for v in vals or ():
            try:
                _check_value(params[n], parse_param(f"{n}={v}")[1])
            except AttnsimError as e:
                raise AttnsimError(f"-p {n}: the candidate {v!r} is not a value of {n} ({e})") from None
    if _shape(spec) is None and {"stride", "kernel_size", "dilation", "q_tile", "kv_tile", "block"} & set(spec.vary):
        raise AttnsimError(f"--vary {', '.join(spec.vary)}: {spec.variant} needs the token grid (--token-shape AxBxC)")


def run(spec: Spec, force: bool = False, progress=None, fast: bool = True) -> Result:
    """Price every combination of the varied parameters (see the module docstring). `fast`: neighborhood
    attention's stride and box searches over arrays (`_fast_gna`, the same numbers) where it applies."""
    from .hardware import load_hardware
    from .masks import DenseMask, mask_sums
    from .model import predict as model_predict, speedup_over_dense
    from .problem import predict_problem, resolve

    if spec.objective not in OBJECTIVES:
        raise AttnsimError(f"--objective {spec.objective!r}; allowed: {', '.join(OBJECTIVES)}")
    reach_limit = None if spec.min_reach is None else _reach_limit(spec.min_reach)
    hw = load_hardware(spec.hardware)
    validate(spec, hw)
    q_tiles, kv_tiles = family_tiles(spec) if spec.variant in ("gna", "na") else ((), ())
    names, values = combinations(spec, tiles=q_tiles)
    if "kv_tile" in names and spec.vary["kv_tile"] is None:  # kv boxes hold the family's kv tile sides
        values[names.index("kv_tile")] = space(spec.variant, "kv_tile", spec.fixed, _shape(spec), None, kv_tiles)
    total = math.prod(len(v) for v in values)
    if total > MAX_CANDIDATES and not force:
        raise AttnsimError(f"the search has {total:,} combinations, more than {MAX_CANDIDATES:,}: fix or narrow a "
                           f"parameter (-p NAME=A;B), or pass --force")
    rows_fast = _try_fast(spec, names, values, hw) if fast else None
    if rows_fast is not None:
        f = rows_fast
        sparse = []
        if "stride" in names:  # the stride values with a block-sparse candidate
            col = names.index("stride")
            sparse = [str(f.values[col][j]) for j in np.unique(f.index[col][f.partial == 0]).tolist()]
        return _finish(spec, names, total, reach_limit, f.row, f.time_s, f.dense.time_s / f.time_s,
                       f.keys_per_query, f.fraction, sparse)
    illegal, examples, rows, dense = {}, {}, [], {}
    done = 0
    for combo in itertools.product(*values):
        done += 1
        if progress and done % 256 == 0:
            progress(done, total)
        params = {**spec.fixed, **dict(zip(names, combo))}
        try:
            prob = resolve(spec.variant, params, kernel=spec.kernel, hw=hw, **spec.workload)
            pred = predict_problem(prob, hw, compare=False, calibration=spec.calibration)
        except AttnsimError as e:
            r = _reason(str(e))
            illegal[r] = illegal.get(r, 0) + 1
            examples.setdefault(r, f"{', '.join(f'{n}={v}' for n, v in zip(names, combo))}: {e}")
            continue
        w = pred.workload
        key = (pred.family.name, w.seqlen_q, w.seqlen_kv)
        if key not in dense:  # dense attention on the same family and calibration: predict's baseline
            dense[key] = model_predict(w.with_(causal=False), hw, pred.family.name, DenseMask(), spec.variant,
                                       compare=False, calibration=spec.calibration)
        sp = speedup_over_dense(pred, dense[key])
        segs = w.real_segments()
        live, _ = mask_sums(prob.mask.for_lengths(w.seqlen_q, w.seqlen_kv), segs, w.heads_q)
        queries = w.heads_q * sum(q * m for q, _, m in segs)
        dense_pairs = w.heads_q * sum(q * k * m for q, k, m in segs)
        main = pred.tiles
        rows.append({"params": {n: str(v) for n, v in zip(names, combo)}, "time_s": pred.time_s,
                     "bound_s": pred.bound.time_s, "speedup": sp,
                     "useful_fraction": pred.useful_flops / pred.flops if pred.flops else None,
                     "tiles": main, "tiles_iterated": pred.tiles_iterated,
                     "fully_block_sparse": main["partial"] == 0,
                     "reach": {"keys_per_query": live / queries, "fraction": live / dense_pairs},
                     "kernel": pred.family.name})
    column = lambda f: np.array([f(r) for r in rows], dtype=float)  # noqa: E731
    return _finish(spec, names, total, reach_limit, rows.__getitem__, column(lambda r: r["time_s"]),
                   column(lambda r: r["speedup"]["time"]), column(lambda r: r["reach"]["keys_per_query"]),
                   column(lambda r: r["reach"]["fraction"]),
                   [r["params"]["stride"] for r in rows if r["fully_block_sparse"]] if "stride" in names else [],
                   illegal, examples)


def _finish(spec: Spec, names, total: int, reach_limit, row, time_s, speedup, keys_per_query, fraction, sparse,
            illegal=None, examples=None) -> Result:
    """The result from the priced candidates (`row(i)`: candidate i as reported; the arrays: one entry per
    candidate, in enumeration order; `sparse`: the strides of the block-sparse ones): the constraints, the
    ranking, the Pareto front, the smallest block-sparse strides, the empty table's reason. Stable sorts keep
    enumeration order among ties."""
    n = len(time_s)
    keep = np.ones(n, dtype=bool)
    if reach_limit is not None:
        kind, v = reach_limit
        keep &= (keys_per_query if kind == "keys_per_query" else fraction) >= v * (1 - 1e-12)
    if spec.max_time is not None:
        keep &= time_s <= spec.max_time
    idx = np.flatnonzero(keep)
    by_speed = idx[np.lexsort((-fraction[idx], -speedup[idx]))]
    order = idx[np.lexsort((-fraction[idx], time_s[idx]))] if spec.objective == "time" else by_speed
    # the Pareto front: faster (higher time speedup) against further reach; no candidate both at least as fast
    # and reaching at least as far, one of them strictly
    f = fraction[by_speed]
    best_before = np.concatenate(([-1.0], np.maximum.accumulate(f)[:-1])) if len(f) else f
    front = by_speed[f > best_before]
    min_stride, minimal = _min_strides(spec, names, sparse)
    reason = _empty_reason(spec, bool(len(order)), bool(n), [row(int(np.argmax(fraction)))["reach"]] if n else [])
    top = order[:spec.top] if spec.top else order
    return Result(evaluated=n, illegal=illegal or {}, candidates=[row(i) for i in top.tolist()],
                  pareto=[row(i) for i in front.tolist()], fully_block_sparse_min_stride=min_stride,
                  constrained_out=n - len(idx), total=total, reason=reason, minimal_strides=minimal,
                  illegal_examples=examples or {})


def _min_strides(spec: Spec, names, sparse: list):
    """(the smallest block-sparse stride: fewest product, then as written; every block-sparse stride no other
    one is smaller than or equal to in every dimension), or (None, None) unless the stride varies over a fixed
    window (kernel size and dilation not varied)."""
    if "stride" not in names or {"kernel_size", "dilation"} & set(names):
        return None, None
    if not sparse:
        return None, []
    nd = _dims(sparse[0], 1 if "x" not in sparse[0] else sparse[0].count("x") + 1, "stride")
    nd = len(nd)
    uniq = sorted({tuple(_dims(s, nd, "stride")) for s in sparse}, key=lambda t: (math.prod(t), "x".join(map(str, t))))
    minimal = []
    for t in uniq:  # a dominating stride has a smaller product: it is kept, or dominated by one kept before it
        if not any(all(a <= b for a, b in zip(m, t)) for m in minimal):
            minimal.append(t)
    fmt = lambda t: "x".join(map(str, t))  # noqa: E731
    return fmt(uniq[0]), [fmt(t) for t in minimal]


def _empty_reason(spec: Spec, ranked: bool, priced: bool, reaches) -> str:
    """Why the table is empty ('' when it is not): nothing legal, or the constraints given, with the best reach
    and time there were."""
    if ranked:
        return ""
    if not priced:
        return "no legal combination (see illegal)"
    given = ([f"--min-reach {spec.min_reach}"] if spec.min_reach is not None else []) + (
        [f"--max-time {spec.max_time:g}"] if spec.max_time is not None else [])
    best = max(reaches, key=lambda r: r["fraction"]) if reaches else None
    return (f"no candidate meets {' and '.join(given)}" + (
        f" (the furthest reach was {best['keys_per_query']:,.0f} keys per query, {100 * best['fraction']:.2f}% "
        f"of the dense non-causal pairs)" if best else ""))


# -- the fast path: neighborhood attention over arrays of candidates ------------------------------------
def _fast_applies(spec: Spec, names, prob, pred) -> bool:
    """Whether `_fast_gna` prices this search: gna/na forward (prefill) of a fused family that takes the first
    legal tile of its table, NATTEN's tiled order and box iteration, no causal dimension, the attention scope,
    only stride / q_tile / kv_tile varied, and predict keeping the family asked for (no fallback)."""
    from .na import NAMask
    mask = prob.mask
    return (spec.variant in ("gna", "na") and set(names) <= {"stride", "q_tile", "kv_tile"}
            and isinstance(mask, NAMask) and mask.token_order == "tiled" and mask.iteration == "box"
            and not any(d.causal for d in mask.dims) and not prob.workload.causal
            and prob.workload.phase == "prefill" and prob.scope == "attention" and prob.layout is None
            and pred.family.fused and not pred.family.autotune and prob.workload.seqlens is None
            and [k.role for k in pred.kernels][-1:] == ["forward"])


def _fast_gna(spec: Spec, names, values, prob, pred, hw, dense):
    """Every candidate priced with `model`'s own functions over arrays, using the product structure of a
    neighborhood mask: per dimension, each (stride, q box side, kv box side) is classified once
    (`na._dim_classes`); a candidate's tiles are products over dimensions; with box iteration every query box
    visits the same number of tiles, so its longest and shortest CTA are those with the fewest and most
    full tiles (the duration is linear in them). Returns the rows `run` builds, as arrays (`_FastRows`), or
    None when a candidate needs the general path (a stride or box `resolve` would refuse)."""
    from .bound import attention_work_alternatives, min_bound
    from .families import can_implement, fwd_tile_candidates
    from .model import SMRates, _fwd_tile_costs, _kv_cols, _segment_sums, cta_duration, forward_bytes, kernel_time, \
        slot_tile_times, work_flops
    from .na import MAX_BOX_TOKENS, NADim, _dim_classes, _dim_cost, _pow2_boxes, auto_box, dim_fits
    from .rates import rates
    from .calibrations import choose
    from .ops import Tile

    w, mask, fam = pred.workload, prob.mask, pred.family
    nd = len(mask.dims)
    n = math.prod(len(v) for v in values)
    # candidate c of itertools.product(*values) (the general path's order: ties keep it) is index[:, c]
    index = np.indices([len(v) for v in values]).reshape(len(values), -1) if n else np.zeros((len(values), 0), int)
    fixed_dims = mask.dims
    parsed = {}
    for name, vals in zip(names, values):
        try:
            parsed[name] = np.array([_dims(v, nd, name) for v in vals], dtype=np.int64).reshape(len(vals), nd)
        except AttnsimError:
            return None  # a malformed value: resolve says why
    if "stride" in parsed:
        sv = parsed["stride"]
        if np.any(sv < 1) or np.any(sv > np.array([d.k for d in fixed_dims])):
            return None  # NATTEN's rule (stride <= kernel_size): resolve says why, per candidate
        stride = sv[index[names.index("stride")]]
    else:
        stride = np.tile(np.array([d.s for d in fixed_dims], dtype=np.int64), (n, 1))
    boxes = {}
    for key in ("q_tile", "kv_tile"):
        if key in parsed:
            b = parsed[key]
            if np.any(b < 1) or np.any(b.prod(1) > MAX_BOX_TOKENS):
                return None
            boxes[key] = b[index[names.index(key)]]
        elif getattr(mask, key) is not None:
            boxes[key] = np.tile(np.array(getattr(mask, key), dtype=np.int64), (n, 1))
    cal, _ = choose(spec.calibration, hw, fam, w.dtype, w.phase)
    r = rates(hw, fam, cal)
    dp, dvp = fam.pad_dims(w.head_dim_qk, w.head_dim_v, w.v_in_k)
    s, skv = w.dtype_bytes, w.kv_dtype_bytes
    sm_rates = SMRates.mixed(r, w, w.qk_matmuls * dp, dvp)
    cands = fwd_tile_candidates(fam, hw, dp, dvp, False, w.dtype, False)
    slices = w.batch * w.heads_q  # CTAs per query box
    kvc = _kv_cols(w, w.head_dim_qk, w.head_dim_v)
    kern = w.aggregate()  # as model.fused_forward reads and writes them
    keys = _segment_sums(w, mask, w.segments())[1]
    hbm, l2_q_o = forward_bytes(w.heads_q * kern.seqlen_q, w.heads_kv * keys, w.head_dim_qk, w.head_dim_v,
                                w.seq_dims, s, skv, True, w.shared_operand_bytes(min(keys, w.seqlen_kv)))
    base = sum(k.time_s for k in pred.kernels[:-1])  # the token permutation's kernels, launched first
    base_flops = sum(int(k.flops) for k in pred.kernels[:-1])

    # the tile: the first entry of the family's table whose sides (the boxes' tokens, else the table's sides
    # rounded down to powers of two) it can run
    def side(x):
        return 1 << (int(x).bit_length() - 1)
    q_tok = boxes["q_tile"].prod(1) if "q_tile" in boxes else np.zeros(n, dtype=np.int64)
    k_tok = boxes["kv_tile"].prod(1) if "kv_tile" in boxes else np.zeros(n, dtype=np.int64)
    tile_of = np.full(n, -1)
    chosen = []
    sides, side_inv = np.unique(q_tok * (1 << 32) + k_tok, return_inverse=True)  # per distinct (q, kv) tokens
    side_inv = side_inv.ravel()
    for u_i, key in enumerate(sides.tolist()):
        bm_i, bn_i = key >> 32, key & ((1 << 32) - 1)
        pick = None
        for c in cands:
            t = Tile(bm_i or side(c.block_m), bn_i or side(c.block_n), c.num_warps, c.stages)
            if t in chosen or can_implement(fam, hw, t, dp, dvp, w.dtype, w.kv_dtype, False, w.v_in_k, w.k_streams).ok:
                if t not in chosen:
                    chosen.append(t)
                pick = chosen.index(t)
                break
        if pick is None:
            return None  # no legal tile: the general path says why
        tile_of[side_inv == u_i] = pick
    # per candidate: its dimensions (stride varies) and boxes (given, or the tile search's)
    dims_of = {}

    def dim(i, st):
        key = (i, st)
        if key not in dims_of:
            d = fixed_dims[i]
            dims_of[key] = NADim(d.n, d.k, st, d.d, d.causal)
        return dims_of[key]
    qb = boxes.get("q_tile")
    kb = boxes.get("kv_tile")
    if qb is None or kb is None:  # the tile search (NAMask.boxes / search_boxes) over arrays of candidates
        qb = np.zeros((n, nd), dtype=np.int64) if qb is None else qb.copy()
        kb = np.zeros((n, nd), dtype=np.int64) if kb is None else kb.copy()
        groups = {}
        gq = boxes["q_tile"] if "q_tile" in boxes else np.zeros((n, nd), dtype=np.int64)
        gk = boxes["kv_tile"] if "kv_tile" in boxes else np.zeros((n, nd), dtype=np.int64)
        gkey = np.concatenate([tile_of[:, None], gq, gk], axis=1)
        ukeys, g_inv = np.unique(gkey, axis=0, return_inverse=True)
        g_inv = g_inv.ravel()
        for g_i, row in enumerate(ukeys.tolist()):
            t = chosen[row[0]]
            q_fix = tuple(row[1:1 + nd]) if "q_tile" in boxes else None
            k_fix = tuple(row[1 + nd:]) if "kv_tile" in boxes else None
            groups[(t.block_m, t.block_n, q_fix, k_fix)] = np.flatnonzero(g_inv == g_i)
        for (bm, bn, q_fix, k_fix), sel in groups.items():
            q_fix = q_fix if q_fix and math.prod(q_fix) == bm else None
            k_fix = k_fix if k_fix and math.prod(k_fix) == bn else None
            if q_fix and k_fix:
                qb[sel], kb[sel] = q_fix, k_fix
                continue
            qs = [q_fix] if q_fix else _pow2_boxes(fixed_dims, bm)  # stride-free: extents and dilation only
            ks = [k_fix] if k_fix else _pow2_boxes(fixed_dims, bn)
            if not qs or not ks:
                qb[sel] = q_fix or auto_box(fixed_dims, bm)
                kb[sel] = k_fix or auto_box(fixed_dims, bn)
                continue
            qa, ka = np.array(qs), np.array(ks)
            ext = np.array([int(d.group_extent(0)) for d in fixed_dims])
            ragged = ((ext % qa != 0).sum(1)[:, None] + (ext % ka != 0).sum(1)[None, :]).ravel()
            for lo in range(0, len(sel), 512):
                part = sel[lo:lo + 512]
                total = None
                for j in range(nd):
                    su, s_inv = np.unique(stride[part, j], return_inverse=True)
                    tq, iq = np.unique(qa[:, j], return_inverse=True)
                    tk, ik = np.unique(ka[:, j], return_inverse=True)
                    tab = np.array([[[_dim_cost(dim(j, int(st)), int(t), int(u), False) for u in tk] for t in tq]
                                    for st in su])
                    c = tab[s_inv.ravel()][:, iq.ravel()][:, :, ik.ravel()].reshape(len(part), -1)
                    total = c if total is None else total * c  # in dimension order, as the tile search multiplies
                # the fewest iterated tiles, then the fewest ragged boxes, then the first pair (q boxes outer)
                on = total == total.min(1, keepdims=True)
                rag = np.where(on, ragged[None, :], np.iinfo(np.int64).max)
                on &= rag == rag.min(1, keepdims=True)
                first = on.argmax(1)
                qb[part], kb[part] = qa[first // len(ks)], ka[first % len(ks)]
    # per dimension: the classification of each distinct (stride, q side, kv side)
    nq = np.ones(n, dtype=np.int64)
    nk = np.ones(n, dtype=np.int64)
    sum_f = np.ones(n, dtype=np.int64)
    sum_ne = np.ones(n, dtype=np.int64)
    f_min = np.ones(n, dtype=np.int64)
    f_max = np.ones(n, dtype=np.int64)
    n_iter = np.ones(n, dtype=np.int64)
    live = np.ones(n, dtype=np.int64)
    for j in range(nd):
        key = stride[:, j] * (1 << 40) + qb[:, j] * (1 << 20) + kb[:, j]
        uniq, inv = np.unique(key, return_inverse=True)
        inv = inv.ravel()
        tab = np.zeros((len(uniq), 8), dtype=np.int64)
        for u_i, kk in enumerate(uniq.tolist()):
            st, t, u = kk >> 40, (kk >> 20) & ((1 << 20) - 1), kk & ((1 << 20) - 1)
            d = dim(j, int(st))
            if not dim_fits(d, int(t), int(u)):
                return None  # the general path says why
            full, ne = _dim_classes(d, int(t), int(u))
            f, e = full.sum(1), ne.sum(1)
            tab[u_i] = (full.shape[0], full.shape[1], f.sum(), e.sum(), f.min(), f.max(), e.max(), d.live_pairs())
        row = tab[inv]
        nq, nk, sum_f, sum_ne = nq * row[:, 0], nk * row[:, 1], sum_f * row[:, 2], sum_ne * row[:, 3]
        f_min, f_max, n_iter, live = f_min * row[:, 4], f_max * row[:, 5], n_iter * row[:, 6], live * row[:, 7]
    # the forward kernel, per tile (a handful): model.kernel_time on arrays, as _finish prices it
    time_s, flops = np.zeros(n), np.zeros(n, dtype=np.int64)
    n_ctas = slices * nq
    it_full = slices * sum_f
    it_part = slices * nq * n_iter - it_full
    for ti, t in enumerate(chosen):
        on = tile_of == ti
        if not on.any():
            continue
        leg = can_implement(fam, hw, t, dp, dvp, w.dtype, w.kv_dtype, False, w.v_in_k, w.k_streams)
        k = np.maximum(1, np.minimum(leg.ctas_per_sm, -(-n_ctas[on] // r.sm_count)))
        for kv in np.unique(k).tolist():
            sel = np.flatnonzero(on)[k == kv]
            tc = _fwd_tile_costs(r, fam, t, kv, dp, dvp, s, skv, sm_rates, w, False)
            a, b = slot_tile_times(tc, r, t.stages)
            n_it = n_iter[sel]
            ends = [cta_duration(r, a, b, f, n_it - f, tc.t_cta) for f in (f_min[sel], f_max[sel])]
            d_max, d_min = np.maximum(*ends), np.minimum(*ends)
            visited = (it_full[sel] + it_part[sel]).astype(float)
            l2 = visited * t.block_n * kvc * skv + l2_q_o
            time_s[sel] = kernel_time(r, n_ctas[sel], it_full[sel], it_part[sel], d_max, d_min, a, b,
                                      r.sm_count * kv, hbm, l2, tc.t_cta)[0]
            flops[sel] = np.rint(visited * tc.flops).astype(np.int64)
    time_s = base + time_s
    flops = base_flops + flops
    # the bound and useful work, per distinct live-pair count
    bounds, useful = np.zeros(n), np.zeros(n, dtype=np.int64)
    segs = w.real_segments()
    for lv in np.unique(live).tolist():
        sel = live == lv
        pairs = w.heads_q * sum(lv * m for _q, _k, m in segs)
        keys = (w.heads_q * sum(k * m for _q, k, m in segs)) // w.heads_q
        works = attention_work_alternatives(w.aggregate(segs), None, keys, pairs_total=pairs)
        bounds[sel] = min_bound(works, hw).time_s
        useful[sel] = work_flops(works[0])
    grid = slices * nq * nk
    full_live = slices * sum_f
    partial_live = slices * sum_ne - full_live
    queries = w.heads_q * sum(q * m for q, _k, m in segs)
    pairs_all = w.heads_q * w.batch * live
    dense_pairs = w.heads_q * sum(q * k * m for q, k, m in segs)
    return _FastRows(names=names, time_s=time_s, bound_s=bounds, useful=useful, flops=flops,
                     full=full_live, partial=partial_live, empty=grid - full_live - partial_live, grid=grid,
                     iterated=it_full + it_part, keys_per_query=pairs_all / queries, fraction=pairs_all / dense_pairs,
                     kernel=fam.name, dense=dense, stride=stride, values=values, index=index)


@dataclass
class _FastRows:
    names: list
    time_s: object
    bound_s: object
    useful: object
    flops: object
    full: object
    partial: object
    empty: object
    grid: object
    iterated: object
    keys_per_query: object
    fraction: object
    kernel: str
    dense: object
    stride: object
    values: list  # per varied name, its values (strings)
    index: object  # (names, candidates): each candidate's index into each name's values

    def params(self, i: int) -> dict:
        return {n: str(v[self.index[j, i]]) for j, (n, v) in enumerate(zip(self.names, self.values))}

    def row(self, i: int) -> dict:
        """Candidate i as `run` reports it (speedup as model.speedup_over_dense computes it)."""
        d = self.dense
        live = int(self.full[i] + self.partial[i])
        t = float(self.time_s[i])
        sp = {"useful_flops": d.useful_flops / int(self.useful[i]) if self.useful[i] else None,
              "live_tiles": int(self.grid[i]) / live if live else None,
              "iterated_tiles": int(self.grid[i]) / int(self.iterated[i]) if self.iterated[i] else None,
              "time": d.time_s / t, "dense_time_s": d.time_s}
        return {"params": self.params(i), "time_s": t,
                "bound_s": float(self.bound_s[i]), "speedup": sp,
                "useful_fraction": int(self.useful[i]) / int(self.flops[i]) if self.flops[i] else None,
                "tiles": {"full": int(self.full[i]), "partial": int(self.partial[i]), "empty": int(self.empty[i])},
                "tiles_iterated": int(self.iterated[i]), "fully_block_sparse": int(self.partial[i]) == 0,
                "reach": {"keys_per_query": float(self.keys_per_query[i]), "fraction": float(self.fraction[i])},
                "kernel": self.kernel}


def _try_fast(spec: Spec, names, values, hw):
    """`_fast_gna`'s rows when it applies (its first candidate resolves and predicts as the general path would),
    else None."""
    from .masks import DenseMask
    from .model import predict as model_predict
    from .problem import predict_problem, resolve
    if spec.variant not in ("gna", "na") or not set(names) <= {"stride", "q_tile", "kv_tile"}:
        return None
    first = {**spec.fixed, **{n: v[0] for n, v in zip(names, values)}}
    try:
        prob = resolve(spec.variant, first, kernel=spec.kernel, hw=hw, **spec.workload)
        pred = predict_problem(prob, hw, compare=False, calibration=spec.calibration)
    except AttnsimError:
        return None
    if not _fast_applies(spec, names, prob, pred):
        return None
    w = pred.workload
    dense = model_predict(w.with_(causal=False), hw, pred.family.name, DenseMask(), spec.variant, compare=False,
                          calibration=spec.calibration)
    return _fast_gna(spec, names, values, prob, pred, hw, dense)
