"""Formula templates (`simulator.templates`): many dense/causal sweep rows share one formula over per-row work
terms. A template's formulas equal, row by row, what pricing the row alone on symbolic inputs gives
(`sweep.formula_rows`: the model's own scalar path), at the written figures and after any edit of the inputs;
the Pareto fronts the templates take their longest and shortest CTAs from equal brute force; the array-valued
expressions refuse to branch; a workbook of template rows recalculates in LibreOffice."""
from __future__ import annotations

import math
import re

import numpy as np
import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_checks import invoke
from spreadsheet import recalculate

from attnsim.simulator import sweep as S
from attnsim.simulator.formulas import Expr, Renderer, clear_interned
from attnsim.simulator.vectorized import TERM_CLASSES, _front, _terms


# -- the Pareto fronts ------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.data())
def test_front_is_the_pareto_front_by_brute_force(data):
    """_terms' fronts (in batches of 64 classes) against the non-dominated classes found by comparing every
    pair, per configuration: the longest CTA's (no class has at least as many of both) and the shortest's."""
    n = data.draw(st.integers(1, 4))
    c = data.draw(st.sampled_from([1, 2, 3, 5, 9, 70, 140]))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    hi = data.draw(st.sampled_from([2, 5, 1000]))
    classes = [(rng.integers(0, hi, n), rng.integers(0, hi, n), rng.random(n) < 0.8) for _ in range(c)]
    got = _terms(np.ones(n, dtype=np.int64), np.ones(n), 0, 0, 0, 0, classes)
    for tag, sign in (("max", 1), ("min", -1)):
        for j in range(n):
            pts = {(int(f[j]), int(p[j])) for f, p, live in classes if live[j]}
            front = {(a, b) for a, b in pts if not any(sign * (a2 - a) >= 0 and sign * (b2 - b) >= 0 and (a2, b2) != (a, b)
                                                       for a2, b2 in pts)}
            count = int(got[f"_n{tag}"][j])
            if len(front) > TERM_CLASSES:
                assert count == TERM_CLASSES + 1  # more than a template holds: the row is priced alone
                continue
            assert count == len(front)
            assert {(int(got[f"_{tag}f"][i][j]), int(got[f"_{tag}p"][i][j])) for i in range(count)} == front


def test_front_of_duplicates_and_dead_classes():
    """By hand: equal classes count once; a class no CTA has (dead) is never on a front; none live: empty."""
    f, p, live, count = _front(np.array([[3], [3], [1], [9]]), np.array([[1], [1], [4], [9]]),
                               np.array([[True], [True], [True], [False]]), 1)
    assert sorted((int(a), int(b)) for a, b, v in zip(f[:, 0], p[:, 0], live[:, 0]) if v) == [(1, 4), (3, 1)]
    assert count.tolist() == [2]
    f, p, live, count = _front(np.array([[3], [3], [1], [9]]), np.array([[1], [1], [4], [9]]),
                               np.array([[True], [True], [True], [False]]), -1)
    assert [(int(a), int(b)) for a, b, v in zip(f[:, 0], p[:, 0], live[:, 0]) if v] == [(1, 4), (3, 1)]
    assert _front(np.array([[3]]), np.array([[1]]), np.array([[False]]), -1)[3].tolist() == [0]


# -- expressions over columns ---------------------------------------------------------------------
def test_column_expressions_compute_elementwise_and_refuse_branches():
    clear_interned()
    x = Expr.input("x", 2.0)
    col = Expr.column("n", np.array([1, 4, 7]))
    e = np.maximum(col * x + 1, 9.0) / x - np.ceil(col / 3)
    want = np.maximum(np.array([1, 4, 7]) * 2.0 + 1, 9.0) / 2.0 - np.ceil(np.array([1, 4, 7]) / 3)
    assert e.value.tolist() == want.tolist()
    assert e.evaluate({"x": 4.0}).tolist() == (np.maximum(np.array([1, 4, 7]) * 4.0 + 1, 9.0) / 4.0
                                               - np.ceil(np.array([1, 4, 7]) / 3)).tolist()
    for branch in (lambda: bool(e), lambda: e < 1, lambda: float(e), lambda: e == 3.0):
        with pytest.raises(TypeError, match="per-row columns"):
            branch()
    r = Renderer(lambda name: name, lambda s: f"S{s}", col=lambda name, i: "{%d}" % (i + 1))
    r.layout([e])
    text = r.formula(e)
    assert text == "MAX({1}*x+1,9)/x-ROUNDUP({1}/3,0)"
    assert text.format(0, "(-2)") == "MAX((-2)*x+1,9)/x-ROUNDUP((-2)/3,0)"
    other = Expr.column("n", np.array([5, 5, 5]))  # the same name, other values: a column of its own
    r = Renderer(lambda name: name, lambda s: f"S{s}", col=lambda name, i: "{%d}" % (i + 1))
    r.layout([col + other])
    assert len(r.columns) == 2 and r.formula(col + other).format(0, *[v[1] for v in r.columns]) == "4+5"


