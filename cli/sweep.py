"""`attnsim sweep`: the cartesian product of lists and ranges, priced in vectorized calls, written as a
tidy table (one row per configuration): CSV, Parquet or JSON. The model is attnsim.simulator.sweep's."""
from __future__ import annotations

import math
import os
import sys

import click

WRITERS = (".csv", ".parquet", ".json", ".xlsx")
XLSX_ROWS = 50_000  # a workbook's rows are formulas: about 0.5 ms each to price and write where they share a template
# (mha/gqa/mqa without -p values), about 3 ms where each is priced alone


@click.command(context_settings={"max_content_width": 110})
@click.option("--variant", "variants", default="mha", show_default=True, metavar="LIST",
              help="variants joined by commas (see 'attnsim variants')")
@click.option("--hw", "hardware", default="h100", show_default=True, metavar="LIST", help="hardware profiles joined by commas")
@click.option("--kernel", "kernels", default=None, metavar="LIST", help="kernel families joined by commas [default: per hardware]")
@click.option("--phase", "phases", default="prefill", show_default=True, metavar="LIST", help="prefill, decode, train (a list)")
@click.option("--dtype", "dtypes", default="bf16", show_default=True, metavar="LIST", help="bf16, fp16, fp8 (a list)")
@click.option("--batch", default="1", show_default=True, metavar="LIST", help="sequences per batch")
@click.option("--seqlen", default=None, metavar="LIST",
              help="query tokens per sequence [default 4096]; decode: the context (k = x1024, M = x1048576)")
@click.option("--seqlen-kv", default=None, metavar="LIST", help="key/value tokens per sequence [default: --seqlen]")
@click.option("--heads", default="32", show_default=True, metavar="LIST", help="query heads")
@click.option("--kv-heads", default=None, metavar="LIST", help="key/value heads [as predict: per variant]")
@click.option("--head-dim", default="128", show_default=True, metavar="LIST", help="head dim of Q and K")
@click.option("--head-dim-v", default=None, metavar="LIST", help="head dim of V and O [default: --head-dim]")
@click.option("--causal", default="false", show_default=True, metavar="false|true|both", help="causal mask; both tries each")
@click.option("--token-shape", default=None, metavar="AxB[;CxD]",
              help="na/gna/vmoba: the token grid (alternatives joined by ';'); the same as -p token_shape=...")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=V1;V2",
              help="a variant parameter with alternatives joined by ';' (-p window_size=1024,0;4096,0), repeatable")
@click.option("--uncalibrated", is_flag=True, help="the raw model (default: the shipped calibration)")
@click.option("--calibration", "calibration_file", type=click.Path(dir_okay=False), default=None,
              help="a calibration file of 'attnsim calibrate' instead of the shipped one")
@click.option("-o", "--output", default=None, type=click.Path(),
              help="write the table: .csv, .parquet, .json (one object per row) or .xlsx (a workbook whose times are "
                   "formulas; at most 50,000 rows) [default: CSV on stdout]; --engine dask: a directory of Parquet "
                   "partitions (NAME.parquet or DIR)")
@click.option("--skip-unsupported", is_flag=True,
              help="leave out the groups predict refuses, each said on stderr, instead of ending the sweep: a group "
                   "is one variant, GPU, kernel, phase, dtype and -p alternative over every value of the numeric "
                   "lists, left out whole when predict refuses any of its configurations (a kernel a GPU lacks, "
                   "a dtype it has no rate for, a head dim or parameter a shape cannot take)")
@click.option("--force", is_flag=True, help="price a product of more than 4,194,304 configurations")
@click.option("--engine", type=click.Choice(["single", "dask"]), default="single", show_default=True,
              help="single: this process; dask: partitions over a Dask cluster (pip install 'attnsim[dask]')")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="--engine dask: a running Dask scheduler (tcp://host:8786) [default: a local cluster]")
@click.option("--workers", default=None, type=click.IntRange(1, 1024), metavar="N",
              help="--engine dask without --scheduler: worker processes of the local cluster [default: 2]")
