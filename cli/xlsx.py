"""`attnsim sweep -o FILE.xlsx`: a what-if workbook whose times are live formulas (XlsxWriter).

Sheets: README (what each column means, which are formulas), Inputs (the hardware figures and the
calibration factors every formula reads: edit them), one sheet per variant (a row per configuration:
the sweep's columns, then time_s, bound_s, achieved TFLOP/s and speedup_vs_dense as formulas over Inputs,
each kernel's time as a formula, and the row's intermediate steps), Charts (time against sequence length
per variant, and speedup over the first variant, as formulas over the variant sheets).

The formulas are the model's own arithmetic (`attnsim.simulator.formulas`), so a formula computes what
`attnsim predict` computes with the Inputs' figures and the discrete choices it made at the written figures
(tile, split count, CTAs per SM, waves; the `bound` column's unit). Rows of dense or causal attention that
make the same choices share a formula template (`simulator.templates`: the model's kernel-time functions
evaluated once over columns of the rows' work terms), rendered once and filled in row by row; every other
row is priced again on symbolic inputs (`sweep.formula_rows`). Each formula cell stores its value too, so the file reads right before recalculation.
XlsxWriter writes formulas with their cached values (openpyxl cannot); the tests read the file back
with openpyxl and recalculate it with LibreOffice.
"""
from __future__ import annotations

import math

import numpy as np

MEANING = {
    "clock_sustained_hz": ("Hz", "sustained SM clock under load: every rate of a prediction runs at it"),
    "clock_max_hz": ("Hz", "maximum boost clock: the speed-of-light bound's clock"),
    "hbm_bandwidth_bytes_per_s": ("B/s", "device-memory (HBM/GDDR) bandwidth"),
    "l2_bandwidth_bytes_per_s": ("B/s", "L2 cache bandwidth"),
    "dram_latency_s": ("s", "device-memory latency: a CTA's fill and drain, the latency floor of a tile"),
    "kernel_launch_overhead_s": ("s", "time a kernel costs beyond its work (launch, ramp-up)"),
    "exp_ops_per_clk_per_sm": ("1/clk/SM", "exp2 per clock per SM on the special-function units"),
    "fp32_flops_per_clk_per_sm": ("FLOP/clk/SM", "FP32 FLOPs per clock per SM (an FMA is two)"),
    "smem_bytes_per_clk_per_sm": ("B/clk/SM", "shared-memory bandwidth per clock per SM"),
    "exp2_emulation_fp32_ops": ("ops", "FP32 instructions of one emulated exp2 (FA4's polynomial)"),
    "warp_issue_per_clk_per_sm": ("1/clk/SM", "warp instructions the SM's schedulers issue per clock (the attnsim "
                                  "family's compiled main loop is priced against it)"),
    "tensor": ("x", "multiplies the tensor-core rate (after the kernel family's own efficiency)"),
    "exp": ("x", "multiplies the exp (SFU) rate"),
    "fp32": ("x", "multiplies the FP32 rate"),
    "smem": ("x", "multiplies the shared-memory bandwidth"),
    "hbm": ("x", "multiplies the device-memory bandwidth"),
    "l2": ("x", "multiplies the L2 bandwidth"),
    "clock_hz": ("Hz", "replaces the sustained clock"),
    "launch_overhead_s": ("s", "replaces the kernel launch overhead"),
    "overlap": ("0..1", "replaces the family's softmax/MMA overlap"),
    "cta_io": ("0..10", "unhidden fraction of each CTA's own I/O"),
    "partial_tile": ("0..10", "extra time of a masked (partial) tile, as a fraction of a full one"),
    "causal": ("0..10", "extra time of every tile of a causal kernel, as a fraction"),
    "backward": ("x", "multiplies the backward kernel's tile time"),
    "smem_exposed": ("0..1", "fraction of a tile's shared-memory time its MMAs and softmax wait on"),
}
FORMULA_COLUMNS = ("time_s", "bound_s", "achieved_tflops", "speedup_vs_dense")
VALUE_COLUMNS = ("bound", "flops", "useful_flops", "hbm_bytes", "tiles_full", "tiles_partial", "tiles_empty", "ctas",
                 "waves", "splits", "memory_bytes", "kv_cache_bytes", "fits", "calibrated")


