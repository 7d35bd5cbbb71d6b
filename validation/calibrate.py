"""Calibration: fit a few physically meaningful parameters per (GPU, kernel family) to measured kernel
times, and say how well the fit predicts rows it has not seen.

The parameters (each a field of `simulator.rates.Calibration`, entering the model through `rates`):
  tensor        η: the fraction of the family's tensor rate its MMAs reach (x the family's own figure)
  overlap       1 - ω: the fraction of min(tensor, softmax) time hidden behind the other
  cta_io        the fraction of a CTA's own I/O (Q in, O out) it does not hide, at its SM's HBM share
  partial_tile  a masked (partial) tile's extra time, as a fraction of a full tile
  causal        every tile's extra time in a causal kernel, as a fraction
  backward      a multiplier of the backward kernel's tile time
  smem_exposed  the fraction of a tile's shared-memory operand time not hidden behind its MMAs and softmax
  hbm           the achievable fraction of the HBM bandwidth (decode, eager's memory-bound kernels)

A group is one (GPU profile, family) with its 16-bit rows; fp8 rows and decode rows form groups of
their own (`group_key`). The fit is `scipy.optimize.least_squares` on log(predicted / measured) with
bounds and a soft-L1 loss, from a few starts. A parameter the rows cannot pin down (its column of the
Jacobian is zero or a combination of the others': compute-bound rows of one head dim cannot separate
η from ω) is fixed at its uncalibrated value and named. Rows measured at a stated clock (a locked
clock, or a burst) are priced at that clock: the clock is data, not a fitted parameter.

Held-out error four ways (`heldout`): random k-fold, leave one sequence length out, leave one head
dim out, leave causal out (fit on causal rows, predict the rest, and the reverse): each held-out row
is predicted by a fit that did not see it; the mean absolute percentage error over them is reported.
"""
from __future__ import annotations

import math
import re
import warnings as _warnings
from dataclasses import dataclass, field, replace

import numpy as np

from attnsim.simulator.calibrations import _kfold
from attnsim.simulator.errors import AttnsimError
from attnsim.simulator.families import get_family
from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.rates import Calibration
from attnsim.simulator.vectorized import predict_many
from attnsim.validation.published import Measurement


@dataclass(frozen=True)
class Param:
    name: str
    lo: float
    hi: float
    meaning: str


PARAMS = {p.name: p for p in (
    Param("tensor", 0.2, 1.0, "η: fraction of the family's tensor rate reached (x the family's own efficiency)"),
    Param("overlap", 0.0, 1.0, "1 - ω: fraction of min(tensor, softmax) time hidden behind the other"),
    Param("cta_io", 0.0, 4.0, "unhidden fraction of a CTA's own I/O at its SM's share of HBM bandwidth"),
    Param("partial_tile", 0.0, 2.0, "extra time of a masked tile, as a fraction of a full tile"),
    Param("causal", 0.0, 1.0, "extra time of every tile of a causal kernel, as a fraction"),
    Param("backward", 0.5, 4.0, "multiplier of the backward kernel's tile time"),
    Param("hbm", 0.2, 1.0, "achievable fraction of the HBM bandwidth"),
    Param("smem_exposed", 0.0, 1.0, "fraction of a tile's shared-memory time not hidden behind its MMAs and softmax"),
)}
# Parameters that price one phase or one mask only (the backward kernel, a causal kernel), narrowest first. When
# the rows cannot tell one of them from a parameter of every tile (train rows alone: η and the backward factor
# both scale the backward) and fixing it fits as well as the best choice (within EQUAL_FIT_PP percentage points
# or EQUAL_FIT_REL of the best in-sample MAPE), the narrow one is fixed at its uncalibrated value and the broad
# one fitted: the rows' choice between equal fits is noise, and only the broad one carries to the rows the fit
# has not seen (a forward-only prediction never uses the backward factor).
PHASE_PARAMS = ("backward", "causal")
EQUAL_FIT_PP, EQUAL_FIT_REL = 0.25, 0.10
MIN_ROWS = 4  # a group with fewer rows than this (or than parameters + 1) is not fitted
RANK_TOL = 1e-3  # smallest / largest singular value of the scaled Jacobian below this: rank-deficient


