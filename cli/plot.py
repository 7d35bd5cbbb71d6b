"""`attnsim plot`: charts with matplotlib (Agg, no display).

    attnsim plot roofline [predict's workload options] -o roofline.png
    attnsim plot sweep FILE -o curves.svg [--x seqlen_q] [--y time_s] [--by variant,hardware]

`roofline_figure(pred)` and `sweep_figure(columns, ...)` build the figures (returned, not shown), the
commands write them. matplotlib is imported inside those functions only: `attnsim --help` and
`attnsim predict` never load it (nor does importing this module). A figure is written to a temporary
name and renamed, so an interrupted run leaves no half-written file (docs/design.md section 14).
"""
from __future__ import annotations

import math
import os
import textwrap

import click

from attnsim.cli import _predict, _workload_options

READERS = (".csv", ".parquet", ".json")
# what `attnsim sweep` writes after the input columns (time_s first): results, not axes to group by
from attnsim.simulator.sweep import RESULT_COLUMNS  # noqa: E402
X_PREFERRED = ("seqlen_q", "seqlen_kv")
MAX_CURVES = 40  # more lines than this in one chart are not readable
MAX_INLINE_LABELS = 6  # more labeled spots than this: numbers on the chart, the names below it
EXP_ROLES = ("forward", "decode", "backward")  # the fused attention kernels: the exps are theirs


def _error(msg):
    from attnsim.simulator.errors import AttnsimError
    return AttnsimError(msg)


# -- output --------------------------------------------------------------------------------------------
def _figure(size=(8.5, 6.0)):
    """A fresh Agg figure (no pyplot global state)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    return Figure(figsize=size, dpi=100, layout="constrained")


def output_format(output: str) -> str:
    """The format matplotlib writes for -o's extension (png, svg, pdf...); AttnsimError otherwise."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    ext = os.path.splitext(output)[1].lower().lstrip(".")
    kinds = FigureCanvasAgg.get_supported_filetypes()
    if ext not in kinds:
        raise _error(f"-o {output}: matplotlib writes {', '.join('.' + k for k in sorted(kinds))}; "
                     f"not {'.' + ext if ext else 'a file without extension'}")
    return ext


