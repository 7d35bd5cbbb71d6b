"""`attnsim plot`: the roofline of a prediction and the curves of a sweep file (docs/design.md section 14).

The figures' content is checked against numbers computed here by hand: each kernel's point from the
Prediction's own kernels, each ceiling from the hardware profile's figures."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap

import pytest

from cli_checks import assert_one_line_error, invoke

from attnsim.cli.plot import read_table, roofline_figure, sweep_figure
from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.problem import predict_problem, resolve


def _pred(hw="h100", kernel=None, **shape):
    return predict_problem(resolve("mha", (), kernel=kernel, hw=hw, **shape))


def _gid(ax, gid):
    found = [a for a in ax.get_children() if a.get_gid() == gid]
    assert len(found) == 1, (gid, [a.get_gid() for a in ax.get_children() if a.get_gid()])
    return found[0]


def _tensor_peak(hw, dtype, accum):
    """By hand: FLOP/clk/SM x SMs x the maximum clock (the bound's)."""
    t = next(t for t in hw.tensor if (t.dtype, t.accum) == (dtype, accum))
    return t.flops_per_clk_per_sm * hw.sm_count * hw.clock_max_hz


def _exp_rate(hw):
    """By hand: exps/s of the SFU plus exp2 emulated on the FP32 pipes (FMA = 1 op: FLOPs / 2), as the bound."""
    clk = hw.sm_count * hw.clock_max_hz
    return hw.exp_ops_per_clk_per_sm * clk + hw.fp32_flops_per_clk_per_sm / 2 * clk / hw.exp2_emulation_fp32_ops


# -- the roofline -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext, magic", [("png", b"\x89PNG\r\n\x1a\n"), ("svg", b"<svg"), ("pdf", b"%PDF")])
def test_roofline_writes_the_figure(tmp_path, ext, magic):
    out = tmp_path / f"fig.{ext}"
    r = invoke("plot", "roofline", "--variant", "gqa", "--seqlen", "2048", "--causal", "-o", out)
    assert r.exit_code == 0, r.output
    assert out.exists() and out.stat().st_size > 1000
    assert magic in out.read_bytes()[:400]
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary left behind
    assert f"wrote {out}" in r.stdout


def test_roofline_points_and_ceilings_by_hand():
    """Train on an A100 (a profile with an L2 bandwidth): forward, backward and two kernels without FLOPs."""
    pred = _pred("a100", phase="train", seqlen=2048)
    hw = load_hardware("a100")
    fig = roofline_figure(pred)
    ax = fig.axes[0]
    drawn = [k for k in pred.kernels if k.flops > 0]
    assert {k.role for k in drawn} == {"forward", "backward"} and len(drawn) < len(pred.kernels)
    pts = _gid(ax, "kernels").get_offsets()
    assert pts.ravel().tolist() == pytest.approx([v for k in drawn for v in (k.flops / k.hbm_bytes,
                                                                             k.flops / k.time_s)], rel=1e-12)
    l2 = _gid(ax, "kernels:l2").get_offsets()
    assert l2.ravel().tolist() == pytest.approx([v for k in drawn for v in (k.flops / k.l2_bytes,
                                                                            k.flops / k.time_s)], rel=1e-12)
    # each point's label names the kernel and its limiting unit; the kernels without FLOPs are listed below
    texts = [t.get_text() for t in ax.texts]
    for k in drawn:
        assert f"{k.name} ({k.bound})" in texts
    notes = _gid(fig.axes[1], "notes").get_text()
    for k in pred.kernels:
        if k.flops == 0:
            assert k.name in notes
    # ceilings at the maximum clock, from the profile's figures
    tensor = _gid(ax, "ceiling:tensor:bf16/fp32")
    assert list(tensor.get_ydata()) == pytest.approx([_tensor_peak(hw, "bf16", "fp32")] * 2, rel=1e-12)
    d = 128  # head dim: forward 2d (QK^T) + 2d (PV) FLOPs per exp; the backward 2(3d + 2d) (S recomputed)
    for gid, per_exp in (("ceiling:exp:forward", 4 * d), ("ceiling:exp:backward", 10 * d)):
        assert list(_gid(ax, gid).get_ydata()) == pytest.approx([per_exp * _exp_rate(hw)] * 2, rel=1e-9)
    for gid, bw in (("roof:hbm", hw.hbm_bandwidth_bytes_per_s), ("roof:l2", hw.l2_bandwidth_bytes_per_s)):
        line = _gid(ax, gid)
        assert [y / x for x, y in zip(line.get_xdata(), line.get_ydata())] == pytest.approx([bw, bw], rel=1e-12)
    assert hw.name in ax.get_title() and "train" in ax.get_title()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("exp (forward): 512 FLOP/exp x ") for t in legend), legend