@dataclass(frozen=True)
class Row(Measurement):
    """One measurement to fit: a workload, the family and GPU that ran it, the measured time."""
    hw: str = ""
    family: str = ""
    source: str = ""  # "published: FA3-FP16", or "measured: <file>"
    where: str = ""  # file:line
    clock_hz: float | None = None  # a clock the source states it ran at (locked, or a burst)
    label: str = ""
    quality: str = "measured"  # a published row's value_quality, or "measured" (our records)


def _regime_clock(regime: str, hw) -> float | None:
    """The clock a published regime states: "locked 1965 MHz" -> 1.965 GHz; "burst" -> the card's
    maximum clock; anything else (sustained, unstated) -> None (the profile's sustained clock)."""
    m = re.search(r"locked (\d+(?:\.\d+)?) MHz", regime or "")
    if m:
        return min(float(m.group(1)) * 1e6, hw.clock_max_hz)
    if regime == "burst":
        return hw.clock_max_hz
    return None


def rows_from_reference(ref_rows, exact_only: bool = True, approx_decode: bool = True) -> list:
    """Fit rows from published ReferenceRows (validation.published.load_reference): those whose card
    has a profile and whose kernel a family models; approximate chart readings only when asked, or
    (`approx_decode`) for decode, where the published set has no printed number at all (FlashInfer's
    blog: bandwidth utilisation read off a chart, +/- 3 points) — their groups say so (`quality`)."""
    out = []
    for r in ref_rows:
        if r.hw is None or r.family is None:
            continue
        if exact_only and not r.exact and not (approx_decode and r.phase == "decode"):
            continue
        hw = load_hardware(r.hw)
        out.append(Row(hw=r.hw, family=r.family, phase=r.phase, causal=r.causal, dtype=r.dtype, batch=r.batch,
                       heads_q=r.heads_q, heads_kv=r.heads_kv, head_dim=r.head_dim, seqlen_q=r.seqlen_q,
                       seqlen_kv=r.seqlen_kv, time_s=r.time_s, source=f"published: {r.source}", where=r.where,
                       clock_hz=_regime_clock(r.regime, hw), quality=r.quality,
                       label=f"{r.kernel}, {r.phase}{' causal' if r.causal else ''}, b={r.batch} h={r.heads_q} "
                             f"s={r.seqlen_q} d={r.head_dim}"))
    return out


def rows_from_records(records, path: str = "") -> list:
    """Fit rows from our own measurement records (validation.records, kind "kernel"): the device's
    profile key, the family, the shape and the median time."""
    out = []
    for i, rec in enumerate(records):
        if rec.get("kind") != "kernel" or not rec.get("family") or not rec.get("device", {}).get("hw_key"):
            continue
        if rec.get("error", {}).get("ok") is False:
            continue  # a kernel whose output was wrong measures nothing
        s = rec["shape"]
        out.append(Row(hw=rec["device"]["hw_key"], family=rec["family"], phase=rec["phase"], causal=bool(s["causal"]),
                       dtype=s["dtype"], batch=int(s["batch"]), heads_q=int(s["heads_q"]), heads_kv=int(s["heads_kv"]),
                       head_dim=int(s["head_dim"]), seqlen_q=int(s["seqlen_q"]), seqlen_kv=int(s["seqlen_kv"]),
                       time_s=float(rec["timing"]["median_s"]), source=f"measured: {rec['device'].get('name', '')}",
                       where=f"{path}:{i + 1}", label=f"{rec.get('kernel', '')} {rec['phase']}"))
    return out


def group_key(row: Row) -> str:
    """hw/family, plus /fp8 for 8-bit rows and /decode for decode rows (their own parameters)."""
    return row.hw + "/" + row.family + ("/fp8" if row.dtype == "fp8" else "") + ("/decode" if row.phase == "decode" else "")


def groups_of(rows) -> dict:
    out = {}
    for r in rows:
        out.setdefault(group_key(r), []).append(r)
    return out