def save(fig, output: str, fmt: str):
    """Write `fig` to a temporary name beside `output`, then rename it: nothing half-written."""
    tmp = f"{output}.tmp-{os.getpid()}"
    try:
        fig.savefig(tmp, format=fmt)
        os.replace(tmp, output)
    except OSError as e:
        raise _error(f"-o {output}: cannot write it ({e.strerror or e})") from None
    except Exception as e:  # a format whose writer is missing here (.pgf without LaTeX, .avif without its codec)
        msg = " ".join(str(e).split())[:200]
        raise _error(f"-o {output}: matplotlib could not write it ({type(e).__name__}: {msg})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _si(v, unit):
    for p, s in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= s:
            return f"{v / s:.3g} {p}{unit}"
    return f"{v:.3g} {unit}"


# -- the roofline ----------------------------------------------------------------------------------------
def _exp_ceilings(pred, r) -> list:
    """The exp (SFU) ceilings of the fused attention kernels, as FLOP/s: each pass's useful FLOPs per exp
    (forward; train: also the backward, which recomputes P) times the exp rate the bound uses (the SFU,
    plus exp2 emulated on the FP32 pipes; `bound.unit_times`). [(pass, FLOPs per exp, exps/s, FLOP/s)]."""
    from attnsim.simulator.bound import attention_work, unit_times
    from attnsim.simulator.ops import Work
    if not pred.family.fused or not any(k.role in EXP_ROLES for k in pred.kernels):
        return []
    w = pred.workload
    fwd = attention_work(w.with_(phase="prefill") if w.phase == "train" else w, None, pairs_total=1.0)
    passes = [("forward", Work(tensor=fwd.tensor, exp=fwd.exp, fp32=fwd.fp32))]
    if w.phase == "train":  # recompute P (the fused kernels' way): the train work less the forward's
        full = attention_work(w, None, pairs_total=1.0)
        passes.append(("backward", Work(tensor=full.tensor[len(fwd.tensor):], exp=full.exp - fwd.exp,
                                        fp32=full.fp32 - fwd.fp32)))
    out = []
    for name, wk in passes:
        flops = sum(f for f, *_ in wk.tensor)
        t = float(unit_times(wk, pred.hardware, r=r)["exp"])
        if wk.exp > 0 and t > 0:
            out.append((name, flops / wk.exp, wk.exp / t, flops / t))
    return out


def roofline_data(pred) -> dict:
    """What the roofline draws, at the bound's rates (`peak_rates`: clock_max_hz, efficiencies 1).

    points: the kernels with FLOPs and HBM bytes: name, limiting unit (of the predicted time), role,
    intensity = executed FLOPs / HBM bytes, achieved = executed FLOPs / predicted time, and (where the
    profile has an L2 bandwidth and the kernel L2 bytes) l2_intensity = FLOPs / L2 bytes.
    skipped: the other kernels' names (no FLOPs or no bytes: no place on log axes).
    ceilings: [(gid, label, FLOP/s)]: the tensor peak of the workload's dtype with each accumulate
    type; the exp ceilings (`_exp_ceilings`). roofs: [(gid, label, bytes/s)]: HBM, and L2 where sourced."""
    from attnsim.simulator.rates import peak_rates
    hw, w = pred.hardware, pred.workload
    r = peak_rates(hw)
    points, skipped, names = [], [], {}
    for k in pred.kernels:
        names[k.name] = names.get(k.name, 0) + 1
        label = k.name if names[k.name] == 1 else f"{k.name} #{names[k.name]}"
        if k.flops > 0 and k.hbm_bytes > 0 and k.time_s > 0:
            p = {"name": label, "bound": k.bound, "role": k.role, "intensity": k.flops / k.hbm_bytes,
                 "achieved": k.flops / k.time_s}
            if r.l2_bytes_per_s and k.l2_bytes > 0:
                p["l2_intensity"] = k.flops / k.l2_bytes
            points.append(p)
        else:
            skipped.append(label)
    ceilings = []
    for accum in dict.fromkeys((w.qk_accum, w.pv_accum)):
        peak = r.mma_device(w.dtype, accum)
        ceilings.append((f"ceiling:tensor:{w.dtype}/{accum}",
                         f"tensor {w.dtype}/{accum}-acc: {_si(peak, 'FLOP/s')}", peak))
    exps = _exp_ceilings(pred, r)
    sfu = r.exp_device()
    for name, per_exp, rate, ceiling in exps:
        label = f"exp ({name}): {per_exp:.0f} FLOP/exp x {_si(rate, 'exp/s')} = {_si(ceiling, 'FLOP/s')}"
        ceilings.append((f"ceiling:exp:{name}", label, ceiling))
    roofs = [("roof:hbm", f"HBM: {_si(r.hbm_bytes_per_s, 'B/s')} x intensity", r.hbm_bytes_per_s)]
    if r.l2_bytes_per_s:
        roofs.append(("roof:l2", f"L2: {_si(r.l2_bytes_per_s, 'B/s')} x FLOP per L2 byte (hollow markers)",
                      r.l2_bytes_per_s))
    exp_note = ""
    if exps:
        rate = exps[0][2]
        extra = rate - sfu
        exp_note = (f"exp ceiling = the pass's useful FLOPs per exp x the exp rate the bound uses: SFU "
                    f"{_si(sfu, 'exp/s')}" + (f" + exp2 emulated on the FP32 pipes {_si(extra, 'exp/s')} "
                                               f"({r.exp2_emulation_fp32_ops:g} FP32 ops each)"
                                               if extra > 1e-6 * sfu else ""))
    return {"points": points, "skipped": skipped, "ceilings": ceilings, "roofs": roofs, "clock_hz": r.clock_hz,
            "exp_note": exp_note}


def _workload_title(pred) -> str:
    w = pred.workload
    shape = (f"batch {w.batch} x {w.seqlen_q}->{w.seqlen_kv} tokens, heads {w.heads_q}/{w.heads_kv}, "
             f"head dim {w.head_dim_qk}/{w.head_dim_v}")
    flags = ", causal" * bool(w.causal) + (", layer" if pred.scope == "layer" else "")
    params = getattr(pred, "params", None) or {}
    given = "".join(f", {k}={v}" for k, v in params.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool))
    return f"{pred.hardware.name}: {pred.variant} ({pred.family.name}) {w.phase} {w.dtype}, {shape}{flags}{given}"


