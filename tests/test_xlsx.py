"""attnsim sweep -o FILE.xlsx: the workbook's rows are the sweep's, its formulas recompute in a real
spreadsheet engine (LibreOffice) to attnsim's own numbers — as written, and after editing Inputs cells, where
they equal `predict` run on the changed hardware profile and calibration."""
from __future__ import annotations

import csv
import math
from dataclasses import replace

import numpy as np
import openpyxl
import pytest

from cli_checks import assert_one_line_error, invoke
from spreadsheet import recalculate

from attnsim.simulator import sweep as S
from attnsim.simulator.problem import predict_problem
from attnsim.simulator.rates import Calibration

ARGS = ["--variant", "mha,gqa,mla,swa,eager", "--hw", "h100,b200", "--phase", "prefill,decode,train", "--seqlen", "1k,4k",
        "--causal", "both", "--batch", "1,8", "-p", "window_size=1024,0"]
SPEC = S.Spec(variants=["mha", "gqa", "mla", "swa", "eager"], hardware=["h100", "b200"],
              phases=["prefill", "decode", "train"], seqlen_q=[1024, 4096], causal=[False, True], batch=[1, 8],
              params={"window_size": ["1024,0"]})
INPUT_COLUMNS = list(S.COLUMNS) + ["window_size"]


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    d = tmp_path_factory.mktemp("xlsx")
    res = invoke("sweep", *ARGS, "-o", d / "whatif.xlsx")
    assert res.exit_code == 0, res.output
    res = invoke("sweep", *ARGS, "-o", d / "whatif.csv")
    assert res.exit_code == 0, res.output
    with open(d / "whatif.csv") as f:
        rows = list(csv.DictReader(f))
    return d, d / "whatif.xlsx", rows


def _sheet_rows(wb, name):
    ws = wb[name]
    it = ws.iter_rows(values_only=True)
    head = list(next(it))
    return head, [dict(zip(head, r)) for r in it]


def _formula_cells(path):
    forms = openpyxl.load_workbook(path)
    for ws in forms.worksheets:
        for row in ws.iter_rows():
            for c in row:
                if isinstance(c.value, str) and c.value.startswith("="):
                    yield ws.title, c.coordinate, c.value


def test_sheets_and_rows_are_the_sweep(book):
    d, path, csv_rows = book
    wb = openpyxl.load_workbook(path, data_only=True)  # the cached values: what a reader sees before recalculating
    assert wb.sheetnames[:2] == ["README", "Inputs"] and wb.sheetnames[-1] == "Charts"
    got = []
    for variant in SPEC.variants:
        head, rows = _sheet_rows(wb, variant)
        assert head[:len(INPUT_COLUMNS) - (variant != "swa")] == INPUT_COLUMNS[:len(INPUT_COLUMNS) - (variant != "swa")]
        got += rows
    assert len(got) == len(csv_rows) == 240  # 5 variants x 2 GPUs x 3 phases x 2 x 2 x 2
    key = lambda r: tuple(str(r.get(k)).lower() for k in ("variant", "hardware", "phase", "batch", "seqlen_kv",  # noqa: E731
                                                          "causal"))
    want = {key(r): r for r in csv_rows}
    assert len(want) == 240
    for r in got:
        c = want[key(r)]
        for k in ("time_s", "bound_s", "flops", "useful_flops", "hbm_bytes", "memory_bytes", "kv_cache_bytes"):
            assert math.isclose(float(r[k]), float(c[k]), rel_tol=1e-12), (k, r, c)
        assert r["bound"] == c["bound"] and r["kernel"] == c["kernel"]
        if c["speedup_vs_dense"]:
            assert math.isclose(r["speedup_vs_dense"], float(c["speedup_vs_dense"]), rel_tol=1e-12)
        else:
            assert r["speedup_vs_dense"] is None
        assert math.isclose(r["achieved_tflops"], float(c["useful_flops"]) / float(c["time_s"]) / 1e12, rel_tol=1e-12)