# -- templates against the per-row formulas -------------------------------------------------------
# MHA, GQA and MQA shapes; queries fewer than, as many as and more than the keys (bottom-right causal);
# ragged lengths; the default families (FA2, FA3, FA4) and Triton's autotuned tiles
SPEC = S.Spec(variants=["gqa"], hardware=["h100", "a100", "b200"], kernels=[None, "triton"],
              phases=["prefill", "train", "decode"], seqlen_q=[100, 777, 4096], seqlen_kv=[1000, 4096],
              causal=[False, True], batch=[1, 8], heads_q=[32], heads_kv=[32, 8, 1])


@pytest.fixture(scope="module")
def priced():
    table = S.run(SPEC, origin=True)
    sym_hw, sym_cal = S.symbolic_inputs(SPEC, table)
    rows = np.arange(len(table["time_s"]))
    templates, rest = S.formula_templates(SPEC, table, sym_hw, sym_cal, rows)
    covered = np.concatenate([t.rows for t in templates])
    single = S.formula_rows(SPEC, table, sym_hw, sym_cal, rows=covered.tolist())
    alone = dict(zip(covered.tolist(), single))
    inputs = {}
    for t in templates:
        for e in [t.bound] + [k for _, k in t.kernels]:
            if isinstance(e, Expr):
                inputs.update(e.inputs())
    return table, templates, rest, alone, inputs


def test_every_closed_form_row_has_a_template(priced):
    table, templates, rest, alone, _ = priced
    assert len(rest) == 0 and len(alone) == len(table["time_s"]) > 1000
    # far fewer formulas than rows (243-260 of 1,296 with the shipped calibrations: Triton's calibrated tile choices
    # set how many classes its rows fall in)
    assert 20 < len(templates) < len(alone) / 4
    assert {k for t in templates for k, _ in t.kernels} == {"attn_fwd", "attn_bwd", "bwd_preprocess", "bwd_dq_convert",
                                                              "bwd_dkv_reduce", "attn_decode", "decode_combine"}


def _evaluate(e, env, n):
    return np.broadcast_to(np.asarray(e.evaluate(env) if isinstance(e, Expr) else e, dtype=float), (n,))


@settings(max_examples=12, deadline=None)
@given(st.data())
def test_templates_equal_the_rows_priced_alone_under_any_edit(priced, data):
    """Edit any inputs by any factor in [1/4, 4] (an overlap stays in [0, 1]): each template row's kernel
    times, bound and dense time equal the row's own formulas (the model's scalar path) with the same edit."""
    table, templates, _, alone, inputs = priced
    picked = data.draw(st.lists(st.sampled_from(sorted(inputs)), min_size=1, max_size=6, unique=True))
    scale = {}
    for name in picked:  # the edit: a factor on the input's written value
        v = inputs[name] * data.draw(st.floats(0.25, 4.0))
        scale[name] = min(v, 1.0) if name.endswith(".overlap") else v
    for t in templates:
        n = len(t.rows)
        own = [alone[i] for i in t.rows.tolist()]
        kernels = [_evaluate(e, scale, n) for _, e in t.kernels]
        for j, f in enumerate(own):
            assert [k for k, _ in f.kernels] == [k for k, _ in t.kernels]
            for got, (_, e) in zip(kernels, f.kernels):
                want = e.evaluate(scale) if isinstance(e, Expr) else e
                assert math.isclose(got[j], want, rel_tol=1e-9), (t.rows[j], got[j], want)
            assert math.isclose(_evaluate(t.bound, scale, n)[j], f.bound.evaluate(scale), rel_tol=1e-9)
            if t.dense is not None:
                assert math.isclose(_evaluate(t.dense, scale, n)[j], f.dense.evaluate(scale), rel_tol=1e-9)
            else:
                assert f.dense is None


