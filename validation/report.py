"""HTML report of predicted vs measured kernel times: one self-contained file (inline CSS, charts as
base64 PNG, no JavaScript, no external URLs), rendered with jinja2 under autoescape.

jinja2 and matplotlib are imported inside `render_report` only, so importing this module (and
`attnsim predict`) stays fast.
"""
from __future__ import annotations

import base64
import io
import math
import os
import statistics
import tempfile
from pathlib import Path

# keys every point must carry; the numeric ones must be finite and > 0
_STR_KEYS = ("group", "family", "hardware", "label", "source")
_NUM_KEYS = ("measured_s", "predicted_s", "bound_s", "flops", "hbm_bytes",
             "peak_flops_per_s", "hbm_bytes_per_s")
_HELDOUT_SPLITS = ("kfold", "seqlen", "head_dim", "causal")

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img.chart { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
p.note { color: #555; font-size: 0.9em; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p>{{ n_points }} measurements in {{ groups|length }} kernel groups; MAPE over all rows {{ overall_mape }}.</p>
{% if environment %}
<h2>Environment</h2>
<table id="environment-table">
{% for key, value in environment %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>
{% endfor %}</table>
{% endif %}
<h2>Errors per kernel group</h2>
<table id="error-table">
<thead><tr><th>group</th><th>rows</th><th>median predicted/measured</th><th>MAPE in-sample</th>
<th>MAPE held-out</th><th>worst row</th><th>worst error</th></tr></thead>
<tbody>
{% for g in groups %}<tr><td>{{ g.name }}</td><td class="num">{{ g.rows }}</td><td class="num">{{ g.median_ratio }}</td>
<td class="num">{{ g.mape }}</td><td class="num">{{ g.heldout_mape }}</td><td>{{ g.worst_label }}</td>
<td class="num">{{ g.worst_error }}</td></tr>
{% endfor %}</tbody>
</table>
<p class="note">Error = (predicted - measured) / measured. Held-out MAPE uses each row's prediction from a
fit that did not see it ("-" where the rows carry none).</p>
{% if calibration %}
<h2>Calibration</h2>
<table id="calibration-table">
<thead><tr><th>group</th><th>rows</th>{% for p in calibration.param_names %}<th>{{ p }}</th>{% endfor %}
{% for s in calibration.splits %}<th>held-out MAPE ({{ s }})</th>{% endfor %}</tr></thead>
<tbody>
{% for row in calibration.rows %}<tr><td>{{ row.name }}</td><td class="num">{{ row.rows }}</td>
{% for v in row.params %}<td class="num">{{ v }}</td>{% endfor %}
{% for v in row.heldout %}<td class="num">{{ v }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
{% endif %}
<h2>Predicted vs measured</h2>
{% for c in scatter_charts %}<img class="chart" alt="{{ c.alt }}" src="data:image/png;base64,{{ c.png }}">
{% endfor %}
<h2>Rooflines</h2>
{% for c in roofline_charts %}<img class="chart" alt="{{ c.alt }}" src="data:image/png;base64,{{ c.png }}">
{% endfor %}
<h2>All rows</h2>
<table id="rows-table">
<thead><tr><th>group</th><th>label</th><th>measured us</th><th>predicted us</th><th>bound us</th>
<th>error %</th><th>held-out us</th><th>source</th></tr></thead>
<tbody>
{% for r in rows %}<tr><td>{{ r.group }}</td><td>{{ r.label }}</td><td class="num">{{ r.measured_us }}</td>
<td class="num">{{ r.predicted_us }}</td><td class="num">{{ r.bound_us }}</td><td class="num">{{ r.error }}</td>
<td class="num">{{ r.heldout_us }}</td><td>{{ r.source }}</td></tr>
{% endfor %}</tbody>
</table>
</body>
</html>
"""


def render_report(points: list[dict], out_path, *, title: str = "attnsim: predicted vs measured",
                  environment: dict | None = None, calibration: dict | None = None) -> Path:
    """Write the predicted-vs-measured report to `out_path` as one self-contained HTML file.

    Args:
        points: one dict per (kernel, shape) measurement, non-empty. Keys: "group", "family",
            "hardware", "label", "source" (str); "measured_s", "predicted_s", "bound_s" (s, > 0);
            "flops" (useful FLOPs), "hbm_bytes", "peak_flops_per_s" (tensor peak for the dtype),
            "hbm_bytes_per_s" (all > 0); optional "heldout_predicted_s" (s, > 0, or None).
        out_path: the HTML file; its folder is created if missing. Written atomically (temp file
            in the same folder, then os.replace): a failed render leaves any existing file as it was.
        title: the page title and heading.
        environment: flat dict shown as a key/value table (device, driver, versions, date), or None.
        calibration: {"groups": {name: {"params": {name: value}, "heldout_mape": {"kfold": ...,
            "seqlen": ..., "head_dim": ..., "causal": ...}, "rows": int}}}, MAPEs in percent, or
            None; missing keys show "-".

    Returns:
        The path written, as a Path.

    Raises:
        ValueError: no points, or a point missing a key or holding a non-positive number.
    """
    import jinja2  # lazily: `attnsim predict` must not pay for it

    _check_points(points)
    rows = [_row(p) for p in points]
    groups = _group_stats(points)
    charts_scatter = [_scatter_chart(points)]
    charts_roofline = [_roofline_chart(name, [p for p in points if p["group"] == name])
                       for name in _ordered(p["group"] for p in points)]
    errors = [abs(p["predicted_s"] / p["measured_s"] - 1.0) for p in points]
    html = jinja2.Environment(autoescape=True).from_string(_TEMPLATE).render(
        title=title,
        n_points=len(points),
        overall_mape=_pct(100.0 * statistics.fmean(errors), signed=False),
        environment=[(str(k), str(v)) for k, v in (environment or {}).items()],
        groups=groups,
        calibration=_calibration_table(calibration),
        scatter_charts=charts_scatter,
        roofline_charts=charts_roofline,
        rows=rows,
    )
    return _write_atomic(Path(out_path), html)


def _check_points(points) -> None:
    """Raise ValueError naming the point index and key for the first bad point."""
    if not points:
        raise ValueError("report: no points to show (pass at least one measurement)")
    for i, p in enumerate(points):
        if not isinstance(p, dict):
            raise ValueError(f"report: point {i} must be a dict, got {type(p).__name__}")
        for key in _STR_KEYS + _NUM_KEYS:
            if key not in p:
                raise ValueError(f"report: point {i} is missing key {key!r}")
        for key in _NUM_KEYS:
            _check_positive(i, key, p[key])
        if p.get("heldout_predicted_s") is not None:
            _check_positive(i, "heldout_predicted_s", p["heldout_predicted_s"])


def _check_positive(i: int, key: str, value) -> None:
    """A finite real number > 0 (bools are not numbers here)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ValueError(f"report: point {i} key {key!r} must be a finite number > 0, got {value!r}")


def _ordered(items) -> list:
    """Distinct items in order of first appearance."""
    return list(dict.fromkeys(items))


def _us(seconds) -> str:
    """Seconds as microseconds for a table cell."""
    if seconds is None:
        return "-"
    us = seconds * 1e6
    return f"{us:,.1f}" if us >= 10 else f"{us:.3f}"


def _pct(value, signed: bool = True) -> str:
    """A percentage for a table cell; None shows "-"."""
    if value is None:
        return "-"
    return f"{value:+.1f}%" if signed else f"{value:.1f}%"


def _row(p: dict) -> dict:
    """One line of the rows table."""
    return {
        "group": str(p["group"]), "label": str(p["label"]), "source": str(p["source"]),
        "measured_us": _us(p["measured_s"]), "predicted_us": _us(p["predicted_s"]),
        "bound_us": _us(p["bound_s"]), "heldout_us": _us(p.get("heldout_predicted_s")),
        "error": _pct(100.0 * (p["predicted_s"] / p["measured_s"] - 1.0)),
    }


def _group_stats(points: list[dict]) -> list[dict]:
    """Per kernel group: median predicted/measured, in-sample and held-out MAPE, the worst row."""
    out = []
    for name in _ordered(p["group"] for p in points):
        members = [p for p in points if p["group"] == name]
        ratios = [p["predicted_s"] / p["measured_s"] for p in members]
        heldout = [abs(p["heldout_predicted_s"] / p["measured_s"] - 1.0)
                   for p in members if p.get("heldout_predicted_s") is not None]
        worst = max(range(len(members)), key=lambda j: abs(ratios[j] - 1.0))
        out.append({
            "name": str(name), "rows": len(members),
            "median_ratio": f"{statistics.median(ratios):.3f}",
            "mape": _pct(100.0 * statistics.fmean(abs(r - 1.0) for r in ratios), signed=False),
            "heldout_mape": _pct(100.0 * statistics.fmean(heldout), signed=False) if heldout else "-",
            "worst_label": str(members[worst]["label"]),
            "worst_error": _pct(100.0 * (ratios[worst] - 1.0)),
        })
    return out


def _cell(value) -> str:
    """A calibration value for a table cell: numbers to 4 significant digits, None as "-"."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _calibration_table(calibration: dict | None) -> dict | None:
    """Columns (union of parameter names) and cells of the calibration table, or None."""
    if not calibration:
        return None
    groups = calibration.get("groups") or {}
    param_names = _ordered(k for g in groups.values() for k in ((g or {}).get("params") or {}))
    rows = []
    for name, g in groups.items():
        g = g or {}
        params, mape = g.get("params") or {}, g.get("heldout_mape") or {}
        rows.append({
            "name": str(name), "rows": _cell(g.get("rows")),
            "params": [_cell(params.get(k)) for k in param_names],
            "heldout": [_pct(mape.get(s), signed=False) if isinstance(mape.get(s), (int, float))
                        else _cell(mape.get(s)) for s in _HELDOUT_SPLITS],
        })
    return {"param_names": [str(k) for k in param_names], "splits": _HELDOUT_SPLITS, "rows": rows}


def _figure():
    """A fresh Agg figure (no pyplot global state)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    return Figure(figsize=(7.5, 5.0), dpi=100, layout="constrained")


def _png(fig) -> str:
    """The figure as base64 PNG text."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _scatter_chart(points: list[dict]) -> dict:
    """Log-log predicted vs measured time, one marker series per family, y = x and a +-10% band."""
    fig = _figure()
    ax = fig.add_subplot()
    meas = [p["measured_s"] * 1e6 for p in points]
    pred = [p["predicted_s"] * 1e6 for p in points]
    lo, hi = min(meas + pred) / 1.5, max(meas + pred) * 1.5
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="0.85", label="±10%")
    ax.plot([lo, hi], [lo, hi], color="0.3", linewidth=1, label="predicted = measured")
    markers = "osD^vP*X<>"
    for k, fam in enumerate(_ordered(p["family"] for p in points)):
        sel = [p for p in points if p["family"] == fam]
        ax.scatter([p["measured_s"] * 1e6 for p in sel], [p["predicted_s"] * 1e6 for p in sel],
                   marker=markers[k % len(markers)], s=28, label=str(fam), zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured time (us)")
    ax.set_ylabel("predicted time (us)")
    ax.set_title("predicted vs measured, per kernel family")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    families = ", ".join(str(f) for f in _ordered(p["family"] for p in points))
    return {"png": _png(fig), "alt": f"Predicted vs measured kernel time, log-log, families: {families}"}


def _roofline_chart(group: str, points: list[dict]) -> dict:
    """Achieved FLOP/s vs arithmetic intensity (useful FLOPs per HBM byte) for one kernel group,
    measured and predicted points under the compute and memory roofs."""
    fig = _figure()
    ax = fig.add_subplot()
    ai = [p["flops"] / p["hbm_bytes"] for p in points]
    roofs = _ordered((p["peak_flops_per_s"], p["hbm_bytes_per_s"]) for p in points)
    ridges = [peak / bw for peak, bw in roofs]
    x_lo, x_hi = min(ai + ridges) / 4, max(ai + ridges) * 4
    for peak, bw in roofs:
        ridge = peak / bw
        ax.plot([x_lo, ridge], [bw * x_lo, peak], color="tab:blue", linewidth=1.2,
                label=f"memory roof {bw / 1e12:.3g} TB/s")
        ax.plot([ridge, x_hi], [peak, peak], color="tab:red", linewidth=1.2,
                label=f"compute roof {peak / 1e12:.4g} TFLOP/s")
    meas = [p["flops"] / p["measured_s"] for p in points]
    pred = [p["flops"] / p["predicted_s"] for p in points]
    for x, ym, yp in zip(ai, meas, pred):
        ax.plot([x, x], [ym, yp], color="0.6", linewidth=0.8, zorder=2)
    ax.scatter(ai, meas, marker="o", s=30, color="black", label="measured", zorder=3)
    ax.scatter(ai, pred, marker="x", s=30, color="tab:orange", label="predicted", zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_lo, x_hi)
    ax.set_xlabel("arithmetic intensity (useful FLOP / HBM byte)")
    ax.set_ylabel("achieved FLOP/s (useful FLOPs / time)")
    ax.set_title(f"roofline: {group}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return {"png": _png(fig), "alt": f"Roofline of {group}: achieved FLOP/s vs arithmetic intensity, "
                                     f"measured and predicted"}


def _write_atomic(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to a temp file beside `path`, then os.replace it over `path`; on any
    failure the temp file is removed and `path` is untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
