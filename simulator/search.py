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

    def to_json(self) -> dict:
        return {"evaluated": self.evaluated, "illegal": self.illegal, "constrained_out": self.constrained_out,
                "candidates": self.candidates, "pareto": self.pareto,
                "fully_block_sparse_min_stride": self.fully_block_sparse_min_stride,
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
def combinations(spec: Spec, tiles=()) -> tuple:
    """(names, [tuple of values]) of the varied parameters: their product."""
    names = list(spec.vary)
    own = SEARCHABLE.get(spec.variant)
    if own is None:
        raise AttnsimError(f"attnsim search has no parameters to vary for variant {spec.variant!r}; searchable: "
                           + ", ".join(f"{v} ({', '.join(p)})" for v, p in SEARCHABLE.items()))
    for n in names:
        if n not in own:
            raise AttnsimError(f"--vary {n}: variant {spec.variant} searches {', '.join(own)}")
        if n in spec.fixed:
            raise AttnsimError(f"-p {n} is varied: give its candidates as alternatives joined by ';' "
                               f"(e.g. -p {n}=A;B) with --vary {n}, or drop it from --vary")
    if not names:
        raise AttnsimError("--vary names no parameter; e.g. --vary stride,q_tile,kv_tile")
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


def run(spec: Spec, force: bool = False, progress=None) -> Result:
    """Price every combination of the varied parameters (see the module docstring)."""
    from .hardware import load_hardware
    from .masks import DenseMask, mask_sums
    from .model import predict as model_predict, speedup_over_dense
    from .problem import predict_problem, resolve

    if spec.objective not in OBJECTIVES:
        raise AttnsimError(f"--objective {spec.objective!r}; allowed: {', '.join(OBJECTIVES)}")
    reach_limit = None if spec.min_reach is None else _reach_limit(spec.min_reach)
    hw = load_hardware(spec.hardware)
    q_tiles, kv_tiles = family_tiles(spec) if spec.variant in ("gna", "na") else ((), ())
    names, values = combinations(spec, tiles=q_tiles)
    if "kv_tile" in names and spec.vary["kv_tile"] is None:  # kv boxes hold the family's kv tile sides
        values[names.index("kv_tile")] = space(spec.variant, "kv_tile", spec.fixed, _shape(spec), None, kv_tiles)
    total = math.prod(len(v) for v in values)
    if total > MAX_CANDIDATES and not force:
        raise AttnsimError(f"the search has {total:,} combinations, more than {MAX_CANDIDATES:,}: fix or narrow a "
                           f"parameter (-p NAME=A;B), or pass --force")
    illegal, rows, dense = {}, [], {}
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
    evaluated = len(rows)
    legal = rows
    if reach_limit is not None:
        kind, v = reach_limit
        legal = [r for r in legal if r["reach"][kind] >= v * (1 - 1e-12)]
    if spec.max_time is not None:
        legal = [r for r in legal if r["time_s"] <= spec.max_time]
    key = (lambda r: (r["time_s"], -r["reach"]["fraction"])) if spec.objective == "time" else (
        lambda r: (-r["speedup"]["time"], -r["reach"]["fraction"]))
    ranked = sorted(legal, key=key)
    # the Pareto front: faster (higher time speedup) against further reach; no candidate both at least as fast
    # and reaching at least as far, one of them strictly
    front, best_reach = [], -1.0
    for r in sorted(legal, key=lambda r: (-r["speedup"]["time"], -r["reach"]["fraction"])):
        if r["reach"]["fraction"] > best_reach:
            front.append(r)
            best_reach = r["reach"]["fraction"]
    min_stride = None
    if "stride" in names:
        sparse = [r for r in rows if r["fully_block_sparse"]]
        if sparse:
            min_stride = min(sparse, key=lambda r: (math.prod(_dims(r["params"]["stride"], 1 if "x" not in
                                                                     r["params"]["stride"] else
                                                                     r["params"]["stride"].count("x") + 1, "stride")),
                                                    r["params"]["stride"]))["params"]["stride"]
    reason = ""
    if not ranked:
        reason = ("no legal combination" if not rows else
                  f"no candidate meets the constraints (--min-reach {spec.min_reach}, --max-time {spec.max_time})"
                  if (spec.min_reach or spec.max_time is not None) else "")
    return Result(evaluated=evaluated, illegal=illegal, candidates=ranked[:max(spec.top, 0)], pareto=front,
                  fully_block_sparse_min_stride=min_stride, constrained_out=len(rows) - len(legal), total=total,
                  reason=reason)