def sweep(variants, hardware, kernels, phases, dtypes, batch, seqlen, seqlen_kv, heads, kv_heads, head_dim, head_dim_v,
          causal, params, uncalibrated, calibration_file, output, force, engine, scheduler, workers, token_shape=None,
          skip_unsupported=False):
    """Price the cartesian product of lists and ranges in vectorized calls: one row per configuration, every
    row what 'attnsim predict' prints for it.

    \b
    A LIST is items joined by commas; an item a number, a..b (doubling from a while at most b) or a..b:s
    (steps of s). Token counts take k (x1024) and M (x1048576).
    \b
    Examples:
      attnsim sweep --variant mha,gqa --hw h100,b200 --seqlen 1k..128k --batch 1,8 --causal both -o whatif.csv
      attnsim sweep --variant swa --seqlen 8k..64k -p window_size=1024,0;4096,0 -o windows.parquet
      attnsim sweep --phase decode --variant gqa --kv-heads 8 --seqlen 1k..1M --batch 1..64 -o decode.json
      attnsim sweep --variant mha,gqa --hw h100,b200 --seqlen 1..128k:1 --engine dask --workers 8 -o big.parquet
      attnsim sweep --variant mha,gqa,mla --hw h100,b200 --seqlen 1k..32k --causal both -o whatif.xlsx

    \b
    --engine dask partitions the product over a Dask cluster: a local one of --workers processes (one
    thread each), or the scheduler at --scheduler. One task per (variant, hardware, kernel, phase, dtype,
    -p alternative), cut along the outermost numeric axis (batch, seqlen, ...) when larger than 131,072
    rows. The output -o NAME.parquet (or -o DIR) is a directory of part-00000.parquet, part-00001.parquet,
    ...: read in name order (pyarrow.parquet.read_table(NAME)) they are the rows of --engine single, in
    its order. It is written under a temporary name and renamed when every partition is in, so a failed
    or interrupted sweep leaves nothing under NAME; an existing NAME is replaced only if it is a file or
    holds nothing but part-*.parquet files. Remote workers need attnsim installed, and any hardware or
    calibration file given by path at the same path.

    Columns: variant, hardware, kernel, phase, dtype, batch, seqlen_q, seqlen_kv, heads_q, heads_kv,
    head_dim_qk, head_dim_v, causal, each -p name, then time_s, bound_s, bound (its limiting unit), flops
    (executed), useful_flops, hbm_bytes, tiles_full/partial/empty, ctas, waves, splits (of the main
    kernel), memory_bytes, kv_cache_bytes, fits, calibrated, speedup_vs_dense (where predict prints a
    speedup: dense attention's time over this one; else empty).

    \b
    -o FILE.xlsx writes a workbook that stays alive: an Inputs sheet holds the hardware figures and the
    calibration factors as editable cells; one sheet per variant has a row per configuration whose
    time_s, bound_s, achieved_tflops and speedup_vs_dense are formulas over Inputs (with 'time <kernel>'
    and 'step N' cells they read, and 'dense time_s'), so editing a figure recomputes every row as
    predict would with it, the tile, CTAs per SM, waves and split count held as chosen; a Charts sheet
    plots time and speedup; a README sheet says what each column is. Every formula stores its value.
    At most 50,000 rows: about 0.5 ms a row for mha/gqa/mqa without -p values (rows that make the same
    choices share one formula), about 3 ms for the others (each priced again on symbolic inputs)."""
    from attnsim.simulator import sweep as S
    from attnsim.simulator.errors import AttnsimError

    if uncalibrated and calibration_file:
        raise click.UsageError("--uncalibrated and --calibration contradict each other (drop one).")
    if engine == "dask":
        if output is None or os.path.splitext(output.rstrip("/" + os.sep))[1].lower() not in ("", ".parquet"):
            raise click.UsageError(f"--engine dask writes a directory of Parquet partitions: give -o NAME.parquet or "
                                   f"-o DIR{'' if output is None else f', not -o {output}'}.")
        if skip_unsupported:
            raise click.UsageError("--skip-unsupported is for --engine single (drop one).")
        if scheduler is not None and workers is not None:
            raise click.UsageError("--workers sizes the local cluster; a --scheduler's cluster has its own workers "
                                   "(drop one).")
    else:
        if scheduler is not None or workers is not None:
            raise click.UsageError(f"--{'scheduler' if scheduler is not None else 'workers'} is for --engine dask.")
        ext = os.path.splitext(output)[1].lower() if output else ".csv"
        if ext not in WRITERS:
            raise AttnsimError(f"-o {output}: attnsim writes {', '.join(WRITERS)}; not {ext or 'a file without extension'}")
        if output is not None and os.path.isdir(output):
            raise AttnsimError(f"-o {output} is a directory; give a file name (.csv, .parquet, .json or .xlsx)")
        if output is not None and not os.path.isdir(os.path.dirname(os.path.abspath(output))):
            raise AttnsimError(f"-o {output}: the folder {os.path.dirname(os.path.abspath(output))} does not exist")

    def names(option, text):
        out = [t.strip() for t in str(text).split(",")]
        if not all(out):
            raise AttnsimError(f"--{option} {text!r}: an empty name; join names with commas")
        return list(dict.fromkeys(out))

    def nums(option, text, tokens=False):
        return [None] if text is None else S.values(option, text, tokens=tokens)

    param_alts = {}
    for text in params:
        key, alts = S.alternatives(text)
        if key in param_alts:
            raise AttnsimError(f"-p {key} given twice; join its alternatives with ';'")
        param_alts[key] = alts
    from attnsim.simulator.cluster import is_cluster_name
    for h in names("hw", hardware):
        if is_cluster_name(h) and not h.endswith((".yaml", ".yml")):
            raise AttnsimError(f"--hw {h} is a cluster; a sweep prices one GPU: name its device, or use "
                               f"'attnsim predict --hw {h} --parallel ... --ranks ...' for scaling")
    if token_shape is not None:
        if "token_shape" in param_alts:
            raise AttnsimError("give the token grid once: --token-shape or -p token_shape")
        param_alts["token_shape"] = S.alternatives(f"token_shape={token_shape}")[1]
    spec = S.Spec(variants=names("variant", variants), hardware=names("hw", hardware),
                  kernels=[None] if kernels is None else names("kernel", kernels), phases=names("phase", phases),
                  dtypes=names("dtype", dtypes), batch=nums("batch", batch), seqlen_q=nums("seqlen", seqlen, True),
                  seqlen_kv=nums("seqlen-kv", seqlen_kv, True), heads_q=nums("heads", heads),
                  heads_kv=nums("kv-heads", kv_heads), head_dim_qk=nums("head-dim", head_dim),
                  head_dim_v=nums("head-dim-v", head_dim_v), causal=S.causal_values(causal), params=param_alts,
                  calibration=None if uncalibrated else calibration_file or "default", skip_unsupported=skip_unsupported)
    total = S.check_size(spec, force)
    xlsx = engine == "single" and ext == ".xlsx"
    if xlsx and total > XLSX_ROWS:
        raise AttnsimError(f"-o {output}: the sweep has {total:,} configurations; a workbook holds at most "
                           f"{XLSX_ROWS:,} (its rows are formulas): narrow a list, or write .csv or .parquet")
    show = output is not None and sys.stderr.isatty() and total >= 100_000
    if engine == "dask":
        from attnsim.cli.sweep_dask import run_dask  # dask and distributed are imported only here
        parts = run_dask(spec, output, total, scheduler=scheduler, workers=workers or 2, progress=show)
        click.echo(f"wrote {output}: {_rows(total)} in {parts:,} Parquet partitions", err=True)
        return
    if show:
        with click.progressbar(length=total, label="pricing", file=sys.stderr) as bar:
            last = [0]

            def progress(done, _total):
                bar.update(done - last[0])
                last[0] = done
            cols = S.run(spec, progress, origin=xlsx)
    else:
        cols = S.run(spec, origin=xlsx)
    for where, why in spec.skipped:
        click.echo(f"skipped ({where}): {why}", err=True)
    if not cols:
        raise AttnsimError(f"every combination was left out ({len(spec.skipped)}): nothing to write")
    total = len(cols["time_s"])
    if output is None:
        _write_csv(cols, sys.stdout)
        return
    tmp = f"{output}.tmp-{os.getpid()}"
    try:
        try:
            if xlsx:
                _xlsx(spec, cols, tmp)
            else:
                WRITER_FUNCS[ext](cols, tmp)
            os.replace(tmp, output)  # an interrupted sweep leaves no half-written file under the output's name
        except OSError as e:
            raise AttnsimError(f"-o {output}: cannot write it ({e.strerror or e})") from None
        except Exception as e:  # XlsxWriter's own errors (FileCreateError...) are not OSErrors
            if type(e).__module__.startswith("xlsxwriter"):
                raise AttnsimError(f"-o {output}: cannot write it ({e})") from None
            raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if xlsx:
        click.echo(f"wrote {output}: {_rows(total)} on {len(set(cols['variant'].tolist()))} variant sheet(s), "
                   f"their times formulas over the Inputs sheet", err=True)
    else:
        click.echo(f"wrote {output}: {_rows(total)} x {len(cols)} columns", err=True)


