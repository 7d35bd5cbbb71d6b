"""The HTML report: rendered in a real headless browser (Debian's chromium), escaping, input errors,
atomic writes."""
import base64
import subprocess
from html.parser import HTMLParser

import pytest

from cli_checks import installed_tool

from attnsim.validation import report
from attnsim.validation.report import render_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _points():
    """12 synthetic rows in two groups (H100 FA3 fp16, A100 FA2 fp16), errors within about 15%."""
    out = []
    for group, family, hw, peak, bw in (("H100 SXM5 / fa3", "fa3", "H100 SXM5", 989e12, 3.35e12),
                                         ("A100 SXM4 / fa2", "fa2", "A100 SXM4", 312e12, 2.04e12)):
        for k, (seqlen, causal) in enumerate(((512, False), (1024, False), (2048, True),
                                              (4096, False), (8192, True), (16384, False))):
            b, h, d = 2, 16, 128
            flops = 4 * b * h * seqlen * seqlen * d // (2 if causal else 1)
            hbm_bytes = 4 * b * h * seqlen * d * 2  # Q, K, V, O in fp16
            bound_s = max(flops / peak, hbm_bytes / bw)
            measured_s = bound_s / (0.55 + 0.03 * k)
            out.append({
                "group": group, "family": family, "hardware": hw,
                "label": f"fwd {'causal' if causal else 'dense'} b={b} h={h} s={seqlen} d={d}",
                "measured_s": measured_s, "predicted_s": measured_s * (1.0 + 0.05 * (k - 2.5) / 2.5),
                "bound_s": bound_s, "flops": flops, "hbm_bytes": hbm_bytes,
                "peak_flops_per_s": peak, "hbm_bytes_per_s": bw,
                "source": "published: FA3-FP16" if family == "fa3" else "measured: a100.jsonl",
                "heldout_predicted_s": measured_s * (1.0 + 0.08 * (k - 2.5) / 2.5),
            })
    return out


class _Dom(HTMLParser):
    """Collects the text of each table (by id) and the attributes of <img class="chart">."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self._table = {}, [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = []
        elif tag == "img" and "chart" in (attrs.get("class") or "").split():
            self.images.append(attrs)

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._table is not None:
            self.tables[self._table].append(data)


def _chromium():
    """The chromium binary, or skip (fail under CI, which installs it)."""
    return installed_tool(("chromium", "chromium-browser"), "chromium", "chromium")


def test_report_in_headless_browser(tmp_path):
    exe = _chromium()
    out = render_report(_points(), tmp_path / "report.html",
                        environment={"device": "synthetic", "attnsim": "0.1.0"},
                        calibration={"groups": {"H100 SXM5 / fa3": {"params": {"eff": 0.71},
                                                                    "heldout_mape": {"kfold": 6.2}, "rows": 6}}})
    assert out == tmp_path / "report.html"
    html = out.read_text(encoding="utf-8")
    assert "<script" not in html and "http://" not in html and "https://" not in html
    proc = subprocess.run([exe, "--headless", "--disable-gpu", "--no-sandbox",
                           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", out.as_uri()],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = _Dom()
    dom.feed(proc.stdout)
    errors = " ".join(dom.tables.get("error-table", []))
    assert "H100 SXM5 / fa3" in errors and "A100 SXM4 / fa2" in errors
    rows = " ".join(dom.tables.get("rows-table", []))
    assert rows.count("b=2 h=16") == 12 and "fwd causal b=2 h=16 s=8192 d=128" in rows
    calibration = " ".join(dom.tables.get("calibration-table", []))
    assert "0.71" in calibration and "6.2%" in calibration and "-" in calibration
    # one scatter chart plus one roofline per group
    assert len(dom.images) == 3
    for img in dom.images:
        assert img.get("alt")
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix) and len(img["src"]) > len(prefix) + 1000
    assert base64.b64decode(dom.images[0]["src"][len(prefix):]).startswith(PNG_SIGNATURE)


def test_strings_are_escaped(tmp_path):
    points = _points()
    points[0]["label"] = "<script>alert(1)</script>"
    points[1]["group"] = 'H100 "quoted" & <b>'
    html = render_report(points, tmp_path / "r.html", title="<i>t</i>",
                         environment={"<k>": "<v>"}).read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>" not in html and "H100 &#34;quoted&#34; &amp; &lt;b&gt;" in html
    assert "<i>t</i>" not in html and "&lt;k&gt;" in html and "&lt;v&gt;" in html


@pytest.mark.parametrize("change, message", [
    (lambda ps: ps.clear(), "report: no points to show"),
    (lambda ps: ps[3].pop("bound_s"), "report: point 3 is missing key 'bound_s'"),
    (lambda ps: ps[5].update(measured_s=0.0), "report: point 5 key 'measured_s' must be a finite number > 0"),
    (lambda ps: ps[0].update(predicted_s=-1e-3), "report: point 0 key 'predicted_s'"),
    (lambda ps: ps[2].update(heldout_predicted_s=float("nan")), "report: point 2 key 'heldout_predicted_s'"),
    (lambda ps: ps[1].update(hbm_bytes="many"), "report: point 1 key 'hbm_bytes'"),
])
def test_bad_points_raise(tmp_path, change, message):
    points = _points()
    change(points)
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        render_report(points, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def _boom(*args, **kwargs):
    raise RuntimeError("boom")


@pytest.mark.parametrize("failure", ["bad points", "chart", "replace"])
def test_failed_render_keeps_existing_file(tmp_path, monkeypatch, failure):
    out = tmp_path / "report.html"
    out.write_text("old report", encoding="utf-8")
    points = _points()
    if failure == "bad points":
        points[4]["bound_s"] = 0
    elif failure == "chart":
        monkeypatch.setattr(report, "_png", _boom)
    else:  # fails after the temp file is written, at the final rename
        monkeypatch.setattr(report.os, "replace", _boom)
    with pytest.raises((ValueError, RuntimeError)):
        render_report(points, out)
    monkeypatch.undo()
    assert out.read_text(encoding="utf-8") == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temp file left


def test_overwrites_existing_file(tmp_path):
    out = tmp_path / "sub" / "report.html"
    out.parent.mkdir()
    out.write_text("old report", encoding="utf-8")
    render_report(_points()[:1], str(out))
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]