def params_for(rows) -> list:
    """The parameters the rows can speak to: decode rows the HBM fraction; eager's kernels (GEMMs and
    a memory-bound softmax) the tensor and HBM fractions; fused kernels η, the overlap, the CTA's
    I/O and the exposed shared-memory time, plus the causal cost when some rows are causal and the
    backward factor when some rows run the backward and some do not run the forward with it (rows that all time
    forward + backward together scale it with η alike: it stays 1). (`partial_tile` stays a mechanism a
    calibration may set: on the published rows it is not identifiable beside `causal` — the diagonal's tiles are
    a few percent of a causal kernel's.)"""
    fam = get_family(rows[0].family)
    if all(r.phase == "decode" for r in rows):
        return ["hbm"]
    if not fam.fused:
        return ["tensor", "hbm"]
    names = ["tensor", "overlap", "cta_io", "smem_exposed"]
    if any(r.causal for r in rows):
        names.append("causal")
    if any(r.phase in ("train", "backward") for r in rows) and not all(r.phase == "train" for r in rows):
        names.append("backward")
    return names


def default_value(name: str, family) -> float:
    """The uncalibrated value of a parameter (the model without calibration)."""
    return {"tensor": 1.0, "overlap": family.overlap, "cta_io": 0.0, "partial_tile": 0.0, "causal": 0.0, "backward": 1.0,
            "hbm": 1.0, "smem_exposed": 0.0}[name]


def calibration_of(values: dict, source: str = "") -> Calibration:
    return Calibration(**{k: float(v) for k, v in values.items()}, source=source)


def model_times(rows, cal: Calibration | None) -> np.ndarray:
    """Predicted time of each row under `cal` (`model_results`)."""
    return model_results(rows, cal, ("time_s",))["time_s"]


def model_results(rows, cal: Calibration | None, keys=("time_s", "useful_flops", "hbm_bytes", "bound_s")) -> dict:
    """predict_many's `keys` for each row under `cal` (a row with a stated clock at that clock): rows of
    one (GPU, family, phase, dtype, clock) priced in one predict_many call; a backward row is train
    minus prefill (its bound_s too: the caller bounds a backward row on its own)."""
    out = {k: np.empty(len(rows)) for k in keys}
    batches = {}
    for i, r in enumerate(rows):
        batches.setdefault((r.hw, r.family, r.phase, r.dtype, r.clock_hz), []).append(i)
    for (hw, fam, phase, dtype, clock), idx in batches.items():
        c = cal if clock is None else replace(cal or Calibration(), clock_hz=clock)
        sub = [rows[i] for i in idx]
        args = dict(batch=[r.batch for r in sub], seqlen_q=[r.seqlen_q for r in sub],
                    seqlen_kv=[r.seqlen_kv for r in sub], heads_q=[r.heads_q for r in sub],
                    heads_kv=[r.heads_kv for r in sub], head_dim_qk=[r.head_dim for r in sub],
                    causal=[r.causal and phase != "decode" for r in sub], dtype=dtype, calibration=c)
        if phase == "backward":
            train, fwd = predict_many(hw, fam, phase="train", **args), predict_many(hw, fam, phase="prefill", **args)
            got = {k: train[k] - fwd[k] for k in keys}
        else:
            got = predict_many(hw, fam, phase=phase, **args)
        for k in keys:
            out[k][idx] = got[k]
    return out


def priceable(rows) -> tuple:
    """(rows the model prices, [(row, why)] it refuses: a head dim or dtype the family does not run)."""
    ok, bad = [], []
    try:
        model_times(rows, None)
        return list(rows), []
    except AttnsimError:
        pass
    for r in rows:
        try:
            model_times([r], None)
            ok.append(r)
        except AttnsimError as e:
            bad.append((r, str(e)))
    return ok, bad


def mape(pred, meas) -> float:
    pred, meas = np.asarray(pred, float), np.asarray(meas, float)
    return float(np.mean(np.abs(pred / meas - 1.0)) * 100.0)