def roofline_figure(pred):
    """A roofline of a Prediction (a Figure): each kernel a point (intensity = executed FLOPs / HBM bytes,
    achieved = executed FLOPs / predicted time) labeled with its name and limiting unit, under the
    ceilings of `roofline_data`. Artists carry gids: "kernels" (the points), "kernels:l2" (the same
    kernels at their L2 intensity), "ceiling:tensor:<dtype>/<accum>", "ceiling:exp:<pass>", "roof:hbm",
    "roof:l2"."""
    d = roofline_data(pred)
    pts = d["points"]
    spots = {}  # kernels at one spot (eager's QK^T and PV GEMMs, a duplex's passes) share one label
    for p in pts:
        spots.setdefault((f"{p['intensity']:.6g}", f"{p['achieved']:.6g}"), []).append(p)
    labels = [(same[0], ", ".join(dict.fromkeys(p["name"] for p in same)) + " ("
               + "/".join(dict.fromkeys(p["bound"] for p in same)) + ")") for same in spots.values()]
    numbered = len(labels) > MAX_INLINE_LABELS  # many kernels (a layer): numbers on the chart, names below
    notes = []
    if numbered:
        notes.append("kernels: " + "; ".join(f"{i + 1} {text}" for i, (_, text) in enumerate(labels)))
    if d["exp_note"]:
        notes.append(d["exp_note"])
    if d["skipped"]:
        notes.append("not drawn (no FLOPs or no HBM bytes): " + ", ".join(d["skipped"]))
    footer = "\n".join(textwrap.fill(n, 140) for n in notes)
    lines = footer.count("\n") + 1 if notes else 0
    fig = _figure((8.5, 6.0 + 0.13 * lines))
    if notes:  # below the chart, in an axes of their own (the layout engine then keeps them clear)
        ax, foot = fig.subplots(2, 1, height_ratios=[5.0, 0.06 + 0.13 * lines])
        foot.axis("off")
        foot.text(0, 1, footer, fontsize=7, va="top", transform=foot.transAxes, gid="notes")
    else:
        ax = fig.add_subplot()
    xs = [p["intensity"] for p in pts] + [p["l2_intensity"] for p in pts if "l2_intensity" in p]
    ys = [p["achieved"] for p in pts]
    top = max(c for *_, c in d["ceilings"])
    ridges = [top / bw for *_, bw in d["roofs"]] + [c / d["roofs"][0][2] for *_, c in d["ceilings"]]
    x_lo = min(xs + ridges) / 4
    x_hi = max(xs + ridges) * 4
    y_lo = min(ys + [d["roofs"][0][2] * x_lo]) / 2
    colors = {"tensor": "tab:red", "exp": "tab:purple"}
    styles = ["-", "--", ":", "-."]
    for i, (gid, label, c) in enumerate(d["ceilings"]):
        kind = gid.split(":")[1]
        ax.plot([x_lo, x_hi], [c, c], color=colors[kind], linewidth=1.4, linestyle=styles[i % len(styles)],
                label=label, gid=gid)
    for gid, label, bw in d["roofs"]:
        ax.plot([x_lo, top / bw], [bw * x_lo, top], color="tab:blue" if gid == "roof:hbm" else "tab:cyan",
                linewidth=1.4, linestyle="-" if gid == "roof:hbm" else "--", label=label, gid=gid)
    if pts:
        ax.scatter([p["intensity"] for p in pts], ys, s=36, color="black", zorder=4, gid="kernels",
                   label="kernels: executed FLOPs / predicted time")
        l2 = [p for p in pts if "l2_intensity" in p]
        if l2:
            ax.scatter([p["l2_intensity"] for p in l2], [p["achieved"] for p in l2], s=36, facecolors="none",
                       edgecolors="black", zorder=4, gid="kernels:l2", label="the same kernels at FLOP per L2 byte")
        # labels alternate below and above their points, in order of intensity, so neighbours part
        order = sorted(range(len(labels)), key=lambda i: labels[i][0]["intensity"])
        for rank, i in enumerate(order):
            p, text = labels[i]
            ax.annotate(str(i + 1) if numbered else text, (p["intensity"], p["achieved"]),
                        xytext=(5, -11 if rank % 2 == 0 else 5), textcoords="offset points", fontsize=8)
        if not numbered:
            for p in l2:
                ax.annotate(f"{p['name']} (L2)", (p["l2_intensity"], p["achieved"]), xytext=(5, -11),
                            textcoords="offset points", fontsize=7, color="0.4")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, top * 3)
    ax.set_xlabel("arithmetic intensity (executed FLOPs per HBM byte)")
    ax.set_ylabel("achieved FLOP/s (executed FLOPs / predicted time)")
    ax.set_title(textwrap.fill(_workload_title(pred), 115) +
                 f"\nceilings at clock_max {d['clock_hz'] / 1e9:.3g} GHz (the bound's); points at the predicted "
                 f"time{' (calibrated)' if pred.calibrated else ''}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return fig


# -- sweep curves ----------------------------------------------------------------------------------------
def read_table(path: str) -> dict:
    """A sweep file (.csv, .parquet, .json as `attnsim sweep` writes them, or the folder of Parquet parts of
    `--engine dask`) -> {column: list}, in file order; AttnsimError (one line) for another extension, an
    unreadable or empty file."""
    ext = ".parquet" if os.path.isdir(path) else os.path.splitext(path)[1].lower()  # --engine dask: a folder of parts
    if ext not in READERS:
        raise _error(f"{path}: attnsim plot sweep reads {', '.join(READERS)} (as 'attnsim sweep -o' writes "
                     f"them); not {ext or 'a file without extension'}")
    try:
        if ext == ".json":
            import json
            with open(path, encoding="utf-8") as f:
                rows = json.load(f)
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise _error(f"{path}: expected a JSON list of objects (one per row), as 'attnsim sweep' writes")
            cols = {k: None for r in rows for k in r}
            table = {k: [r.get(k) for r in rows] for k in cols}
        elif ext == ".csv":
            import pyarrow.csv as pacsv
            # an empty field is no value (a -p the row's variant lacks, no dense baseline), as in Parquet and JSON
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True)).to_pydict()
        else:
            import pyarrow.parquet as pq
            table = pq.read_table(path).to_pydict()
    except (OSError, ValueError, UnicodeDecodeError) as e:  # pyarrow's ArrowInvalid is a ValueError
        msg = " ".join(str(e).split())[:200]
        raise _error(f"{path}: not a readable sweep file ({msg})") from None
    if not table or not len(next(iter(table.values()))):
        raise _error(f"{path}: no rows; write one with 'attnsim sweep ... -o {os.path.basename(path)}'")
    return table


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numeric(table, col) -> bool:
    vals = [v for v in table[col] if v is not None]
    return bool(vals) and all(_is_number(v) for v in vals)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def _determined(table, col, by) -> bool:
    """Whether `col` is one value for each combination of the columns `by` (a function of them)."""
    seen = {}
    for i, v in enumerate(table[col]):
        key = tuple(table[b][i] for b in by)
        if seen.setdefault(key, v) != v:
            return False
    return True