def test_roofline_without_l2_and_with_two_accumulate_types():
    """An RTX 4090 (no sourced L2 bandwidth) with QK^T accumulated in fp16: a tensor ceiling for each accumulate."""
    pred = _pred("rtx4090", kernel="triton", dtype="fp16", qk_accum="fp16", seqlen=1024)
    hw = load_hardware("rtx4090")
    ax = roofline_figure(pred).axes[0]
    gids = {a.get_gid() for a in ax.get_children() if a.get_gid()}
    assert "roof:l2" not in gids and "kernels:l2" not in gids
    for accum in ("fp16", "fp32"):
        line = _gid(ax, f"ceiling:tensor:fp16/{accum}")
        assert list(line.get_ydata()) == pytest.approx([_tensor_peak(hw, "fp16", accum)] * 2, rel=1e-12)
    assert _tensor_peak(hw, "fp16", "fp16") == 2 * _tensor_peak(hw, "fp16", "fp32")


def test_roofline_eager_kernels_at_one_spot_share_a_label():
    pred = _pred(kernel="eager", seqlen=1024)
    ax = roofline_figure(pred).axes[0]
    gemms = [k for k in pred.kernels if k.flops > 0]
    assert len(gemms) == 2 and len(_gid(ax, "kernels").get_offsets()) == 2
    assert not any(a.get_gid() and a.get_gid().startswith("ceiling:exp") for a in ax.get_children())  # exps: softmax
    assert any(", ".join(k.name for k in gemms) in t.get_text() for t in ax.texts)


# -- sweep curves ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep_files(tmp_path_factory):
    """One sweep (mha and swa with two windows, 1k..8k tokens) in the three formats attnsim sweep writes."""
    d = tmp_path_factory.mktemp("sweep")
    out = {}
    for ext in ("csv", "parquet", "json"):
        out[ext] = d / f"s.{ext}"
        r = invoke("sweep", "--variant", "mha,swa", "--seqlen", "1k..8k", "-p", "window_size=512,0;1024,0",
                   "-o", out[ext])
        assert r.exit_code == 0, r.output
    return out


def _expected(path, y):
    """The curves by hand from the CSV (the csv module): (variant, window) -> sorted (seqlen_q, y)."""
    curves = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row[y] == "":
                continue
            key = (row["variant"], row["window_size"] or None)
            curves.setdefault(key, []).append((int(row["seqlen_q"]), float(row[y])))
    return {f"variant={v}" + (f", window_size={w}" if w else ""): sorted(p) for (v, w), p in curves.items()}


@pytest.mark.parametrize("y", ["time_s", "speedup_vs_dense"])
@pytest.mark.parametrize("ext", ["csv", "parquet", "json"])
def test_sweep_curves_equal_the_file(sweep_files, ext, y):
    fig = sweep_figure(read_table(str(sweep_files[ext])), y=y if y != "time_s" else None)
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines() if ln.get_gid() == "curve"]
    got = {ln.get_label(): list(zip(ln.get_xdata().tolist(), ln.get_ydata().tolist())) for ln in lines}
    want = _expected(sweep_files["csv"], y)
    assert len(lines) == (3 if y == "time_s" else 2)  # mha has no dense baseline: no speedup curve
    assert got.keys() == want.keys()
    for label, pts in want.items():
        assert [x for x, _ in got[label]] == [x for x, _ in pts]
        assert [v for _, v in got[label]] == pytest.approx([v for _, v in pts], rel=1e-12)
    assert ax.get_xlabel() == "seqlen_q" and ax.get_xscale() == "log"  # seqlen_kv = seqlen_q: not a group


def test_a_folder_of_parquet_parts_reads_as_one_table(sweep_files, tmp_path):
    """`attnsim sweep --engine dask` writes a folder of part-NNNNN.parquet files: read in order, as one file."""
    import pyarrow.parquet as pq
    table = pq.read_table(sweep_files["parquet"])
    folder = tmp_path / "parts.parquet"
    folder.mkdir()
    pq.write_table(table.slice(0, 5), folder / "part-00000.parquet")
    pq.write_table(table.slice(5), folder / "part-00001.parquet")
    assert read_table(str(folder)) == read_table(str(sweep_files["parquet"]))


def test_sweep_command_writes_and_takes_options(sweep_files, tmp_path):
    out = tmp_path / "c.svg"
    r = invoke("plot", "sweep", sweep_files["parquet"], "--speedup", "--by", "window_size", "--liny", "-o", out)
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 1000 and b"<svg" in out.read_bytes()[:400]
    assert "2 curve(s) from 12 rows" in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.svg"]
    fig = sweep_figure(read_table(str(sweep_files["csv"])), x="seqlen_kv", y="bound_s", by=["window_size"],
                       logy=False)
    assert fig.axes[0].get_xlabel() == "seqlen_kv" and fig.axes[0].get_yscale() == "linear"
    assert len(fig.axes[0].get_lines()) == 3


