"""`attnsim sweep --engine dask`: the sweep's product partitioned over a Dask cluster (a `distributed`
LocalCluster in this process by default, or `--scheduler ADDRESS`), written as a directory of Parquet
partitions whose concatenation, in file-name order, is exactly the single-process table.

Partitioning (`partitions`): one task per group (variant, hardware, kernel, phase, dtype, -p alternative:
one `predict_many` call in `simulator.sweep.run`); a group of more than `ROWS_PER_TASK` rows is cut along
its outermost numeric axis with more than one value (batch, then seqlen_q, seqlen_kv, heads_q, heads_kv,
head_dim_qk, head_dim_v, causal: the order in which `run` lays out a group's rows, the first varying
slowest) into runs of consecutive values, and a single value of that axis still too large is cut along
the next axis. Every task is a `Spec` of its own, so each partition is a contiguous run of the
single-process table's rows and the partitions in order are that table.

The workers price and serialize their partition (Parquet bytes); the driver writes each one as it
arrives into a temporary directory beside the output, checks that every partition came back with the
rows it should and one schema, then renames the directory to the output's name: an interrupted or failed
sweep leaves nothing under that name. The workers need no file system shared with the driver; they do
need attnsim importable (LocalCluster's processes inherit this interpreter) and, on a remote cluster,
any hardware or calibration file named by path at the same path.

dask and distributed are optional (`pip install 'attnsim[dask]'`) and imported only here, only when
`--engine dask` runs.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import re
import shutil
import sys

from attnsim.simulator.errors import AttnsimError

ROWS_PER_TASK = 1 << 17  # 131,072 rows: about a second of pricing, a few MB of Parquet
CONNECT_TIMEOUT_S = 10.0  # --scheduler: how long to wait for the scheduler to answer
AXES = ("batch", "seqlen_q", "seqlen_kv", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v", "causal")
PART = re.compile(r"part-[0-9]+\.parquet\Z")


# -- partitioning -------------------------------------------------------------------------------------
def partitions(spec, max_rows: int = ROWS_PER_TASK) -> list:
    """The sweep as a list of Specs, each of at most `max_rows` rows where the axes allow (a group whose
    axes each have one value is one task whatever its size), whose `run`s concatenated in order are
    `run(spec)`."""
    if max_rows < 1:
        raise ValueError("max_rows must be at least 1")
    out = []
    for variant, hw, kernel, phase, dtype, alt in spec.groups():
        group = dataclasses.replace(spec, variants=[variant], hardware=[hw], kernels=[kernel], phases=[phase],
                                    dtypes=[dtype], params={name: [value] for name, value in alt.items()})
        out += _split(group, max_rows, 0)
    return out


def _split(spec, max_rows: int, axis: int) -> list:
    rows = spec.axis_sizes()
    if rows <= max_rows or axis == len(AXES):
        return [spec]
    name = AXES[axis]
    vals = list(getattr(spec, name))
    inner = rows // len(vals)  # rows under one value of this axis
    if inner > max_rows:  # one value at a time, each cut further along the next axis
        return [p for v in vals for p in _split(dataclasses.replace(spec, **{name: [v]}), max_rows, axis + 1)]
    step = max(1, max_rows // inner)
    return [dataclasses.replace(spec, **{name: vals[i:i + step]}) for i in range(0, len(vals), step)]


# -- one task (runs on a worker) ----------------------------------------------------------------------
def price_partition(spec, pnames: list):
    """(rows, Arrow schema, Parquet bytes) of one partition: `run(spec)` as the single-process writer
    makes it a table, with every -p column of the whole sweep (empty where this partition's variant has
    no such parameter) in the whole sweep's place, after `causal`."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from attnsim.cli.sweep import _table
    from attnsim.simulator import sweep as S

    cols = S.run(spec)
    n = len(next(iter(cols.values()))) if cols else 0
    if "causal" not in cols:
        raise AttnsimError("sweep: the table has no 'causal' column to place the -p columns after")
    ordered = {}
    for key, col in cols.items():
        if key in pnames:
            continue
        ordered[key] = col
        if key == "causal":
            for name in pnames:
                ordered[name] = cols[name] if name in cols else np.full(n, None, dtype=object)
    table = _table(ordered)
    for name in pnames:  # -p values are text; a partition whose rows all lack the name would say 'null'
        i = table.schema.get_field_index(name)
        if pa.types.is_null(table.schema.field(i).type):
            table = table.set_column(i, pa.field(name, pa.string()), table.column(i).cast(pa.string()))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return n, table.schema, sink.getvalue().to_pybytes()


# -- the driver ---------------------------------------------------------------------------------------
def check_output(output: str) -> str:
    """The output directory's name (without a trailing separator); AttnsimError when something that this
    command would not replace is there: a directory holding anything but part-*.parquet files."""
    out = output.rstrip("/" + os.sep) or output
    if os.path.isdir(out):
        other = [f for f in os.listdir(out) if not PART.match(f)]
        if other:
            raise AttnsimError(f"-o {output}: the directory exists and holds {other[0]!r}, not only Parquet partitions "
                               f"(part-*.parquet); --engine dask replaces only such a directory: remove it or choose "
                               f"another name")
    elif os.path.exists(out) and not os.path.isfile(out):
        raise AttnsimError(f"-o {output} exists and is neither a file nor a directory")
    return out