def _check_column(table, col, option, path):
    if col not in table:
        raise _error(f"{option} {col}: no such column in {path}; columns: {', '.join(table)}")


def _auto_scale(vals, ratio) -> bool:
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) >= ratio


def _token_formatter(v, _pos=None):
    if v >= 1 << 20 and v % (1 << 20) == 0:
        return f"{int(v) >> 20}M"
    if v >= 1024 and v % 1024 == 0:
        return f"{int(v) >> 10}k"
    return f"{v:g}"


def input_columns(table: dict) -> list:
    """The configuration's columns: those before time_s (an `attnsim sweep` file lists the inputs, its -p
    names, then the results from time_s on), else every column that is not a known result."""
    cols = list(table)
    if "time_s" in cols:
        return cols[:cols.index("time_s")]
    return [c for c in cols if c not in RESULT_COLUMNS]


def sweep_plan(table: dict, x=None, y=None, by=None, path="the file") -> dict:
    """The columns a sweep chart uses: x (default: seqlen_q where it varies, else seqlen_kv, else the numeric
    input column with the most distinct values), y (default time_s), by (default: each input column that varies
    and is not already fixed by x and the columns chosen before it: seqlen_kv = seqlen_q draws no curve
    of its own), and the curves: [(label, [(x, y)...] sorted by x)], rows without a y value left out."""
    inputs = input_columns(table)
    varies = [c for c in inputs if len(set(map(repr, table[c]))) > 1]
    if x is None:
        numeric = [c for c in varies if _numeric(table, c)]
        pref = [c for c in X_PREFERRED if c in numeric]
        x = pref[0] if pref else max(numeric, key=lambda c: len(set(table[c]))) if numeric else "seqlen_q"
        if x not in table:
            raise _error(f"{path}: no numeric input column varies; name the x axis with --x (columns: "
                         f"{', '.join(table)})")
    _check_column(table, x, "--x", path)
    y = y or "time_s"
    _check_column(table, y, "--y", path)
    for col, opt in ((x, "--x"), (y, "--y")):
        if not _numeric(table, col):
            kind = "empty" if all(_missing(v) for v in table[col]) else "not numeric"
            if kind == "empty" and col == "speedup_vs_dense":
                kind += " (only mask variants have a dense baseline: swa, causal, sparse...)"
            raise _error(f"{opt} {col}: the column is {kind} in {path}; numeric columns: "
                         f"{', '.join(c for c in table if _numeric(table, c))}")
    if by is None:
        by = []
        for c in varies:
            if c != x and not _determined(table, c, [x] + by):
                by.append(c)
    else:
        for c in by:
            _check_column(table, c, "--by", path)
        if x in by:
            raise _error(f"--by {','.join(by)}: {x} is the x axis; group by other columns")
    groups = {}
    for i in range(len(table[x])):
        key = tuple(table[c][i] for c in by)
        groups.setdefault(key, []).append(i)
    curves = []
    for key, rows in groups.items():
        label = ", ".join(f"{c}={v}" for c, v in zip(by, key) if not _missing(v)) or y  # a -p it lacks: left out
        xs = [table[x][i] for i in rows]
        if len(set(xs)) < len(xs):
            dup = next(v for v in xs if xs.count(v) > 1)
            same = [i for i in rows if table[x][i] == dup]
            differ = [c for c in inputs if c != x and c not in by and len({repr(table[c][i]) for i in same}) > 1]
            hint = f"they differ in {', '.join(differ)}: add {differ[0]} to --by" if differ else \
                "they are the same configuration"
            raise _error(f"--by {','.join(by) or '(none)'}: the curve {label} has {len(same)} rows at {x}={dup} "
                         f"({hint})")
        pts = sorted((table[x][i], table[y][i]) for i in rows if not _missing(table[y][i]) and
                     not _missing(table[x][i]))
        if pts:
            curves.append((label, pts))
    if not curves:
        why = " (only mask variants have a dense baseline)" if y == "speedup_vs_dense" else ""
        raise _error(f"--y {y}: no row of {path} has a value{why}")
    if len(curves) > MAX_CURVES:
        raise _error(f"{path}: grouping by {', '.join(by) or 'nothing'} gives {len(curves)} curves (at most "
                     f"{MAX_CURVES} in one chart, {sum(len(p) == 1 for _, p in curves)} of them a single point): choose "
                     f"--x and a shorter --by, or sweep fewer axes per file")
    fixed = [f"{c}={table[c][0]}" for c in inputs if c not in varies and not all(_missing(v) for v in table[c])]
    return {"x": x, "y": y, "by": by, "curves": curves, "fixed": fixed}