# -- refusals: exit 2, one line -------------------------------------------------------------------------------
def test_roofline_refusals(tmp_path):
    assert_one_line_error(invoke("plot", "roofline", "-o", tmp_path / "f.xyz"), "matplotlib writes", ".png", ".xyz")
    assert_one_line_error(invoke("plot", "roofline", "-o", tmp_path / "noext"), "without extension")
    assert_one_line_error(invoke("plot", "roofline"), "--output")
    assert_one_line_error(invoke("plot", "roofline", "--hw", "8xh100-nvlink", "-o", tmp_path / "f.png"),
                          "cluster", "h100_sxm5")
    assert_one_line_error(invoke("plot", "roofline", "--variant", "bogus", "-o", tmp_path / "f.png"), "bogus")
    assert_one_line_error(invoke("plot", "roofline", "-o", tmp_path / "nodir" / "f.png"), "cannot write")
    assert list(tmp_path.iterdir()) == []


def test_sweep_refusals(sweep_files, tmp_path):
    s, png = sweep_files["csv"], tmp_path / "f.png"
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text(s.read_text().splitlines()[0] + "\n")
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "obj.json").write_text('{"a": 1}')
    (tmp_path / "bad.parquet").write_bytes(b"junk")
    (tmp_path / "s.txt").write_text(s.read_text())
    cases = [((tmp_path / "missing.csv",), ("does not exist",)),
             ((tmp_path / "empty.csv",), ("empty.csv", "Empty CSV")),
             ((tmp_path / "header.csv",), ("header.csv", "no rows")),
             ((tmp_path / "bad.json",), ("bad.json", "not a readable sweep file")),
             ((tmp_path / "obj.json",), ("a JSON list of objects",)),
             ((tmp_path / "bad.parquet",), ("bad.parquet", "not a readable sweep file")),
             ((tmp_path / "s.txt",), (".csv, .parquet, .json", ".txt")),
             ((s, "--x", "nope"), ("--x nope", "no such column", "seqlen_q")),
             ((s, "--y", "variant"), ("--y variant", "not numeric")),
             ((s, "--by", "variant,nope"), ("--by nope", "no such column")),
             ((s, "--by", "seqlen_q"), ("x axis",)),
             ((s, "--by", "variant"), ("rows at seqlen_q=1024", "add window_size to --by")),
             ((s, "--speedup", "--y", "time_s"), ("--speedup", "drop one"))]
    for args, needles in cases:
        assert_one_line_error(invoke("plot", "sweep", *args, "-o", png), *needles)
    assert_one_line_error(invoke("plot", "sweep", s, "-o", tmp_path / "f.doc"), "matplotlib writes", ".doc")
    dense = tmp_path / "dense.csv"
    with open(s) as f, open(dense, "w") as g:
        g.writelines(line for line in f if not line.startswith('"swa"'))
    assert_one_line_error(invoke("plot", "sweep", dense, "--speedup", "-o", png), "speedup_vs_dense", "empty",
                          "mask variants")
    assert not png.exists()


def test_a_failed_write_leaves_nothing_half_written(sweep_files, tmp_path, monkeypatch):
    """The figure goes to a temporary name, renamed when complete: a writer failing midway leaves the old
    file as it was and no temporary."""
    from matplotlib.figure import Figure
    out = tmp_path / "f.png"
    out.write_bytes(b"old")

    def broken(self, fname, **kw):
        with open(fname, "wb") as f:
            f.write(b"half")
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(Figure, "savefig", broken)
    assert_one_line_error(invoke("plot", "sweep", sweep_files["csv"], "-o", out), "could not write", "disk on fire")
    assert out.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]


def test_help_and_predict_do_not_import_matplotlib():
    code = textwrap.dedent("""
        import sys
        from click.testing import CliRunner
        from attnsim.cli import cli
        for args in (["--help"], ["plot", "--help"], ["plot", "roofline", "--help"], ["plot", "sweep", "--help"],
                     ["predict", "--seqlen", "1024"]):
            r = CliRunner().invoke(cli, args)
            assert r.exit_code == 0, (args, r.output)
        r = CliRunner().invoke(cli, ["--help"])
        assert "  plot " in r.output
        print(sorted(m for m in ("matplotlib", "pyarrow") if m in sys.modules))
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().replace("'", '"')) == []


def test_too_many_curves_is_refused(tmp_path):
    src = tmp_path / "mix.csv"
    r = invoke("sweep", "--variant", "mha,gqa", "--hw", "h100,b200", "--phase", "prefill,decode", "--batch", "1..16:1",
               "--seqlen", "1k,2k", "--heads", "16,32", "-o", str(src))
    assert r.exit_code == 0, r.output
    assert_one_line_error(invoke("plot", "sweep", str(src), "-o", str(tmp_path / "f.png")), "curves (at most")