def _col(c: int) -> str:
    s = ""
    c += 1
    while c:
        c, r = divmod(c - 1, 26)
        s = chr(65 + r) + s
    return s


def _sheet_name(variant: str, used: set) -> str:
    base = "".join("_" if ch in "[]:*?/\\" else ch for ch in variant)[:28] or "sheet"
    name, i = base, 2
    while name.lower() in used or name.lower() in ("readme", "inputs", "charts"):
        name, i = f"{base}~{i}", i + 1
    used.add(name.lower())
    return name


def _column_writers(ws, cols, keys, idx, c0):
    """put(x, j): writes row j of `idx` of the columns `keys` at sheet row x from column c0, each cell with
    its type's own XlsxWriter call (write_row would test every string for a number, URL or formula);
    a missing or non-finite value leaves its cell empty."""
    plan = []
    for c, k in enumerate(keys):
        a = cols[k][idx]
        kind = a.dtype.kind
        write = (ws.write_string if kind == "U" else ws.write_boolean if kind == "b" else
                 ws.write_number if kind in "iuf" else None)
        plan.append((c0 + c, a.tolist(), write, kind == "f"))

    def put(x, j):
        for c, vals, write, floats in plan:
            v = vals[j]
            if v is None or floats and not math.isfinite(v):
                continue
            if write is None:  # an object column (-p values): strings or numbers
                (ws.write_string if isinstance(v, str) else ws.write_number)(x, c, v)
            else:
                write(x, c, v)
    return put