@dataclass
class Fit:
    values: dict  # every fitted and fixed parameter's value
    stderr: dict  # fitted parameters: one standard error (from the Jacobian at the solution)
    fixed: dict  # parameter -> why it was fixed at its uncalibrated value
    in_sample_mape: float
    rows: int
    warnings: list = field(default_factory=list)

    def calibration(self, source: str = "") -> Calibration:
        return calibration_of(self.values, source)


def fit(rows, names=None, fixed=None, starts=(0.15, 0.5, 0.85), x0: dict | None = None) -> Fit:
    """Least squares on log(predicted / measured) over `rows` (one group) for the parameters `names`
    (default `params_for(rows)`), the others at their uncalibrated values (or `fixed`). Refuses a
    rank-deficient fit by fixing the parameter it cannot identify and fitting again; AttnsimError when
    too few rows remain. `x0`: one start at these values (a held-out fold starts from the full fit)."""
    from scipy.optimize import least_squares

    fam = get_family(rows[0].family)
    names = list(params_for(rows) if names is None else names)
    fixed_why = dict(fixed or {})
    for n in list(names):
        if n in fixed_why:
            names.remove(n)
    meas = np.array([r.time_s for r in rows])
    notes = []
    while True:
        if not names:
            values = {n: default_value(n, fam) for n in fixed_why}
            res = np.log(model_times(rows, calibration_of(values)) / meas)
            return Fit(values, {}, fixed_why, mape(np.exp(res) * meas, meas), len(rows), notes)
        if len(rows) < max(MIN_ROWS, len(names) + 1):
            raise AttnsimError(f"{len(rows)} rows cannot fit {len(names)} parameters ({', '.join(names)}); "
                               f"need at least {max(MIN_ROWS, len(names) + 1)}")
        base = {n: default_value(n, fam) for n in fixed_why}
        lo = np.array([PARAMS[n].lo for n in names])
        hi = np.array([PARAMS[n].hi for n in names])

        def residual(x):
            v = dict(base, **dict(zip(names, x)))
            return np.log(model_times(rows, calibration_of(v)) / meas)

        best = None
        if x0 is not None:
            first = [np.array([np.clip(x0.get(n, default_value(n, fam)), lo_, hi_) for n, lo_, hi_ in zip(names, lo, hi)])]
        else:  # a few starts: the model's max() kinks make the cost piecewise smooth
            first = [np.array([np.clip(default_value(n, fam) if n not in ("tensor", "overlap") else lo_ + s * (hi_ - lo_),
                                       lo_, hi_) for n, lo_, hi_ in zip(names, lo, hi)]) for s in starts]
        for start in first:
            r = least_squares(residual, start, bounds=(lo, hi), loss="soft_l1", f_scale=0.05, x_scale=hi - lo,
                              diff_step=1e-4, ftol=1e-6, xtol=1e-6, gtol=1e-6)  # 1e-6: the same fits, half the time
            if best is None or r.cost < best.cost:
                best = r
        bad = _unidentifiable(best.jac * (hi - lo), names)
        if not bad:
            break
        if len(bad) > 1:  # a direction the rows cannot see: fix whichever of its parameters fits best
            tries = []
            for n, why in bad:
                f = fit(rows, names=[m for m in names if m != n], fixed={**fixed_why, n: why}, starts=starts, x0=x0)
                f.warnings[:0] = notes + [f"{n} fixed at {default_value(n, fam):g}: {why}"]
                tries.append((n, f))
            best = min(f.in_sample_mape for _, f in tries)
            near = [(PHASE_PARAMS.index(n), f) for n, f in tries if n in PHASE_PARAMS
                    and f.in_sample_mape <= best + max(EQUAL_FIT_PP, EQUAL_FIT_REL * best)]
            if near:  # fitting as well with a phase's own factor fixed: fix the narrowest such
                return min(near, key=lambda p: p[0])[1]
            return min((f for _, f in tries), key=lambda f: f.in_sample_mape)
        n, why = bad[0]
        fixed_why[n] = why
        names.remove(n)
        notes.append(f"{n} fixed at {default_value(n, fam):g}: {why}")
    # ten significant digits: a fit knows its values to its standard errors (1e-3 or so), and a value the solver
    # leaves a rounding error inside a bound (0.9999999999999999) would make 1 - overlap a 1e-16 that a
    # spreadsheet, reading 15 digits, computes as 0 (and 1.7e-11 is a workbook input that means 0)
    # a value within 1e-9 of its range from a bound is the bound (the solver stops a rounding error inside it)
    snap = [p.lo if x - p.lo < 1e-9 * (p.hi - p.lo) else p.hi if p.hi - x < 1e-9 * (p.hi - p.lo) else x
            for p, x in zip((PARAMS[n] for n in names), best.x)]
    values = dict(base, **{n: float(f"{x:.10g}") for n, x in zip(names, snap)})
    res = np.log(model_times(rows, calibration_of(values)) / meas)  # the rows' residuals at the values written
    dof = max(len(rows) - len(names), 1)
    s2 = float(res @ res) / dof
    try:
        cov = np.linalg.inv(best.jac.T @ best.jac) * s2
        stderr = {n: float(math.sqrt(max(cov[i, i], 0.0))) for i, n in enumerate(names)}
    except np.linalg.LinAlgError:
        stderr = {n: float("nan") for n in names}
    for n in names:
        p, v = PARAMS[n], values[n]
        if min(v - p.lo, p.hi - v) < 1e-6 * (p.hi - p.lo):
            notes.append(f"{n} = {v:.4g} sits at its bound [{p.lo:g}, {p.hi:g}]")
    return Fit(values, stderr, fixed_why, mape(np.exp(res) * meas, meas), len(rows), notes)


