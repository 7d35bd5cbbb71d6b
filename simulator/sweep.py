"""Sweeps: the cartesian product of lists and ranges, priced in vectorized calls (`predict_many`).

    values("seqlen", "1k..128k", tokens=True)   -> [1024, 2048, ..., 131072]   (doubling)
    values("batch", "1..16:4")                  -> [1, 5, 9, 13]              (a step)
    values("heads", "8,16,32")                  -> [8, 16, 32]
    alternatives("window_size=1024,0;4096,0")   -> ("window_size", ["1024,0", "4096,0"])
    run(spec) -> dict of columns (one row per configuration; `COLUMNS` then the -p names)

Grammar (`attnsim sweep --help`): a value list is items joined by commas; an item is a number or a range:
`a..b` doubles from a while at most b, `a..b:s` steps by s while at most b. Token counts (--seqlen,
--seqlen-kv) take the suffixes k (x 1024) and M (x 1048576). A -p value's alternatives are joined by `;`
(its own commas belong to the value: `window_size=1024,0;4096,0`). `--causal both` tries false and true.

Every row is what `attnsim predict` prints for that configuration: the rows of one (variant, hardware,
kernel, phase, dtype, -p alternative) come from one `predict_many` call over arrays of the numeric axes.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import AttnsimError

MAX_ROWS = 1 << 22  # 4,194,304: a larger product needs force=True (--force)
MAX_ITEMS = 1 << 16  # values one range may expand to
SUFFIX = {"k": 1024, "m": 1 << 20}
COLUMNS = ("variant", "hardware", "kernel", "phase", "dtype", "batch", "seqlen_q", "seqlen_kv", "heads_q", "heads_kv",
           "head_dim_qk", "head_dim_v", "causal")
RESULTS = ("time_s", "bound_s", "bound", "flops", "useful_flops", "hbm_bytes", "tiles_full", "tiles_partial", "tiles_empty",
           "ctas", "waves", "splits", "memory_bytes")  # predict_many's
RESULT_COLUMNS = RESULTS + ("kv_cache_bytes", "fits", "calibrated", "speedup_vs_dense")  # every output column
GRID_AXES = ("batch", "seqlen_q", "seqlen_kv", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v", "causal")


def _number(option: str, text: str, tokens: bool) -> int:
    t = text.strip()
    mult = 1
    if tokens and t[-1:].lower() in SUFFIX:
        mult, t = SUFFIX[t[-1:].lower()], t[:-1]
    if not re.fullmatch(r"[0-9]{1,12}", t):
        allowed = "a whole number" + (" (k = x1024, M = x1048576)" if tokens else "")
        raise AttnsimError(f"--{option}: {text.strip()!r} is not {allowed}; a list is items joined by commas, an item "
                           f"a number, a..b (doubling) or a..b:s (steps of s)")
    return int(t) * mult


def values(option: str, text, tokens: bool = False) -> list:
    """The integers a list-and-range text stands for, in order, duplicates dropped; AttnsimError (one line)
    for a malformed item, an empty or backwards range."""
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        return [int(text)]
    s = str(text).strip()
    if not s:
        raise AttnsimError(f"--{option} is empty; give numbers joined by commas or a range a..b")
    out = []
    for item in s.split(","):
        if ".." in item:
            lo_t, _, rest = item.partition("..")
            hi_t, _, step_t = rest.partition(":")
            lo, hi = _number(option, lo_t, tokens), _number(option, hi_t, tokens)
            if lo < 1 or hi < lo:
                raise AttnsimError(f"--{option}: the range {item.strip()!r} is empty (from {lo} to {hi}); write "
                                   f"a..b with 1 <= a <= b")
            if rest.count(":") > 1 or (":" in rest and not step_t):
                raise AttnsimError(f"--{option}: {item.strip()!r} has no step after ':'; write a..b:s with s >= 1, "
                                   f"or a..b for doubling")
            if step_t:
                step = _number(option, step_t, tokens)
                if step < 1:
                    raise AttnsimError(f"--{option}: the step of {item.strip()!r} must be at least 1")
                count = (hi - lo) // step + 1
                if count > MAX_ITEMS:
                    raise AttnsimError(f"--{option}: {item.strip()!r} expands to {count:,} values; at most "
                                       f"{MAX_ITEMS:,} per range")
                out += range(lo, hi + 1, step)
            else:
                v = lo
                while v <= hi:
                    out.append(v)
                    v *= 2
        else:
            out.append(_number(option, item, tokens))
    if any(v < 1 for v in out):
        raise AttnsimError(f"--{option}: values must be positive, got {min(out)}")
    return list(dict.fromkeys(out))


def alternatives(text: str) -> tuple:
    """'-p KEY=V1;V2' -> (KEY, [V1, V2])."""
    key, eq, rest = str(text).partition("=")
    key = key.strip()
    if not eq or not key:
        raise AttnsimError(f"-p {text!r} is not KEY=VALUE; alternatives of a value are joined by ';' "
                           f"(e.g. -p window_size=1024,0;4096,0)")
    alts = [a.strip() for a in rest.split(";")]
    if not all(alts):
        raise AttnsimError(f"-p {text!r}: an empty alternative; join values with ';' (e.g. -p window_size=1024,0;4096,0)")
    return key, list(dict.fromkeys(alts))


def causal_values(text) -> list:
    t = str(text).strip().lower()
    table = {"both": [False, True], "true": [True], "false": [False], "yes": [True], "no": [False]}
    if t not in table:
        raise AttnsimError(f"--causal {text!r}; allowed: false, true, both")
    return table[t]


@dataclass
class Spec:
    """A sweep: lists for every axis (the CLI's options, parsed)."""
    variants: list
    hardware: list
    kernels: list = field(default_factory=lambda: [None])
    phases: list = field(default_factory=lambda: ["prefill"])
    dtypes: list = field(default_factory=lambda: ["bf16"])
    batch: list = field(default_factory=lambda: [1])
    seqlen_q: list = field(default_factory=lambda: [None])
    seqlen_kv: list = field(default_factory=lambda: [None])
    heads_q: list = field(default_factory=lambda: [32])
    heads_kv: list = field(default_factory=lambda: [None])
    head_dim_qk: list = field(default_factory=lambda: [128])
    head_dim_v: list = field(default_factory=lambda: [None])
    causal: list = field(default_factory=lambda: [False])
    params: dict = field(default_factory=dict)  # -p name -> list of alternatives (strings)
    calibration: object = "default"
    skip_unsupported: bool = False  # a group predict refuses (a kernel on a GPU without it, fp8 on an A100):
    # left out and reported in `skipped`, instead of ending the sweep
    skipped: list = field(default_factory=list)  # (the group, why) of the groups left out by the last run

    def groups(self) -> list:
        """The (variant, hardware, kernel, phase, dtype, -p alternative) combinations, one predict_many each:
        a variant takes the -p names it has (the others' columns stay empty for its rows); a -p name no
        variant has is an error."""
        from .variants import get_variant
        own = {v: [n for n in self.params if n in {p.name for p in get_variant(v).params}] for v in self.variants}
        unused = [n for n in self.params if not any(n in names for names in own.values())]
        if unused:
            raise AttnsimError(f"-p {unused[0]}: none of the variants {', '.join(self.variants)} has it "
                               f"('attnsim variants' lists each variant's parameters)")
        return [(v, h, k, ph, dt, dict(zip(own[v], alt)))
                for v, h, k, ph, dt in itertools.product(self.variants, self.hardware, self.kernels, self.phases,
                                                         self.dtypes)
                for alt in itertools.product(*(self.params[n] for n in own[v]))]

    def axis_sizes(self) -> int:
        n = 1
        for a in GRID_AXES:
            n *= len(getattr(self, a))
        return n

    @property
    def rows(self) -> int:
        return len(self.groups()) * self.axis_sizes()


def check_size(spec: Spec, force: bool = False):
    n = spec.rows
    if n == 0:
        raise AttnsimError("the sweep's product is empty: every list needs at least one value")
    if n > MAX_ROWS and not force:
        raise AttnsimError(f"the sweep has {n:,} configurations, more than {MAX_ROWS:,}: narrow a list or pass --force")
    return n


def _grid(spec: Spec):
    """The numeric axes as flat arrays of every combination (an axis left at its default stays None:
    predict_many's default), their count, and each row's index into each axis's list."""
    lists = [getattr(spec, name) for name in GRID_AXES]
    idx = np.indices([len(v) for v in lists]).reshape(len(lists), -1)
    out = {}
    for name, vals, ix in zip(GRID_AXES, lists, idx):
        if vals == [None]:
            out[name] = None
        elif name == "causal":
            out[name] = np.asarray(vals, dtype=bool)[ix]
        else:
            if None in vals:
                raise AttnsimError(f"{name}: a list cannot mix a default with numbers")
            out[name] = np.asarray(vals, dtype=np.int64)[ix]
    return out, idx.shape[1], dict(zip(GRID_AXES, idx))


def run(spec: Spec, progress=None, origin: bool = False) -> dict:
    """Columns of the sweep (COLUMNS, the -p names, RESULTS, calibrated, speedup_vs_dense): numpy arrays,
    one entry per configuration. `progress(done, total)` after each group. The input columns hold the
    workload as `predict` resolves it (defaults filled in: kv heads, head dims, decode's step and context).
    `origin`: also "_group" and "_index", each row's index into `spec.groups()` and into the grid of the
    numeric axes (what `formula_rows` prices again)."""
    from .hardware import load_hardware
    from .vectorized import predict_many

    grid, per, gidx = _grid(spec)
    spec.skipped = []
    groups = spec.groups()
    total = len(groups) * per
    pnames = list(spec.params)
    parts = []
    done = 0
    for variant, hw_name, kernel, phase, dtype, alt in groups:
        hw = load_hardware(hw_name)
        decode = phase == "decode"
        # decode: --seqlen is the context when --seqlen-kv is not given (as in predict); the step's queries
        # are -p q_per_step (default 1)
        lq_in = None if decode else grid["seqlen_q"]
        lk_in = (grid["seqlen_kv"] if grid["seqlen_kv"] is not None else grid["seqlen_q"]) if decode \
            else grid["seqlen_kv"]
        kw = dict(batch=grid["batch"], seqlen_q=lq_in, seqlen_kv=lk_in, heads_q=grid["heads_q"],
                  heads_kv=grid["heads_kv"], head_dim_qk=grid["head_dim_qk"], head_dim_v=grid["head_dim_v"],
                  causal=grid["causal"], dtype=dtype, phase=phase, calibration=spec.calibration)
        try:
            r = predict_many(hw, kernel, variant=variant, params=alt or None, **kw)
            cols = _resolved_columns(variant, alt, phase, dtype, kernel, hw, spec, grid, gidx, lq_in, lk_in)
        except AttnsimError as e:  # say which part of the sweep, in the CLI's words (not predict_many's)
            msg = str(e)
            if msg.startswith("predict_many: configuration") and "): " in msg:
                msg = msg.split("): ", 1)[1]
            elif msg.startswith("predict_many: "):
                msg = msg[len("predict_many: "):]
            where = ", ".join([variant, hw.key, kernel or "default kernel", phase, dtype]
                              + [f"{k}={v}" for k, v in alt.items()])
            if spec.skip_unsupported:
                spec.skipped.append((where, msg))
                done += per
                continue
            raise AttnsimError(f"sweep ({where}): {msg}") from None
        kernel_col, calibrated = cols.pop("kernel"), cols.pop("calibrated")
        part = {"variant": np.full(per, variant), "hardware": np.full(per, hw.key), "kernel": kernel_col,
                "phase": np.full(per, phase), "dtype": np.full(per, dtype), **cols, "causal": np.asarray(grid["causal"])}
        for n in pnames:
            part[n] = np.full(per, alt.get(n), dtype=object)
        for k in RESULTS:
            part[k] = np.asarray(r[k]).ravel()
        part["kv_cache_bytes"] = part.pop("kv_cache_bytes")  # after the results, as the docs list them
        part["fits"] = part["memory_bytes"] <= hw.hbm_capacity_bytes
        part["calibrated"] = calibrated
        part["speedup_vs_dense"] = _speedup(hw, kernel, variant, alt, phase, dtype, grid, kw, cols, part["time_s"],
                                            kernel_col)
        if origin:
            part["_group"] = np.full(per, groups.index((variant, hw_name, kernel, phase, dtype, alt)))
            part["_index"] = np.arange(per)
        parts.append(part)
        done += per
        if progress:
            progress(done, total)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


def _resolved_columns(variant, alt, phase, dtype, kernel, hw, spec, grid, gidx, lq_in, lk_in) -> dict:
    """The workload columns as predict reports them (the attention core's: MLA prefill's 192/128 dims),
    and the KV cache: resolve() once per combination of the heads, kv heads and head dims lists (at one
    batch and the first sequence length given); the cache scales with batch x context (bytes per token
    from that probe)."""
    from .problem import predict_problem, resolve
    keys = ("heads_q", "heads_kv", "head_dim_qk", "head_dim_v")
    lists = [getattr(spec, k) for k in keys]
    lq0 = None if lq_in is None else int(lq_in[0])
    lk0 = None if lk_in is None else int(lk_in[0])
    combos = list(itertools.product(*lists))
    res = np.empty((7, len(combos)), dtype=np.float64)
    fams, cals = [], []
    for j, (hq, hkv, d, dv) in enumerate(combos):
        p = resolve(variant, alt or None, kernel=kernel, hw=hw, phase=phase, dtype=dtype, batch=1, heads=hq,
                    kv_heads=hkv, head_dim=d, head_dim_v=dv, seqlen=lq0, seqlen_kv=lk0)
        w = p.layout.core if p.layout is not None else p.workload  # what predict's JSON "workload" shows
        cache = p.layout.kv_cache_bytes if p.layout is not None else w.kv_cache_bytes()
        res[:, j] = (w.seqlen_q, w.seqlen_kv, w.heads_q, w.heads_kv, w.head_dim_qk, w.head_dim_v,
                     cache / w.seqlen_kv)
        pred = predict_problem(p, compare=False, calibration=spec.calibration)  # the family predict settles on
        fams.append(pred.family.name)
        cals.append(pred.calibrated)
    inv = np.zeros_like(gidx["heads_q"])
    for k, vals in zip(keys, lists):  # the row's combination, in itertools.product's order
        inv = inv * len(vals) + gidx[k]
    col = {k: res[i][inv] for i, k in enumerate(("seqlen_q", "seqlen_kv", "heads_q", "heads_kv", "head_dim_qk",
                                                  "head_dim_v", "cache_per_token"))}
    lq = col["seqlen_q"].astype(np.int64) if lq_in is None else np.asarray(lq_in)
    if lk_in is not None:
        lk = np.asarray(lk_in)
    else:
        lk = lq if phase != "decode" else col["seqlen_kv"].astype(np.int64)
    b = np.asarray(grid["batch"])
    return {"batch": b, "seqlen_q": lq, "seqlen_kv": lk,
            **{k: col[k].astype(np.int64) for k in ("heads_q", "heads_kv", "head_dim_qk", "head_dim_v")},
            "kv_cache_bytes": np.rint(b * lk * col["cache_per_token"]).astype(np.int64),
            "kernel": np.asarray(fams)[inv], "calibrated": np.asarray(cals, dtype=bool)[inv]}


def _speedup(hw, kernel, variant, alt, phase, dtype, grid, kw, cols, time_s, kernels):
    """Dense attention's time over each row's, where predict prints a speedup (a mask that is not dense:
    causal, windows, blocks...; not a layout variant's own mask): the same workload without its mask, on
    the standard layout (a layout variant: its own layout, not causal). NaN elsewhere."""
    from .masks import DenseMask
    from .problem import resolve
    from .vectorized import predict_many

    causal = np.asarray(grid["causal"])
    out = np.full(causal.shape, np.nan)
    for c in np.unique(causal).tolist():
        heads = ({"heads": int(cols["heads_q"][0]), "kv_heads": int(cols["heads_kv"][0])}
                 if variant in ("mha", "gqa", "mqa") else {"heads": int(grid["heads_q"][0])})
        p = resolve(variant, alt or None, kernel=kernel, hw=hw, phase=phase, dtype=dtype, causal=c, **heads,
                    **({"seqlen": int(kw["seqlen_q"][0])} if kw["seqlen_q"] is not None else {}),
                    **({"seqlen_kv": int(kw["seqlen_kv"][0])} if kw["seqlen_kv"] is not None else {}))
        layout_mask = p.layout is not None and getattr(p.layout, "mask", None) is not None
        if isinstance(p.mask, DenseMask) or layout_mask or p.workload.seqlens is not None:
            continue
        sel = causal == c
        # a mask that covers the whole sequence is dense attention at these lengths (Mask.for_lengths), where
        # predict prints no speedup
        lq, lk = cols["seqlen_q"], cols["seqlen_kv"]
        key = lq.astype(np.int64) * (1 << 32) + lk
        uk, inv = np.unique(key[sel], return_inverse=True)
        masked = np.array([not isinstance(p.mask.for_lengths(int(k >> 32), int(k & 0xFFFFFFFF)), DenseMask)
                           for k in uk.tolist()], dtype=bool)[np.asarray(inv).ravel()]
        sel = np.flatnonzero(sel)[masked]
        if not sel.size:
            continue
        # dense attention on the family the row's prediction settled on (eager: eager; a fallback: the fallback)
        for fam in np.unique(kernels[sel]).tolist():
            at = sel[kernels[sel] == fam]
            dense_kw = {k: (v[at] if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
            dense_kw["causal"] = False
            dense_kw["seqlen_q"], dense_kw["seqlen_kv"] = lq[at], lk[at]  # as resolved (a token grid sets them)
            if p.layout is None:  # the standard layout: dense attention on the core's heads and dims
                for k in ("heads_kv", "head_dim_qk", "head_dim_v"):
                    dense_kw[k] = cols[k][at]
                dense = predict_many(hw, fam, variant=None, **dense_kw)
            else:
                dense = predict_many(hw, fam, variant=variant, params=alt or None, **dense_kw)
            out[at] = np.asarray(dense["time_s"]).ravel() / time_s[at]
    return out


# -- formulas --------------------------------------------------------------------------------------------
@dataclass
class RowFormulas:
    """One sweep row priced on symbolic inputs (`formulas`): its kernels' times, the bound, dense attention's
    time where the row has a speedup (else None), each an `Expr` whose value is the row's number."""
    kernels: list  # [(kernel name, Expr)] in launch order; the row's time is their sum
    bound: object
    dense: object = None


def symbolic_inputs(spec: Spec, table: dict):
    """{hardware key: symbolic Hardware} and {(hardware key, kernel, dtype, phase): (Calibration or None,
    symbolic Calibration, calibrations.choose's info or None)} of every row of `table` (`run(spec,
    origin=True)`): the named inputs a workbook lists. A row without a calibration edits the identity's
    factors."""
    from .calibrations import choose
    from .families import get_family
    from .formulas import symbolic_calibration, symbolic_hardware
    from .hardware import load_hardware
    from .rates import Calibration
    groups = spec.groups()
    hws, cals, by_value = {}, {}, {}
    keys = sorted({(int(g), str(k)) for g, k in zip(table["_group"].tolist(), table["kernel"].tolist())})
    for g, fam_name in keys:
        _variant, hw_name, _kernel, phase, dtype, _alt = groups[g]
        hw = load_hardware(hw_name)
        hws.setdefault(hw.key, (hw, symbolic_hardware(hw)))
        ck = (hw.key, fam_name, dtype, phase)
        if ck in cals:
            continue
        cal, info = choose(spec.calibration, hw, get_family(fam_name), dtype, phase)
        same = (hw.key, fam_name, cal)  # one set of inputs per distinct calibration of a (GPU, family)
        if same not in by_value:
            label = f"{hw.key}.{fam_name}" + (f".{cal.source}" if cal is not None and cal.source else "")
            by_value[same] = (cal, symbolic_calibration(cal or Calibration(), "calibration." + label), info)
        cals[ck] = by_value[same]
    return {k: v[1] for k, v in hws.items()}, cals


def formula_rows(spec: Spec, table: dict, sym_hw: dict, sym_cal: dict, rows=None, no_dense=frozenset()):
    """Each row of `table` (`run(spec, origin=True)`; `rows`: the indices to do, default all) priced again on
    the symbolic inputs of `symbolic_inputs`: a `RowFormulas` whose values equal the row's numbers (checked:
    a RuntimeError names the row otherwise). Rows in `no_dense` leave their dense baseline out (None)."""
    from .formulas import clear_interned
    from .problem import predict_problem

    grid, _, _ = _grid(spec)
    groups = spec.groups()
    out = []
    for row in (range(len(table["time_s"])) if rows is None else rows):
        clear_interned()  # a row's formulas share nodes with each other, not with other rows'
        hw, prob, dense_prob = row_problems(spec, table, row, grid, groups)
        shw = sym_hw[hw.key]
        scal = sym_cal[(hw.key, str(table["kernel"][row]), prob.workload.dtype, prob.workload.phase)][1]
        pred = predict_problem(prob, shw, compare=False, calibration=scal)
        kernels = [(k.name, k.time_s) for k in pred.kernels]
        _check(row, "time_s", sum(float(t) for _, t in kernels), table["time_s"][row])
        _check(row, "bound_s", float(pred.bound.time_s), table["bound_s"][row])
        dense = None
        if dense_prob is not None and row not in no_dense:
            dense = predict_problem(dense_prob, shw, compare=False, calibration=scal).time_s
            _check(row, "speedup_vs_dense", float(dense) / float(table["time_s"][row]), table["speedup_vs_dense"][row])
        out.append(RowFormulas(kernels, pred.bound.time_s, dense))
    return out


def formula_templates(spec: Spec, table: dict, sym_hw: dict, sym_cal: dict, rows, no_dense=frozenset()):
    """(templates, rest): the rows of `table` (`run(spec, origin=True)`) among `rows` that the closed forms
    price (mha/gqa/mqa without -p values on a fused family), as `templates.Template`s whose `rows` index
    `table` and whose values equal the rows' numbers (checked: a RuntimeError names the row otherwise), and
    the other rows, for `formula_rows`. Rows in `no_dense` leave their dense baseline out (None)."""
    from .formulas import values_on
    from .hardware import load_hardware
    from .model import resolve_family
    from .templates import closed_form_templates
    from .vectorized import FAST_VARIANTS, closed_form_family

    groups = spec.groups()
    rows = np.asarray(rows, dtype=np.int64)
    out, rest = [], []
    g_of = table["_group"][rows]
    skip = np.fromiter(no_dense, dtype=np.int64, count=len(no_dense))
    for g in dict.fromkeys(g_of.tolist()):
        sel = rows[g_of == g]
        variant, hw_name, kernel, phase, dtype, alt = groups[g]
        hw = load_hardware(hw_name)
        fam = resolve_family(hw, kernel)
        if (alt or variant not in FAST_VARIANTS or not closed_form_family(fam, phase)
                or (table["kernel"][sel] != fam.name).any()):
            rest.append(sel)
            continue
        shw = sym_hw[hw.key]
        scal = sym_cal[(hw.key, fam.name, dtype, phase)][1]
        dense = np.isfinite(table["speedup_vs_dense"][sel]) & ~np.isin(sel, skip)
        templates, left = closed_form_templates(
            hw, shw, kernel, scal, spec.calibration, **{k: table[k][sel] for k in (
                "batch", "seqlen_q", "seqlen_kv", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v", "causal")},
            dtype=dtype, phase=phase, dense=dense)
        for t in templates:
            t.rows = sel[t.rows]
            n = len(t.rows)
            time_s = sum(values_on(e, n) for _, e in t.kernels)
            _check_many(t.rows, "time_s", time_s, table["time_s"][t.rows])
            _check_many(t.rows, "bound_s", values_on(t.bound, n), table["bound_s"][t.rows])
            if t.dense is not None:
                _check_many(t.rows, "speedup_vs_dense", values_on(t.dense, n) / time_s,
                            table["speedup_vs_dense"][t.rows])
            out.append(t)
        rest.append(sel[left])
    return out, (np.concatenate(rest) if rest else rows[:0])


def _check_many(rows, name, got, want):
    bad = ~(np.abs(got - want) <= 1e-9 * np.abs(want))
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        _check(int(rows[j]), name, float(got[j]), float(want[j]))


def dense_partners(spec: Spec, table: dict) -> dict:
    """{row: the row that is its dense baseline}: a causal row of mha/gqa/mqa without -p values whose
    non-causal twin (same group, every other axis the same) is in the table with the time predict gives
    the baseline (`speedup_vs_dense` x time_s, to 1e-12)."""
    if False not in spec.causal:
        return {}
    c_false = spec.causal.index(False)
    sizes = [len(getattr(spec, a)) for a in GRID_AXES]
    ci = GRID_AXES.index("causal")
    where = {(int(g), int(i)): r for r, (g, i) in enumerate(zip(table["_group"].tolist(), table["_index"].tolist()))}
    groups = spec.groups()
    out = {}
    for r in np.flatnonzero(np.isfinite(table["speedup_vs_dense"]) & table["causal"]).tolist():
        g, i = int(table["_group"][r]), int(table["_index"][r])
        variant, _, _, _, _, alt = groups[g]
        if variant not in ("mha", "gqa", "mqa") or alt:
            continue
        idx = list(np.unravel_index(i, sizes))
        idx[ci] = c_false
        twin = where.get((g, int(np.ravel_multi_index(idx, sizes))))
        if twin is None or table["kernel"][twin] != table["kernel"][r]:
            continue
        dense_t = float(table["speedup_vs_dense"][r]) * float(table["time_s"][r])
        if abs(float(table["time_s"][twin]) - dense_t) <= 1e-12 * dense_t:
            out[r] = twin
    return out


def row_problems(spec: Spec, table: dict, row: int, grid=None, groups=None):
    """(Hardware, the resolved Problem, the Problem of its dense baseline or None) of one row of `table`
    (`run(spec, origin=True)`): what `predict` prices for it (the baseline: where the row has a speedup)."""
    from .hardware import load_hardware
    from .vectorized import configuration_problem, default_lengths
    grid = _grid(spec)[0] if grid is None else grid
    groups = spec.groups() if groups is None else groups
    g, i = int(table["_group"][row]), int(table["_index"][row])
    variant, hw_name, kernel, phase, dtype, alt = groups[g]
    hw = load_hardware(hw_name)
    decode = phase == "decode"
    given = {k: (None if grid[k] is None else grid[k][i].item()) for k in GRID_AXES}
    lq = None if decode else given["seqlen_q"]
    lk = (given["seqlen_kv"] if given["seqlen_kv"] is not None else given["seqlen_q"]) if decode else given["seqlen_kv"]
    lq, lk = default_lengths(phase, alt, lq, lk)
    c = {k: v for k, v in dict(given, seqlen_q=lq, seqlen_kv=lk).items() if v is not None}
    c["causal"] = bool(c.get("causal", False))
    scalars = dict(dtype=dtype, kv_dtype=None, phase=phase, qk_accum="fp32", pv_accum="fp32")
    prob = configuration_problem(variant, alt, c, scalars, kernel)
    dense = None
    if np.isfinite(table["speedup_vs_dense"][row]):  # as _speedup prices it: on the family the row settled on
        fam = str(table["kernel"][row])
        dc = dict(c, causal=False, seqlen_q=int(table["seqlen_q"][row]), seqlen_kv=int(table["seqlen_kv"][row]))
        if prob.layout is None:  # the standard layout: dense attention on the core's heads and dims
            dc.update({k: int(table[k][row]) for k in ("heads_kv", "head_dim_qk", "head_dim_v")})
            dense = configuration_problem("gqa", {}, dc, scalars, fam)
        else:
            dense = configuration_problem(variant, alt, dc, scalars, fam)
    return hw, prob, dense


def _check(row, name, got, want):
    if not abs(got - want) <= 1e-9 * abs(want):
        raise RuntimeError(f"sweep row {row}: the formulas give {name} = {got!r}, the sweep {want!r}")
