"""attnsim sweep: the list-and-range grammar (hand cases, brute force, hypothesis), every row equal to
predict, the writers, and the refusals (exit 2, one line, no half-written file)."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_checks import assert_one_line_error, invoke

from attnsim import predict_variant
from attnsim.simulator import sweep as S
from attnsim.simulator.errors import AttnsimError


@pytest.mark.parametrize("text, tokens, expected", [
    ("8", False, [8]),
    ("1,8,8", False, [1, 8]),
    ("1..16", False, [1, 2, 4, 8, 16]),
    ("3..20", False, [3, 6, 12]),
    ("1..10:3", False, [1, 4, 7, 10]),
    ("1k..8k", True, [1024, 2048, 4096, 8192]),
    ("1M", True, [1 << 20]),
    ("512,1k..2k", True, [512, 1024, 2048]),
    ("4k..6k:1k", True, [4096, 5120, 6144]),
])
def test_values_by_hand(text, tokens, expected):
    assert S.values("seqlen", text, tokens=tokens) == expected


@pytest.mark.parametrize("text, needle", [
    ("5..1", "is empty"), ("1..x", "not a whole number"), ("", "is empty"), ("1,,2", "not a whole number"),
    ("0..4", "is empty"), ("1..9:0", "at least 1"), ("1k", "not a whole number"), ("-3", "not a whole number"),
    ("1..100000000:1", "at most"),
])
def test_values_refusals(text, needle):
    with pytest.raises(AttnsimError, match=needle):
        S.values("batch", text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789.,:kM -x", max_size=16))
def test_any_list_text_parses_or_says_why(text):
    try:
        out = S.values("seqlen", text, tokens=True)
    except AttnsimError as e:
        assert "\n" not in str(e)
        return
    assert out and all(isinstance(v, int) and v >= 1 for v in out) and len(set(out)) == len(out)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.integers(0, 5000), st.integers(1, 700))
def test_ranges_equal_brute_force(lo, extra, step):
    hi = lo + extra
    assert S.values("b", f"{lo}..{hi}:{step}") == list(range(lo, hi + 1, step))
    doubling, v = [], lo
    while v <= hi:
        doubling.append(v)
        v *= 2
    assert S.values("b", f"{lo}..{hi}") == doubling


def test_alternatives_and_causal():
    assert S.alternatives("window_size=1024,0;4096,0") == ("window_size", ["1024,0", "4096,0"])
    assert S.causal_values("both") == [False, True]
    for bad in ("window_size", "window_size=1;;2", "=3"):
        with pytest.raises(AttnsimError):
            S.alternatives(bad)
    with pytest.raises(AttnsimError, match="false, true, both"):
        S.causal_values("maybe")


CASES = [
    dict(variants=["mha", "gqa", "swa", "mla"], hardware=["h100", "b200"], batch=[1, 3], seqlen_q=[1000, 4096],
         causal=[False, True], params={"window_size": ["512,0", "1024,1024"]}),
    dict(variants=["gqa", "mla"], hardware=["a100"], phases=["decode"], batch=[1, 16], seqlen_q=[8192, 32768],
         heads_kv=[None]),
    dict(variants=["mha"], hardware=["h100"], phases=["train"], heads_q=[16, 32], head_dim_qk=[64, 128],
         seqlen_q=[2048]),
    dict(variants=["gna"], hardware=["h100"], params={"token_shape": ["32x32"], "kernel_size": ["8x8", "16x16"]}),
    # eager's speedup is over eager dense attention, as predict prints it (not over the fused default)
    dict(variants=["eager", "swa"], hardware=["h100", "rtx4090"], causal=[True], seqlen_q=[1024, 2048],
         params={"window_size": ["256,0"]}),
    # kv heads other than gqa's default 8 (its causal rows' dense baseline resolves the row's own heads)
    dict(variants=["gqa"], hardware=["h100"], heads_q=[8, 12], heads_kv=[4], causal=[False, True], seqlen_q=[2049]),
]


@pytest.mark.parametrize("case", CASES, ids=["prefill-mixed", "decode", "train", "gna", "eager", "gqa-kv-heads"])
def test_every_row_equals_predict(case):
    out = S.run(S.Spec(**case))
    n = len(out["time_s"])
    assert n == S.Spec(**case).rows
    for i in range(n):
        row = {k: v[i] for k, v in out.items()}
        params = {k: row[k] for k in case.get("params", {}) if row[k] is not None}
        kw = dict(batch=int(row["batch"]), heads=int(row["heads_q"]), causal=bool(row["causal"]), phase=row["phase"],
                  dtype=row["dtype"])
        if row["phase"] == "decode":
            kw["seqlen_kv"] = int(row["seqlen_kv"])
        elif "token_shape" not in params:
            kw["seqlen"] = int(row["seqlen_q"])
        if case.get("head_dim_qk"):
            kw["head_dim"] = int(row["head_dim_qk"])
        if case.get("heads_kv", [None]) != [None]:
            kw["kv_heads"] = int(row["heads_kv"])
        p = predict_variant(row["hardware"], row["variant"], params or None, **kw)
        w = p.workload
        assert row["time_s"] == pytest.approx(p.time_s, rel=1e-9), row
        assert row["bound_s"] == pytest.approx(p.bound.time_s, rel=1e-9) and row["bound"] == p.bound.unit
        assert int(row["useful_flops"]) == p.useful_flops and int(row["flops"]) == p.flops
        assert int(row["kv_cache_bytes"]) == p.kv_cache_bytes
        assert int(row["memory_bytes"]) == p.memory_bytes and bool(row["fits"]) == p.fits
        assert (row["seqlen_q"], row["seqlen_kv"], row["heads_q"], row["heads_kv"], row["head_dim_qk"],
                row["head_dim_v"]) == (w.seqlen_q, w.seqlen_kv, w.heads_q, w.heads_kv, w.head_dim_qk, w.head_dim_v)
        assert row["kernel"] == p.family.name and bool(row["calibrated"]) == p.calibrated
        if p.speedup:
            assert row["speedup_vs_dense"] == pytest.approx(p.speedup["time"], rel=1e-9)
        else:
            assert np.isnan(row["speedup_vs_dense"])


def test_p_names_go_to_the_variants_that_have_them():
    spec = S.Spec(variants=["mha", "swa"], hardware=["h100"], params={"window_size": ["512,0", "1024,0"]})
    assert spec.rows == 1 + 2  # mha once, swa per alternative
    with pytest.raises(AttnsimError, match="none of the variants"):
        S.Spec(variants=["mha"], hardware=["h100"], params={"window_size": ["1"]}).groups()


# -- the command --------------------------------------------------------------------------------------
ARGS = ["sweep", "--variant", "gqa,swa", "--hw", "h100", "--seqlen", "1k..4k", "--causal", "both",
        "-p", "window_size=512,0;1024,0"]


def _csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_writers_agree(tmp_path):
    import pyarrow.parquet as pq
    paths = {ext: tmp_path / f"s.{ext}" for ext in ("csv", "json", "parquet")}
    for p in paths.values():
        r = invoke(*ARGS, "-o", str(p))
        assert r.exit_code == 0, r.output
    rows = _csv_rows(paths["csv"])
    js = json.loads(paths["json"].read_text())
    pa = pq.read_table(paths["parquet"]).to_pylist()
    assert len(rows) == len(js) == len(pa) == 3 * 2 * (1 + 2)
    for a, b, c in zip(rows, js, pa):
        assert float(a["time_s"]) == pytest.approx(b["time_s"]) == pytest.approx(c["time_s"])
        assert a["variant"] == b["variant"] == c["variant"]
        assert (a["window_size"] or None) == b["window_size"] == c["window_size"]
    assert js[0]["speedup_vs_dense"] is None and pa[0]["speedup_vs_dense"] is None  # gqa: no dense baseline
    assert all(r["speedup_vs_dense"] for r in js if r["variant"] == "swa")


def test_stdout_is_csv():
    r = invoke("sweep", "--seqlen", "1k,2k")
    assert r.exit_code == 0
    lines = r.stdout.strip().split("\n")
    assert len(lines) == 3 and lines[0].startswith('"variant","hardware"')


@pytest.mark.parametrize("args, needle", [
    (["--seqlen", "5..1"], "is empty"),
    (["--seqlen", "1..x"], "not a whole number"),
    (["--batch", ""], "is empty"),
    (["-o", "x.ods"], "attnsim writes"),
    (["-o", "noext"], "attnsim writes"),
    (["--variant", "mha,"], "empty name"),
    (["--variant", "nope"], "nope"),
    (["--hw", "h100,h999"], "h999"),
    (["-p", "window_size=1"], "none of the variants"),
    (["--causal", "sometimes"], "false, true, both"),
    (["--batch", "1..2048:1", "--seqlen", "1..4096:1"], "--force"),
    (["--uncalibrated", "--calibration", "x.json"], "contradict"),
    (["--seqlen", "1..4:"], "no step after ':'"),
    (["--hw", "8xh100-nvlink"], "is a cluster"),
    (["--variant", "swa", "-p", "window_size=abc"], "sweep (swa, h100_sxm5"),
    (["--variant", "gna", "--token-shape", "8x8", "-p", "token_shape=8x8"], "give the token grid once"),
])
def test_refusals(args, needle, tmp_path):
    keep = tmp_path / "keep.csv"
    keep.write_text("precious\n")
    out = ["-o", str(keep)] if "-o" not in args else []
    r = invoke("sweep", *args, *out)
    assert_one_line_error(r, needle)
    assert keep.read_text() == "precious\n"  # nothing already written is lost
    assert sorted(os.listdir(tmp_path)) == ["keep.csv"]  # and no temporary file is left


def test_an_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    from attnsim.cli import sweep as cli_sweep

    def broken(cols, path):
        with open(path, "w") as f:
            f.write("half")
        raise KeyboardInterrupt
    monkeypatch.setitem(cli_sweep.WRITER_FUNCS, ".csv", broken)
    out = tmp_path / "s.csv"
    r = invoke("sweep", "--seqlen", "1k", "-o", str(out))
    assert r.exit_code != 0
    assert not out.exists() and os.listdir(tmp_path) == []


def test_a_missing_output_folder_is_one_line(tmp_path):
    assert_one_line_error(invoke("sweep", "-o", str(tmp_path / "nodir" / "x.csv")), "does not exist")


def test_token_shape_alternatives():
    r = invoke("sweep", "--variant", "gna", "--token-shape", "32x32;16x16", "-p", "kernel_size=8x8")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(r.stdout.splitlines()))
    assert [(x["token_shape"], x["seqlen_q"]) for x in rows] == [("32x32", "1024"), ("16x16", "256")]


def test_skip_unsupported_leaves_out_refused_groups_and_says_so():
    r = invoke("sweep", "--kernel", "fa2,fa3", "--hw", "h100,a100", "--seqlen", "1k", "--skip-unsupported")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(r.stdout.splitlines()))
    assert [(x["hardware"], x["kernel"]) for x in rows] == [("h100_sxm5", "fa2"), ("h100_sxm5", "fa3"),
                                                           ("a100_sxm4_80gb", "fa2")]
    assert "skipped (mha, a100_sxm4_80gb, fa3" in r.stderr and "does not run on" in r.stderr
    assert_one_line_error(invoke("sweep", "--kernel", "fa3", "--hw", "a100"), "does not run on")
    r = invoke("sweep", "--kernel", "fa3", "--hw", "a100", "--skip-unsupported")
    assert r.exit_code == 2 and "nothing to write" in r.stderr


def test_column_order_is_the_documented_one():
    out = S.run(S.Spec(variants=["swa"], hardware=["h100"], params={"window_size": ["512,0"]}))
    assert list(out) == list(S.COLUMNS) + ["window_size"] + list(S.RESULT_COLUMNS)


def test_count_columns_are_integers():
    """Bytes, FLOPs, tiles and CTAs are whole numbers in every path (closed forms, grouped masks, per row)."""
    out = S.run(S.Spec(variants=["mha", "swa", "mla"], hardware=["h100"], phases=["prefill", "train", "decode"],
                       causal=[False, True], seqlen_q=[1000, 4096]))
    for k in ("flops", "useful_flops", "hbm_bytes", "memory_bytes", "kv_cache_bytes", "ctas", "tiles_full", "splits"):
        assert out[k].dtype.kind == "i", (k, out[k].dtype)