# -- a workbook of template rows in LibreOffice -------------------------------------------------------
def test_a_workbook_of_templates_recalculates_in_libreoffice(tmp_path):
    """Causal rows without a non-causal twin (their dense baseline a template formula), GQA training
    (the dK/dV reduction), split decode (the combine kernel), Triton's autotuned tiles and ragged lengths:
    stripped of cached values, LibreOffice recomputes every formula cell to the value attnsim stored; after
    halving A100's HBM bandwidth, every time_s equals the templates' Python evaluation of the same edit."""
    out = tmp_path / "t.xlsx"
    args = ["--variant", "gqa", "--hw", "a100,h100", "--kernel", "fa2,triton", "--phase", "prefill,train,decode",
            "--causal", "true", "--seqlen", "777,4096", "--batch", "1,3", "--kv-heads", "8"]
    res = invoke("sweep", *args, "-o", out)
    assert res.exit_code == 0, res.output
    wb = openpyxl.load_workbook(out)
    edited = {r[0].value: r for r in wb["Inputs"].iter_rows() if r[0].value and r[1].value is not None}
    hbm = "a100_sxm4_80gb.hbm_bandwidth_bytes_per_s"
    written = edited[hbm][1].value
    wb.save(tmp_path / "stripped.xlsx")
    edited[hbm][1].value = written / 2
    wb.save(tmp_path / "edited.xlsx")
    stripped, changed = recalculate([tmp_path / "stripped.xlsx", tmp_path / "edited.xlsx"], tmp_path / "out",
                                    tmp_path / "profile")
    cached = openpyxl.load_workbook(out, data_only=True)
    lo = openpyxl.load_workbook(stripped, data_only=True)
    n = 0
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for c in row:
                if isinstance(c.value, str) and c.value.startswith("="):
                    want, got = cached[ws.title][c.coordinate].value, lo[ws.title][c.coordinate].value
                    # abs_tol: LibreOffice snaps a difference within a few ulps of its operands to 0 (the
                    # unfilled share of the last wave, ROUNDUP(w,0)-w, of a whole number of waves)
                    assert isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-15), (
                        c.coordinate, got, want)
                    n += 1
    assert n > 48 * 8
    # Inputs' "rows reading it": the rows whose own formulas name the input's cell (a template counts each row)
    named = {}
    for row in wb["gqa"].iter_rows(min_row=2):
        cells = {ref for c in row if isinstance(c.value, str) for ref in re.findall(r"Inputs!\$B\$(\d+)", c.value)}
        for ref in cells:
            named[int(ref)] = named.get(int(ref), 0) + 1
    listed = {r[1].row: r[5].value for r in wb["Inputs"].iter_rows(min_row=2) if r[0].value and r[1].value is not None}
    assert listed and all(named.get(row, "none: editing it changes nothing here") == v for row, v in listed.items())
    assert max(named.values()) == 24  # a GPU's clock: every one of its 24 rows reads it
    spec = S.Spec(variants=["gqa"], hardware=["a100", "h100"], kernels=["fa2", "triton"],
                  phases=["prefill", "train", "decode"], causal=[True], seqlen_q=[777, 4096], batch=[1, 3],
                  heads_kv=[8])
    table = S.run(spec, origin=True)
    sym_hw, sym_cal = S.symbolic_inputs(spec, table)
    templates, rest = S.formula_templates(spec, table, sym_hw, sym_cal, np.arange(len(table["time_s"])))
    assert len(rest) == 0 and any(t.dense is not None for t in templates)
    assert any(k == "decode_combine" for t in templates for k, _ in t.kernels)
    after = openpyxl.load_workbook(changed, data_only=True)["gqa"]
    head = [c.value for c in after[1]]
    moved = 0
    for t in templates:
        time_s = sum(_evaluate(e, {hbm: written / 2}, len(t.rows)) for _, e in t.kernels)
        for j, i in enumerate(t.rows.tolist()):
            got = dict(zip(head, next(after.iter_rows(min_row=i + 2, max_row=i + 2, values_only=True))))["time_s"]
            assert math.isclose(got, time_s[j], rel_tol=1e-9), (i, got, time_s[j])
            moved += not math.isclose(got, table["time_s"][i], rel_tol=1e-6)
    assert moved > 10  # the edit reached the A100 rows