def _table(cols):
    """The columns as an Arrow table; NaN (no dense baseline) and None (a -p the variant lacks) are empty."""
    import pyarrow as pa
    return pa.table({k: (pa.array(v.tolist()) if v.dtype == object else
                         pa.array(v).dictionary_encode() if v.dtype.kind == "U" else pa.array(v, from_pandas=True))
                     for k, v in cols.items()})


def _csv_file(cols, path):
    import pyarrow.csv as pacsv
    pacsv.write_csv(_table(cols), path)


def _write_csv(cols, stream):
    import io

    import pyarrow.csv as pacsv
    buf = io.BytesIO()
    pacsv.write_csv(_table(cols), buf)
    stream.write(buf.getvalue().decode())


def _parquet(cols, path):
    import pyarrow.parquet as pq
    pq.write_table(_table(cols), path)


def _json(cols, path):
    import json
    keys = list(cols)
    lists = [cols[k].tolist() for k in keys]
    with open(path, "w") as f:
        f.write("[\n")
        n = len(lists[0]) if lists else 0
        for i in range(n):
            row = {k: (None if isinstance(v[i], float) and not math.isfinite(v[i]) else v[i]) for k, v in zip(keys, lists)}
            f.write(("  " if i == 0 else ",\n  ") + json.dumps(row))
        f.write("\n]\n")


def _xlsx(spec, cols, path):
    from attnsim.cli.xlsx import write_workbook  # xlsxwriter is imported only here
    n = len(cols["time_s"])
    if sys.stderr.isatty() and n >= 2_000:
        with click.progressbar(length=n, label="writing formulas", file=sys.stderr) as bar:
            last = [0]

            def progress(done, _total):
                bar.update(done - last[0])
                last[0] = done
            write_workbook(spec, cols, path, progress)
    else:
        write_workbook(spec, cols, path)


WRITER_FUNCS = {".csv": _csv_file, ".parquet": _parquet, ".json": _json}


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")