def _imports():
    try:
        import distributed  # noqa: F401
    except ImportError as e:
        raise AttnsimError(f"--engine dask needs dask and distributed (missing: {e.name}); install them with "
                           f"pip install 'attnsim[dask]'") from None
    return distributed


def _connect(scheduler, workers: int):
    """(client, cluster or None): a client of the scheduler at `scheduler`, or of a LocalCluster of
    `workers` processes with one thread each, started here."""
    distributed = _imports()
    if scheduler:
        try:  # a malformed address or an unknown host, said before a Client exists (a half-made one hangs on exit)
            distributed.comm.resolve_address(scheduler)
        except (ValueError, TypeError, OSError) as e:
            raise AttnsimError(f"--scheduler {scheduler}: not a scheduler address ({_why(e)}); e.g. tcp://host:8786") \
                from None
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise AttnsimError(f"--scheduler {scheduler}: no Dask scheduler answered within {CONNECT_TIMEOUT_S:g} s "
                               f"({_why(e)})") from None
        return client, None
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.CRITICAL)
    try:
        client = distributed.Client(cluster, set_as_default=False)
    except BaseException:
        cluster.close()
        raise
    return client, cluster


def _why(e: BaseException) -> str:
    why = " ".join(str(e).split()) or type(e).__name__
    return why if len(why) <= 160 else why[:157] + "..."


def run_dask(spec, output: str, total: int, scheduler=None, workers: int = 2, progress: bool = False,
             max_rows: int | None = None) -> int:
    """Price `spec` on a Dask cluster and write the directory `output` of part-NNNNN.parquet files (NNNNN
    from 0, zero-padded to at least 5 digits); returns the number of partitions. `total` is the sweep's
    row count (check_size's)."""
    from attnsim.simulator.hardware import load_hardware

    distributed = _imports()
    out = check_output(output)
    for hw in spec.hardware:  # a misspelled name fails here, before a cluster starts
        load_hardware(hw)
    parts = partitions(spec, max_rows or ROWS_PER_TASK)
    pnames = list(spec.params)
    width = max(5, len(str(len(parts) - 1)))
    tmp = f"{out}.tmp-{os.getpid()}"
    client = cluster = None
    futures = []
    shutil.rmtree(tmp, ignore_errors=True)  # what a killed run of the same process id left
    try:
        os.mkdir(tmp)
    except FileNotFoundError:
        raise AttnsimError(f"-o {output}: the folder {os.path.dirname(os.path.abspath(out))} does not exist") from None
    try:
        client, cluster = _connect(scheduler, workers)
        futures = client.map(price_partition, parts, pnames=pnames, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        rows, schema = [None] * len(parts), None
        bar = _progress(total, len(parts)) if progress else None
        try:
            for fut in distributed.as_completed(futures, loop=client.loop):
                i = index[fut.key]
                try:
                    n, part_schema, data = fut.result()
                except (AttnsimError, KeyboardInterrupt):
                    raise
                except ImportError as e:
                    raise AttnsimError(f"a Dask worker could not import {e.name!r}: every worker needs attnsim "
                                       f"(the same version) installed") from None
                except concurrent.futures.CancelledError as e:  # distributed's FutureCancelledError
                    raise AttnsimError(f"the Dask task of partition {i} was cancelled ({' '.join(str(e).split())})") \
                        from None
                except Exception as e:
                    if type(e).__name__ == "KilledWorker":
                        raise AttnsimError(f"the Dask workers pricing partition {i} died (out of memory?)") from None
                    raise
                fut.release()
                if schema is None:
                    schema = part_schema
                elif not part_schema.equals(schema):
                    diff = [f"{f.name}: {f.type}" for f in part_schema if f not in schema] or part_schema.names
                    raise AttnsimError(f"sweep partition {i}'s columns differ from the first one's (a bug): "
                                       f"{', '.join(diff)}")
                with open(os.path.join(tmp, f"part-{i:0{width}d}.parquet"), "wb") as f:
                    f.write(data)
                rows[i] = n
                if bar is not None:
                    bar.update(n)
        finally:
            if bar is not None:
                bar.render_finish()
        missing = [i for i, n in enumerate(rows) if n is None]
        if missing or sum(rows) != total:
            raise AttnsimError(f"the Dask sweep is incomplete: {len(missing)} of {len(parts)} partitions missing, "
                               f"{sum(n or 0 for n in rows):,} of {total:,} rows")
        _install(tmp, out)
    except BaseException:
        if client is not None:
            try:
                client.cancel(futures)
            except Exception:
                pass
        raise
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return len(parts)


def _progress(total: int, n_parts: int):
    import click
    bar = click.progressbar(length=total, label=f"pricing ({n_parts} partitions)", file=sys.stderr)
    bar.__enter__()
    return bar


def _install(tmp: str, out: str):
    """Rename the finished directory to the output's name, replacing what check_output allows there."""
    check_output(out)
    if not os.path.lexists(out):
        os.replace(tmp, out)
        return
    old = f"{out}.old-{os.getpid()}"
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    if os.path.isdir(old):
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.remove(old)