def sweep_figure(table: dict, x=None, y=None, by=None, logx=None, logy=None, path="the file"):
    """Curves of y against x, one per group (`sweep_plan`), as a Figure; each curve a Line2D with gid
    "curve" and the group as its label. logx/logy None: log when every value is positive and they span
    a factor of 8 (x, base 2 for whole numbers) or 10 (y)."""
    plan = sweep_plan(table, x, y, by, path)
    x, y = plan["x"], plan["y"]
    fig = _figure((8.0, 5.5))
    ax = fig.add_subplot()
    for label, pts in plan["curves"]:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3.5, linewidth=1.3,
                label=label, gid="curve")
    allx = [p[0] for _, pts in plan["curves"] for p in pts]
    ally = [p[1] for _, pts in plan["curves"] for p in pts]
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    if _auto_scale(allx, 8) if logx is None else logx:
        if min(allx) <= 0:
            raise _error(f"--logx: {x} has values <= 0; drop --logx")
        whole = all(float(v).is_integer() for v in allx)
        ax.set_xscale("log", base=2 if whole else 10)
        if whole:
            ax.xaxis.set_major_formatter(FuncFormatter(_token_formatter))
    if _auto_scale(ally, 10) if logy is None else logy:
        if min(ally) <= 0:
            raise _error(f"--logy: {y} has values <= 0; drop --logy")
        ax.set_yscale("log")
    if y.endswith("_s"):
        from attnsim.simulator.problem import fmt_time
        yfmt = FuncFormatter(lambda v, _pos=None: fmt_time(v) if v > 0 else f"{v:g}")
    else:
        yfmt = FuncFormatter(lambda v, _pos=None: f"{v:g}")
    ax.yaxis.set_major_formatter(yfmt)
    if ax.get_yscale() == "log":
        if max(ally) / min(ally) < 100:  # a decade or two: ticks at 1, 2, 5 x 10^k
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(x)
    ax.set_ylabel(y + (" (dense time / this time)" if y == "speedup_vs_dense" else ""))
    fixed = ", ".join(plan["fixed"])
    ax.set_title(f"{y} vs {x}" + (f"\n{textwrap.fill(fixed, 100)}" if fixed else ""), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if len(plan["curves"]) > 1 or plan["by"]:
        ax.legend(fontsize=7, title=", ".join(plan["by"]) or None, title_fontsize=7)
    return fig


# -- the commands ------------------------------------------------------------------------------------------
@click.group(invoke_without_command=False, no_args_is_help=True)
def plot():
    """Charts (matplotlib): a prediction's roofline, or curves from a sweep file.

    \b
    Examples:
      attnsim plot roofline --variant gqa --hw h100 --seqlen 8192 --causal -o roofline.png
      attnsim plot sweep whatif.csv --x seqlen_q --y time_s --by variant,hardware -o whatif.svg
    """


@plot.command(context_settings={"max_content_width": 110})
@click.option("--variant", default="mha", show_default=True, help="attention variant (see 'attnsim variants')")
@_workload_options
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
              help="variant parameter, repeatable (grammar: 'attnsim variants')")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="the figure: .png, .svg, .pdf (any format matplotlib writes)")