def test_the_promised_columns_are_formulas(book):
    _, path, _ = book
    forms = openpyxl.load_workbook(path)
    ws = forms["mha"]
    head = [c.value for c in ws[1]]
    row = {h: c.value for h, c in zip(head, ws[2])}
    for k in ("time_s", "bound_s", "achieved_tflops"):
        assert isinstance(row[k], str) and row[k].startswith("="), (k, row[k])
    assert "Inputs!" in row["bound_s"]
    kernel_cols = [h for h in head if h.startswith("time ")]
    assert kernel_cols and all(str(row[h]).startswith("=") for h in kernel_cols if row[h] is not None)
    readme = "\n".join(str(c.value) for c in forms["README"]["A"] if c.value)
    for k in ("time_s", "bound_s", "achieved_tflops", "speedup_vs_dense", "step N", "Inputs"):
        assert k in readme
    inputs = {r[0]: r[1] for r in forms["Inputs"].iter_rows(values_only=True) if r[0] and r[1] is not None}
    assert inputs["h100_sxm5.hbm_bandwidth_bytes_per_s"] == 3.35e12  # the profile's figure, by hand


def _inputs(path):
    wb = openpyxl.load_workbook(path)
    return wb, {r[0].value: r for r in wb["Inputs"].iter_rows() if r[0].value and r[1].value is not None}


def test_libreoffice_recalculates_every_formula_to_attnsims_numbers(book, tmp_path):
    """Cached values stripped (openpyxl saves formulas only), LibreOffice recomputes: every formula cell of
    every sheet equals the value attnsim stored, to 1e-9."""
    _, path, _ = book
    wb, _ = _inputs(path)
    wb.save(tmp_path / "stripped.xlsx")
    (out,) = recalculate([tmp_path / "stripped.xlsx"], tmp_path / "out", tmp_path / "profile")
    cached = openpyxl.load_workbook(path, data_only=True)
    lo = openpyxl.load_workbook(out, data_only=True)
    n = 0
    for sheet, coord, text in _formula_cells(path):
        want, got = cached[sheet][coord].value, lo[sheet][coord].value
        assert isinstance(got, (int, float)), (sheet, coord, got, text[:200])
        assert math.isclose(got, want, rel_tol=1e-9), (sheet, coord, got, want)
        n += 1
    assert n > 240 * 5


def test_editing_inputs_recomputes_as_predict_with_the_changed_figures(book, tmp_path):
    """Halve H100's HBM bandwidth, raise B200's clock by a fifth and scale one calibration's tensor factor by
    0.7 on Inputs; LibreOffice's time_s and bound_s of every row equal `predict` on the changed profile and
    calibration (dataclasses.replace) where predict makes the same discrete choices there, and the formula
    trees' Python evaluation (the same choices held) everywhere."""
    d, path, _ = book
    wb, cells = _inputs(path)
    env = {}
    hbm = "h100_sxm5.hbm_bandwidth_bytes_per_s"
    clock = "b200.clock_sustained_hz"
    tensor = next(k for k in cells if k.startswith("calibration.h100_sxm5.fa3") and k.endswith(".tensor"))
    for name, factor in ((hbm, 0.5), (clock, 1.2), (tensor, 0.7)):
        env[name] = cells[name][1].value * factor
        cells[name][1].value = env[name]
    wb.save(tmp_path / "edited.xlsx")
    (out,) = recalculate([tmp_path / "edited.xlsx"], tmp_path / "out", tmp_path / "profile")
    lo = openpyxl.load_workbook(out, data_only=True)

    table = S.run(SPEC, origin=True)
    sym_hw, sym_cal = S.symbolic_inputs(SPEC, table)
    forms = S.formula_rows(SPEC, table, sym_hw, sym_cal)
    sheet_row = {}
    for variant in SPEC.variants:
        for j, i in enumerate(np.flatnonzero(table["variant"] == variant).tolist()):
            sheet_row[i] = (variant, j)
    changed = compared = 0
    for i, f in enumerate(forms):
        variant, j = sheet_row[i]
        head = [c.value for c in lo[variant][1]]
        vals = dict(zip(head, next(lo[variant].iter_rows(min_row=j + 2, max_row=j + 2, values_only=True))))
        time_py = sum(t.evaluate(env) if hasattr(t, "evaluate") else t for _, t in f.kernels)
        bound_py = f.bound.evaluate(env)
        assert math.isclose(vals["time_s"], time_py, rel_tol=1e-9), (i, vals["time_s"], time_py)
        assert math.isclose(vals["bound_s"], bound_py, rel_tol=1e-9)
        changed += not math.isclose(time_py, float(table["time_s"][i]), rel_tol=1e-6)
        # predict itself on the changed figures
        hw, prob, _ = S.row_problems(SPEC, table, i)
        cal, scal, _ = sym_cal[(hw.key, str(table["kernel"][i]), prob.workload.dtype, prob.workload.phase)]
        base = cal or Calibration()
        hw2 = replace(hw, **{k.split(".", 1)[1]: v for k, v in env.items() if k.startswith(hw.key + ".")})
        cal2 = replace(base, **{k.rsplit(".", 1)[1]: v for k, v in env.items() if k in (scal.tensor.args[0],)})
        before = predict_problem(prob, hw, compare=False, calibration=base)
        after = predict_problem(prob, hw2, compare=False, calibration=cal2)
        if [(k.tile, k.splits, k.ctas_per_sm) for k in after.kernels] == [(k.tile, k.splits, k.ctas_per_sm)
                                                                          for k in before.kernels]:
            assert math.isclose(vals["time_s"], after.time_s, rel_tol=1e-9), (i, vals["time_s"], after.time_s)
            assert math.isclose(vals["bound_s"], after.bound.time_s, rel_tol=1e-9)
            compared += 1
    assert changed > 100 and compared > 200  # the edit moved most rows, and most kept their choices