def _unidentifiable(jac_scaled, names) -> list:
    """[(parameter, why)] the rows cannot pin down, empty when every parameter is identifiable: a
    parameter whose column is zero (it moves no row), else — when the smallest singular value is below
    RANK_TOL of the largest — the parameters that make up the weakest direction (any one of them fixed
    restores the rank; the caller keeps the choice that fits best)."""
    norms = np.linalg.norm(jac_scaled, axis=0)
    top = norms.max() if norms.size else 0.0
    for n, c in zip(names, norms):
        if top == 0 or c <= 1e-9 * top:
            return [(n, "no row depends on it (rank-deficient: its column of the Jacobian is zero)")]
    if len(names) < 2:
        return []
    _, sv, vt = np.linalg.svd(jac_scaled / norms, full_matrices=False)
    if sv[-1] >= RANK_TOL * sv[0]:
        return []
    v = np.abs(vt[-1])
    part = [i for i in np.argsort(-v) if v[i] >= 0.3 * v.max()]
    return [(names[i], f"rank-deficient: the rows cannot separate it from "
                       f"{', '.join(names[j] for j in part if j != i)} (singular values {sv[-1]:.2g} vs {sv[0]:.2g})")
            for i in part]


def _fold_error(rows, train_idx, test_idx, names, x0=None):
    """Predictions of the test rows from a fit on the train rows (None when the train rows cannot fit)."""
    train = [rows[i] for i in train_idx]
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            f = fit(train, names=[n for n in names if n in params_for(train)], x0=x0)
    except AttnsimError:
        return None
    return model_times([rows[i] for i in test_idx], f.calibration())