def roofline(output, **opts):
    """A roofline of one prediction (the options of 'attnsim predict'): each kernel a point at its
    arithmetic intensity (executed FLOPs per HBM byte) and achieved FLOP/s (executed FLOPs / predicted
    time), labeled with its limiting unit, under the device's ceilings at the bound's clock (clock_max):
    the tensor peak of the dtype, the exp (SFU) ceiling as FLOP/s (FLOPs per exp x exp rate), the HBM
    roof and the L2 roof where the profile sources an L2 bandwidth."""
    fmt = output_format(output)
    from attnsim.simulator.cluster import is_cluster_name, load_cluster
    hw = opts["hw_name"]
    if is_cluster_name(hw) and not str(hw).endswith((".yaml", ".yml")):
        raise _error(f"plot roofline draws one GPU; --hw {hw} is a cluster: name its device "
                     f"({load_cluster(hw).device.key})")
    pred, _ = _predict(**opts)
    fig = roofline_figure(pred)
    save(fig, output, fmt)
    click.echo(f"wrote {output}: roofline of {len(pred.kernels)} kernel(s) on {pred.hardware.name}")


@plot.command(context_settings={"max_content_width": 110})
@click.argument("file", type=click.Path(exists=True))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="the figure: .png, .svg, .pdf (any format matplotlib writes)")
@click.option("--x", "x", default=None, metavar="COLUMN",
              help="the x axis [default: seqlen_q where it varies, else seqlen_kv, else the numeric input column "
                   "with the most distinct values]")
@click.option("--y", "y", default=None, metavar="COLUMN", help="the y axis [default: time_s]")
@click.option("--speedup", is_flag=True, help="y = speedup_vs_dense (mask variants: dense time over this one)")
@click.option("--by", default=None, metavar="COL,COL",
              help="one curve per combination of these columns [default: every input column that varies, "
                   "other than x and columns x fixes]")
@click.option("--logx/--linx", "logx", default=None,
              help="log or linear x [default: log when the values are positive and span a factor of 8]")
@click.option("--logy/--liny", "logy", default=None,
              help="log or linear y [default: log when the values are positive and span a factor of 10]")
def sweep(file, output, x, y, speedup, by, logx, logy):
    """Curves of y against x from a file of 'attnsim sweep' (.csv, .parquet, .json, or a folder of Parquet
    parts), one per group.

    \b
    Examples:
      attnsim sweep --variant mha,gqa --hw h100,b200 --seqlen 1k..128k -o whatif.csv
      attnsim plot sweep whatif.csv -o whatif.png
      attnsim plot sweep windows.parquet --speedup --by window_size -o windows.svg
    """
    if speedup:
        if y not in (None, "speedup_vs_dense"):
            raise click.UsageError(f"--speedup plots speedup_vs_dense; --y {y} contradicts it (drop one).")
        y = "speedup_vs_dense"
    by_cols = None
    if by is not None:
        by_cols = [c.strip() for c in by.split(",") if c.strip()]
    fmt = output_format(output)
    table = read_table(file)
    fig = sweep_figure(table, x, y, by_cols, logx, logy, path=file)
    save(fig, output, fmt)
    n = sum(1 for line in fig.axes[0].get_lines() if line.get_gid() == "curve")
    click.echo(f"wrote {output}: {n} curve(s) from {len(next(iter(table.values())))} rows")