@pytest.mark.parametrize("args, needle", [
    (["--seqlen", "1..65536:1", "--batch", "1..4:1"], "a workbook holds at most"),
    (["--seqlen", "5..1"], "is empty"),
])
def test_refusals(tmp_path, args, needle):
    out = tmp_path / "x.xlsx"
    res = invoke("sweep", *args, "-o", out)
    assert_one_line_error(res, needle)
    assert not out.exists()


def test_charts_sheet_reads_the_variant_sheets(book):
    """The chart tables sit where the charts read them (rows 3.. and the speedup block below), every cell a
    formula reading a variant sheet's time_s, its stored value that cell's; decode charts the context."""
    _, path, _ = book
    forms = openpyxl.load_workbook(path)
    values = openpyxl.load_workbook(path, data_only=True)
    ws, wv = forms["Charts"], values["Charts"]
    assert [c.value for c in ws[2]][:6] == ["seqlen_q", "mha", "gqa", "mla", "swa", "eager"]
    assert [ws.cell(r, 1).value for r in (3, 4)] == [1024, 4096]
    for r in (3, 4):
        for c in range(2, 7):
            ref = ws.cell(r, c).value
            assert ref.startswith("='"), ref
            sheet, cell = ref[2:].split("'!")
            assert math.isclose(wv.cell(r, c).value, values[sheet][cell.replace("$", "")].value, rel_tol=1e-15)
            head = [h.value for h in values[sheet][1]]
            row = int(cell.rsplit("$", 1)[1])
            got = dict(zip(head, [x.value for x in values[sheet][row]]))
            assert (got["hardware"], got["phase"], got["seqlen_q"], got["batch"], got["causal"]) == (
                "h100_sxm5", "prefill", ws.cell(r, 1).value, 1, False)
    assert ws.cell(6, 1).value.startswith("speedup over mha") and ws.cell(8, 2).value.startswith("='mha'!")
    charts = ws._charts
    assert len(charts) == 2
    ys = [s.yVal.numRef.f.replace("'", "") for s in charts[0].series]  # scatter series: x and y ranges
    xs = {s.xVal.numRef.f.replace("'", "") for s in charts[0].series}
    assert ys == [f"Charts!${c}$3:${c}$4" for c in "BCDEF"] and xs == {"Charts!$A$3:$A$4"}
    assert charts[1].series[1].yVal.numRef.f.replace("'", "") == "Charts!$C$8:$C$9"


def test_decode_charts_the_context(tmp_path):
    out = tmp_path / "d.xlsx"
    res = invoke("sweep", "--phase", "decode", "--variant", "gqa,mqa", "--seqlen", "1k..8k", "-o", out)
    assert res.exit_code == 0, res.output
    ws = openpyxl.load_workbook(out)["Charts"]
    assert ws.cell(2, 1).value == "seqlen_kv" and [ws.cell(r, 1).value for r in range(3, 7)] == [1024, 2048, 4096, 8192]


def test_unwritable_output_is_one_line(tmp_path):
    res = invoke("sweep", "-o", "/proc/attnsim-test.xlsx")
    assert_one_line_error(res, "cannot write it")