def heldout(rows, names=None, k: int = 5, seed: int = 0, x0: dict | None = None) -> dict:
    """Held-out MAPE four ways (None where the split is impossible: one distinct value, or a training
    side that cannot fit): random k-fold, leave one sequence length out, leave one head dim out,
    leave causal out. `x0`: where each fold's fit starts (default: the usual starts)."""
    names = params_for(rows) if names is None else names
    n = len(rows)
    meas = np.array([r.time_s for r in rows])
    out = {}

    def run(splits):
        pred = np.full(n, np.nan)
        for test in splits:
            test = np.asarray(sorted(test))
            train = np.setdiff1d(np.arange(n), test)
            if len(test) == 0 or len(train) == 0:
                continue
            p = _fold_error(rows, train, test, names, x0)
            if p is None:
                return None
            pred[test] = p
        ok = np.isfinite(pred)
        return mape(pred[ok], meas[ok]) if ok.any() else None

    perm = np.random.default_rng(seed).permutation(n)
    kk = min(k, n // 2)  # few rows: fewer folds of two rows or more
    out["kfold"] = run([perm[i::kk] for i in range(kk)]) if kk >= 2 else None
    for name, attr in (("seqlen", "seqlen_kv"), ("head_dim", "head_dim"), ("causal", "causal")):
        values = sorted({getattr(r, attr) for r in rows})
        out[name] = (run([[i for i, r in enumerate(rows) if getattr(r, attr) == v] for v in values])
                     if len(values) > 1 else None)
    return out


SCHEMA = "attnsim.calibration/1"


def calibrate_groups(rows, only=None, folds: int = 5, progress=None) -> tuple:
    """(groups, warnings): per group key, the fit and its held-out errors as a JSON-ready dict; a group
    that cannot be fitted is a warning, not an error. `only`: group keys to fit (default all).
    `progress(key)` is called before each group."""
    out, warns = {}, []
    for key, rs in sorted(groups_of(rows).items()):
        if only and key not in only:
            continue
        if progress:
            progress(key)
        rs, refused = priceable(rs)
        for r, why in refused:
            warns.append(f"{key}: {r.where} left out: {why}")
        if not rs:
            continue
        try:
            f = fit(rs)
        except AttnsimError as e:
            warns.append(f"{key}: not fitted: {e}")
            continue
        names = [n for n in params_for(rs) if n not in f.fixed]
        h = heldout(rs, names=names, k=folds, x0=f.values)
        raw = mape(model_times(rs, None), [r.time_s for r in rs])
        out[key] = {
            "hardware": rs[0].hw, "family": rs[0].family, "rows": len(rs),
            "quality": sorted({r.quality for r in rs}),
            "sources": sorted({r.source for r in rs}), "where": [r.where for r in rs],
            "params": {n: {"value": f.values[n], "stderr": f.stderr.get(n), "meaning": PARAMS[n].meaning,
                           "fitted": n not in f.fixed} for n in f.values},
            "fixed": f.fixed, "raw_mape": raw, "in_sample_mape": f.in_sample_mape, "heldout_mape": h,
            "warnings": f.warnings,
        }
        warns += [f"{key}: {w}" for w in f.warnings]
    return out, warns


def calibration_file(groups: dict, sources: list, command: str, evidence=None, transfers=None, links=None) -> dict:
    """The calibration file's content: schema, provenance (sources with their row counts and
    checksums, the command, the date, versions) and the groups."""
    import datetime
    import platform

    import scipy

    from attnsim import __version__
    return {"schema": SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command, "attnsim_version": __version__,
            "versions": {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__},
            "sources": sources, "groups": groups, "transfer_evidence": evidence or [], "transfers": transfers or {},
            **({"links": links} if links else {})}


# a family without rows of its own borrows the fit of the family its kernels descend from (FA4 and cuDNN's
# fused attention from FA3's warp-specialized design, CK's FMHA from FA2's, attnsim's Triton kernels from Triton's
# tutorial 06), as the transfers do
FAMILY_LINE = {"fa4": ("fa3",), "cudnn": ("fa3",), "ck": ("fa2",), "fa3": ("fa2",), "attnsim": ("triton",)}
SAME_ARCH_FLOOR = 10.0  # percent: a fit carried to another GPU of its architecture, never measured there


def transfer_evidence(rows, fitted: dict) -> list:
    """Measured transfers: each fitted 16-bit group's parameters applied to another fitted group's rows
    (the same family on another GPU, or the family line on the same GPU), with the MAPE they give."""
    by_key = groups_of(rows)
    base = {k: g for k, g in fitted.items() if k.count("/") == 1}
    out = []
    for src, g in base.items():
        c = calibration_of({n: p["value"] for n, p in g["params"].items()})
        for dst in base:
            if dst == src:
                continue
            (hs, fs), (hd, fd) = src.split("/"), dst.split("/")
            if not ((fs == fd and hs != hd) or (hs == hd and fs in FAMILY_LINE.get(fd, ()))):
                continue
            rs = by_key[dst]
            try:
                m = mape(model_times(rs, c), [r.time_s for r in rs])
            except AttnsimError:
                continue
            out.append({"from": src, "to": dst, "mape": m})
    return out


def transfer_plan(fitted: dict, evidence: list) -> dict:
    """For every (profile, family) that `predict` accepts without a fitted group of its own: the fitted
    group it borrows and the error stated for it — the largest measured transfer of the same kind
    (`transfer_evidence`: the family across GPUs, or the family line), else twice the source's held-out
    error, at least SAME_ARCH_FLOOR, for a GPU of the source's architecture."""
    from attnsim.simulator.families import FAMILIES, check_family
    from attnsim.simulator.hardware import builtin_profiles
    base = {k: g for k, g in fitted.items() if k.count("/") == 1}
    profiles = builtin_profiles()
    plan = {}
    for hw_key, hw in profiles.items():
        for fam in FAMILIES.values():
            key = f"{hw_key}/{fam.name}"
            if key in base:
                continue
            try:
                check_family(fam, hw, "bf16" if "bf16" in fam.dtypes else fam.dtypes[0], 128, 128, "prefill")
            except AttnsimError:
                continue
            choice = None
            for fams, kind in (((fam.name,), "family"), (FAMILY_LINE.get(fam.name, ()), "line")):
                cands = [k for k in base if k.split("/")[1] in fams]
                cands.sort(key=lambda k: (profiles[k.split("/")[0]].arch != hw.arch, -base[k]["rows"]))
                if cands:
                    choice = (cands[0], kind)
                    break
            if choice is None:
                continue
            src, kind = choice
            src_hw = profiles[src.split("/")[0]]
            k = _kfold(base[src])
            if kind == "family":
                ev = [e["mape"] for e in evidence if e["to"].split("/")[1] == fam.name and e["from"].split("/")[1] == fam.name]
            else:
                ev = [e["mape"] for e in evidence if e["to"].split("/")[1] != e["from"].split("/")[1]]
            if kind == "family" and src_hw.arch == hw.arch:
                stated = max(SAME_ARCH_FLOOR, 2 * k)
                why = (f"{src} carried to {hw.name} (same architecture, {hw.arch}): not measured there; twice "
                       f"its held-out error, at least {SAME_ARCH_FLOOR:g}%")
            else:
                stated = max(ev) if ev else max([e["mape"] for e in evidence] or [2 * k])
                why = (f"{src} carried to {fam.name} on {hw.name}: the largest measured transfer of this kind "
                       f"({'the family across GPUs' if kind == 'family' else 'a family line on one GPU'}"
                       f"{', none measured: the largest of any kind' if not ev else ''})")
            plan[key] = {"from": src, "stated_mape": stated, "why": why}
    return plan


def report_points(rows, calibration="default") -> list:
    """The points of `validation.report.render_report` for `rows`: each row's measured time, its
    prediction under `calibration` (as `model.predict` takes it: per row's GPU and family), its bound
    (a backward row: 2.5 x its forward FLOPs at the device's peak tensor rate), useful FLOPs, HBM
    bytes, and the device's peaks."""
    from attnsim.simulator.calibrations import choose
    out = []
    for key, rs in groups_of(rows).items():
        rs = priceable(rs)[0]
        if not rs:
            continue
        hw = load_hardware(rs[0].hw)
        fam = get_family(rs[0].family)
        c = choose(calibration, hw, fam, rs[0].dtype, rs[0].phase)[0]
        res = model_results(rs, c)
        for i, r in enumerate(rs):
            peak = hw.peak_flops_per_s(r.dtype, "fp32", hw.clock_max_hz)
            flops = int(res["useful_flops"][i])
            out.append({"group": key, "family": r.family, "hardware": hw.name, "label": r.label or r.where,
                        "measured_s": r.time_s, "predicted_s": float(res["time_s"][i]),
                        "bound_s": flops / peak if r.phase == "backward" else float(res["bound_s"][i]),
                        "flops": flops, "hbm_bytes": int(res["hbm_bytes"][i]), "peak_flops_per_s": peak,
                        "hbm_bytes_per_s": hw.hbm_bandwidth_bytes_per_s, "source": f"{r.source} ({r.where})"})
    return out