def write_workbook(spec, cols: dict, path: str, progress=None):
    """Write the sweep `cols` (`sweep.run(spec, origin=True)`) as a workbook at `path`. XlsxWriter's
    temporary files (it streams each sheet) live in a private folder removed at the end, failed or not."""
    import shutil
    import tempfile

    tmp = tempfile.mkdtemp(prefix="attnsim-xlsx-")
    try:
        _write_workbook(spec, cols, path, progress, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_workbook(spec, cols, path, progress, tmpdir):
    import xlsxwriter

    from attnsim.simulator import sweep as S
    from attnsim.simulator.formulas import CALIBRATION_INPUTS, HARDWARE_INPUTS, Renderer, operand_text, values_on

    sym_hw, sym_cal = S.symbolic_inputs(spec, cols)
    wb = xlsxwriter.Workbook(path, {"constant_memory": True, "tmpdir": tmpdir})
    bold = wb.add_format({"bold": True})
    sci = wb.add_format({"num_format": "0.000E+00"})
    head = wb.add_format({"bold": True, "bg_color": "#DDEBF7"})
    readme = wb.add_worksheet("README")
    inputs = wb.add_worksheet("Inputs")

    # -- Inputs: one row per named input (written last, with how many rows read each) -----------------
    where, lines, reads = {}, [], {}
    row = 1

    def put(v, unit, meaning, source):  # one named input: its name, value (the editable cell), unit, meaning, source
        nonlocal row
        if v is not None:
            where[v.args[0]] = row
            lines.append((row, [v.args[0], v.value, unit, meaning, source], None))
            row += 1

    def section(title):
        nonlocal row
        row += row > 1  # a blank row between sections
        lines.append((row, [title], bold))
        row += 1

    for key, shw in sym_hw.items():  # a symbolic Hardware keeps the profile's name, path and sources
        section(f"{shw.name} ({key}): hardware figures")
        for name in HARDWARE_INPUTS:
            put(getattr(shw, name), *MEANING[name], shw.sources.get(name, shw.path))
        for t in shw.tensor:
            put(t.flops_per_clk_per_sm, "FLOP/clk/SM",
                f"dense tensor-core FLOPs per clock per SM, {t.dtype} inputs, {t.accum} accumulate", t.source)
    seen = set()
    for (hw_key, fam, dtype, phase), (cal, scal, info) in sym_cal.items():
        if id(scal) in seen:
            continue
        seen.add(id(scal))
        if cal is None:
            title, fitted, origin = "none applies (the raw model): the identity, to edit", set(), "identity"
        else:
            info = info or {}
            moved = info.get("transferred_from")
            title = (f"group {info.get('group') or cal.source} of {info.get('file') or cal.source or 'the given factors'}"
                     + (f", carried from {moved} to rows without a fit of their own (its factors are listed again "
                        f"wherever they apply: an edit here changes these rows only)" if moved else ""))
            fitted = set(info.get("params") or ())
            origin = f"fitted: {info.get('file')} group {info.get('group')}" if info.get("file") else "given"
        section(f"calibration of {fam} on {hw_key}: {title}")
        for name in CALIBRATION_INPUTS:
            put(getattr(scal, name), *MEANING[name], origin if name in fitted or cal is not None and not fitted
                else "not fitted (the default)")

    def ref(name):
        return f"Inputs!$B${where[name] + 1}"

    def count_reads(renderer, rows):  # each of the rows reads every input its layout read
        for name in renderer.inputs:
            reads[name] = reads.get(name, 0) + rows

    # -- variant sheets -------------------------------------------------------------------------------
    n = len(cols["time_s"])
    variants = list(dict.fromkeys(cols["variant"].tolist()))
    pnames = [k for k in cols if k not in S.COLUMNS and k not in S.RESULT_COLUMNS and not k.startswith("_")]
    used = set()
    sheets = {}
    done = 0
    partners = S.dense_partners(spec, cols)  # a causal row's dense baseline: its non-causal twin's time_s cell
    for variant in variants:
        idx = np.flatnonzero(cols["variant"] == variant)
        own = [p for p in pnames if any(cols[p][i] is not None for i in idx)]
        # rows the closed forms price share formula templates; the others are priced one by one
        templates, rest = S.formula_templates(spec, cols, sym_hw, sym_cal, idx, no_dense=partners)
        forms = S.formula_rows(spec, cols, sym_hw, sym_cal, rows=rest.tolist(), no_dense=partners)
        sheet_row = {i: j + 2 for j, i in enumerate(idx.tolist())}
        knames = []
        for kernels in [t.kernels for t in templates] + [f.kernels for f in forms]:
            for label in _labels(kernels):  # the kernel columns: every name the rows launch, repeated names numbered
                if label not in knames:
                    knames.append(label)
        inputs_cols = list(S.COLUMNS) + own
        c_formula = len(inputs_cols)
        c_values = c_formula + len(FORMULA_COLUMNS)
        c_kern = c_values + len(VALUE_COLUMNS)
        c_dense = c_kern + len(knames)
        c_step = c_dense + 1
        rendered, max_steps = {}, 0

        def twin(i):  # the dense baseline of a causal row: its non-causal twin's time_s cell
            j = partners[i]
            return f"{_col(c_formula)}{sheet_row[j]}", float(cols["time_s"][j])

        for i, f in zip(rest.tolist(), forms):
            r = sheet_row[i]  # the sheet's row number (1-based; the header is row 1)
            renderer = Renderer(ref, lambda s, r=r: f"{_col(c_step + s)}{r}")
            roots = [t for _, t in f.kernels] + [f.bound] + ([f.dense] if f.dense is not None else [])
            steps, _cells = renderer.layout(roots)
            count_reads(renderer, 1)
            max_steps = max(max_steps, len(steps))
            kcells = {knames.index(label): (renderer.formula(t), float(t))
                      for label, (_, t) in zip(_labels(f.kernels), f.kernels)}
            dense = ((renderer.formula(f.dense), float(f.dense)) if f.dense is not None
                     else twin(i) if i in partners else None)
            rendered[i] = (steps, kcells, renderer.formula(f.bound), float(f.bound), dense)
        for t in templates:  # one layout per template, its text filled in row by row
            # placeholders: {0} the sheet row, {1}, {2}... the per-row columns in the order met
            renderer = Renderer(ref, lambda s: f"{_col(c_step + s)}{{0}}", col=lambda name, i: "{%d}" % (i + 1))
            roots = [e for _, e in t.kernels] + [t.bound] + ([t.dense] if t.dense is not None else [])
            steps, _cells = renderer.layout(roots)
            count_reads(renderer, len(t.rows))
            max_steps = max(max_steps, len(steps))
            texts = [renderer.formula(e) for e in roots]
            fill = [[operand_text(x) for x in np.asarray(v).tolist()] for v in renderer.columns]
            values = [values_on(e, len(t.rows)).tolist() for e in roots]
            step_values = [values_on(v, len(t.rows)).tolist() for _, _, v in steps]
            kslots = [knames.index(label) for label in _labels(t.kernels)]
            nk = len(t.kernels)
            for j, i in enumerate(t.rows.tolist()):
                args = [sheet_row[i]] + [c[j] for c in fill]
                kcells = {k: (texts[m].format(*args), values[m][j]) for m, k in enumerate(kslots)}
                dense = ((texts[nk + 1].format(*args), values[nk + 1][j]) if t.dense is not None
                         else twin(i) if i in partners else None)
                rendered[i] = ([(None, text.format(*args), sv[j]) for (_, text, _), sv in zip(steps, step_values)],
                               kcells, texts[nk].format(*args), values[nk][j], dense)
        name = _sheet_name(variant, used)
        ws = wb.add_worksheet(name)
        # The formulas use + - * / MAX MIN and cell references only: none of the newer Excel functions XlsxWriter
        # rewrites with a _xlfn. prefix, so its 29 regular-expression passes per formula are skipped.
        ws._prepare_formula = _plain_formula
        header = (inputs_cols + ["time_s", "bound_s", "achieved_tflops", "speedup_vs_dense"] + list(VALUE_COLUMNS)
                  + [f"time {k}" for k in knames] + ["dense time_s"] + [f"step {s + 1}" for s in range(max_steps)])
        ws.write_row(0, 0, header, head)
        ws.freeze_panes(1, 0)
        put_inputs = _column_writers(ws, cols, inputs_cols, idx, 0)
        put_values = _column_writers(ws, cols, VALUE_COLUMNS, idx, c_values)
        for j, i in enumerate(idx.tolist()):
            steps, kcells, bound_f, bound_v, dense = rendered[i]
            r = sheet_row[i]
            x = r - 1
            put_inputs(x, j)
            kaddr = [f"{_col(c_kern + k)}{r}" for k in sorted(kcells)]
            t_addr = f"{_col(c_formula)}{r}"
            ws.write_formula(x, c_formula, "=" + "+".join(kaddr), sci, float(cols["time_s"][i]))
            ws.write_formula(x, c_formula + 1, "=" + bound_f, sci, bound_v)
            useful_addr = f"{_col(c_values + VALUE_COLUMNS.index('useful_flops'))}{r}"
            ws.write_formula(x, c_formula + 2, f"={useful_addr}/{t_addr}/1E12", None,
                             float(cols["useful_flops"][i]) / float(cols["time_s"][i]) / 1e12)
            if dense is not None:
                ws.write_formula(x, c_formula + 3, f"={_col(c_dense)}{r}/{t_addr}", None,
                                 dense[1] / float(cols["time_s"][i]))
            put_values(x, j)
            for k, (text, v) in sorted(kcells.items()):
                ws.write_formula(x, c_kern + k, "=" + text, sci, v)
            if dense is not None:
                ws.write_formula(x, c_dense, "=" + dense[0], sci, dense[1])
            for s, (_addr, text, v) in enumerate(steps):
                ws.write_formula(x, c_step + s, "=" + text, None, float(v))
        sheets[variant] = (name, idx, c_formula)
        done += len(idx)
        if progress:
            progress(done, n)

    inputs.write_row(0, 0, ["input", "value", "unit", "meaning", "source", "rows reading it"], head)
    inputs.set_column(0, 0, 52)
    inputs.set_column(1, 1, 14)
    inputs.set_column(3, 4, 60)
    inputs.set_column(5, 5, 16)
    for r, values, fmt in lines:
        inputs.write_row(r, 0, values, fmt)
        if fmt is None:
            n_rows = reads.get(values[0], 0)
            inputs.write(r, 5, n_rows if n_rows else "none: editing it changes nothing here")
    inputs.freeze_panes(1, 0)
    _charts(wb, spec, cols, sheets, head)
    _readme(readme, spec, bold)
    wb.close()


def _labels(kernels) -> list:
    """The kernel columns' labels of a row's kernels [(name, time)]: a name, numbered where it repeats."""
    count, out = {}, []
    for name, _ in kernels:
        count[name] = count.get(name, 0) + 1
        out.append(name if count[name] == 1 else f"{name} #{count[name]}")
    return out


def _plain_formula(formula, expand_future_functions=False):
    return formula[1:] if formula.startswith("=") else formula


def _charts(wb, spec, cols, sheets, head):
    """Time against the first numeric list that varies (sequence length first; decode: the context) per
    variant, and speedup over the first variant: on the first hardware, kernel, phase, dtype and -p
    alternative, at the first value of every other list (named in the titles); formulas that read the
    variant sheets' time_s cells. Cells are written row by row (the sheet is streamed)."""
    from attnsim.simulator import sweep as S
    from attnsim.simulator.hardware import load_hardware
    ws = wb.add_worksheet("Charts")
    _grid, _per, gidx = S._grid(spec)
    groups = spec.groups()
    decode = spec.phases[0] == "decode"
    # the grid axis to chart, and the table column that shows it (decode's --seqlen list is the context)
    order = ["seqlen_kv", "seqlen_q"] if decode else ["seqlen_q", "seqlen_kv"]
    order += [a for a in S.GRID_AXES if a not in order and a != "causal"]
    axis = next((a for a in order if len(getattr(spec, a)) > 1), order[0])
    column = "seqlen_kv" if decode and axis == "seqlen_q" else axis
    others = [a for a in S.GRID_AXES if a != axis]
    series = {}
    for variant, (name, idx, c_time) in sheets.items():
        first = next((g for g, (v, h, k, ph, dt, _alt) in enumerate(groups) if v == variant
                      and h == spec.hardware[0] and k == spec.kernels[0] and ph == spec.phases[0] and dt == spec.dtypes[0]),
                     None)
        pts = {}
        for j, i in enumerate(idx.tolist()):
            if int(cols["_group"][i]) != first:
                continue
            gi = int(cols["_index"][i])
            if all(gidx[a][gi] == 0 for a in others):  # the time_s cell and its value
                pts[int(cols[column][i])] = (f"'{name}'!${_col(c_time)}${j + 2}", float(cols["time_s"][i]))
        if pts:
            series[variant] = pts
    if not series:
        ws.write(0, 0, "no variant has rows on the first hardware, kernel, phase and dtype: nothing to chart")
        return
    xs = sorted({x for pts in series.values() for x in pts})
    names = list(series)
    hw_key = load_hardware(spec.hardware[0]).key  # the key the sheets show (h100 -> h100_sxm5)
    fixed = [f"{a}={getattr(spec, a)[0]}" for a in S.GRID_AXES if a not in (axis, "seqlen_kv" if decode else "")
             and getattr(spec, a)[0] is not None]
    fixed += [f"{k}={v[0]}" for k, v in spec.params.items()]
    where = f"{hw_key}, {spec.phases[0]}, {spec.dtypes[0]}" + (f", {', '.join(fixed)}" if fixed else "")
    top2 = 1 + len(xs) + 4
    ws.write(0, 0, f"time_s (formulas reading the variant sheets): {where}", head)
    ws.write_row(1, 0, [column] + names, head)
    for r, x in enumerate(xs):
        ws.write_number(2 + r, 0, x)
        for c, v in enumerate(names):
            cell = series[v].get(x)
            if cell is not None:
                ws.write_formula(2 + r, 1 + c, f"={cell[0]}", None, cell[1])
    ws.write(top2 - 2, 0, f"speedup over {names[0]} ({names[0]}'s time / each variant's): {where}", head)
    ws.write_row(top2 - 1, 0, [column] + names, head)
    for r, x in enumerate(xs):
        ws.write_number(top2 + r, 0, x)
        base = series[names[0]].get(x)
        for c, v in enumerate(names):
            cell = series[v].get(x)
            if cell is not None and base is not None:
                ws.write_formula(top2 + r, 1 + c, f"={base[0]}/{cell[0]}", None, base[1] / cell[1])
    for title, top, y in ((f"time vs {column}", 2, "time (s)"), (f"speedup over {names[0]}", top2, "speedup")):
        ch = wb.add_chart({"type": "scatter", "subtype": "straight_with_markers"})
        for c, v in enumerate(names):
            ch.add_series({"name": v, "categories": ["Charts", top, 0, top + len(xs) - 1, 0],
                           "values": ["Charts", top, 1 + c, top + len(xs) - 1, 1 + c]})
        ch.set_title({"name": f"{title} ({where})", "name_font": {"size": 10}})
        ch.set_x_axis({"name": column, "log_base": 2} if len(xs) > 2 else {"name": column})
        ch.set_y_axis({"name": y, **({"log_base": 10} if y.startswith("time") else {})})
        ws.insert_chart(1 if top == 2 else 22, len(names) + 2, ch, {"x_scale": 1.5, "y_scale": 1.3})


def _readme(ws, spec, bold):
    lines = [
        ("attnsim what-if workbook", bold),
        ("One sheet per variant, a row per configuration of the sweep. Edit a figure on Inputs and every formula "
         "recomputes: the time attnsim predict gives with that figure, the tile, split count, CTAs per SM and waves "
         "held as attnsim chose them at the written figures.", None),
        ("", None),
        ("Formula columns (over Inputs and the row's own cells):", bold),
        ("time_s: the sum of the row's kernel times (the columns 'time <kernel>').", None),
        ("bound_s: the speed-of-light bound: every unit at its peak at clock_max_hz, the slowest unit's time.", None),
        ("achieved_tflops: useful_flops / time_s / 1e12.", None),
        ("speedup_vs_dense: 'dense time_s' / time_s, where attnsim predict prints a speedup (a mask that is not "
         "dense); dense time_s is dense attention on the same family and calibration.", None),
        ("time <kernel>: one kernel's time: launch overhead + the larger of its CTAs' makespan on the SMs and its "
         "memory traffic time (docs/design.md; attnsim predict --explain says it in words).", None),
        ("step N: an intermediate formula of the row that several others read (a tile's time, a CTA's duration, a "
         "unit's rate); what it is can differ from row to row: read its formula. Dense and causal rows (mha, gqa, "
         "mqa without -p values) that make the same choices share one formula with their own numbers in it.", None),
        ("", None),
        ("Value columns (attnsim's numbers at the written figures; they do not recompute):", bold),
        ("variant, hardware, kernel, phase, dtype, batch, seqlen_q, seqlen_kv, heads_q, heads_kv, head_dim_qk, "
         "head_dim_v, causal and each -p parameter: the configuration as attnsim predict resolves it.", None),
        ("bound: the limiting unit of the bound; flops (executed), useful_flops, hbm_bytes, tiles_full/partial/empty, "
         "ctas, waves, splits (of the main kernel), memory_bytes, kv_cache_bytes, fits (in device memory), "
         "calibrated (a fitted calibration applies).", None),
        ("", None),
        ("Inputs: the hardware figures (each with its source) and the calibration factors of each (GPU, kernel "
         "family) the rows use. The constants inside the formulas are the row's own work terms: FLOPs, bytes, "
         "exps and tiles per CTA, CTA counts, waves.", None),
        ("Held fixed (constants inside the formulas, as attnsim chose them at the written figures): the SM count, "
         "each kernel's tile, CTAs per SM, waves and split count, and which unit limits each kernel (the 'bound' "
         "column); the Inputs column 'rows reading it' says which inputs a row's formulas read (an input no row "
         "reads changes nothing).", None),
        ("A calibration carried from another GPU or phase is listed under each (GPU, family) that uses it: editing "
         "one copy changes that GPU's rows only.", None),
        ("Charts: time against the first list that varies (sequence length first; decode: the context) per "
         "variant, and speedup over the first variant, formulas reading the variant sheets; the other lists at "
         "their first value (named in the titles).", None),
        ("", None),
        (f"Written by attnsim {_version()}: variants {', '.join(spec.variants)}; hardware {', '.join(spec.hardware)}; "
         f"calibration {spec.calibration if spec.calibration is not None else 'none (the raw model)'}.", None),
    ]
    ws.set_column(0, 0, 140)
    for r, (text, fmt) in enumerate(lines):
        ws.write(r, 0, text, fmt)


def _version():
    try:
        from attnsim import __version__
        return __version__
    except ImportError:  # pragma: no cover
        return "?"
