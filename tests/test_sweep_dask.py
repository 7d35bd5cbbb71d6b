"""attnsim sweep --engine dask: the partitions concatenate to the single-process run (the partitioning rule
alone, then the command on a two-worker local cluster: every column, every row), a failing task leaves
nothing, and the refusals (no Parquet output, an unreachable scheduler) are one line each."""
from __future__ import annotations

import logging
import os
import time

import pytest

pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from cli_checks import assert_one_line_error, invoke  # noqa: E402

from attnsim.cli import sweep_dask as D  # noqa: E402
from attnsim.cli.sweep import _table  # noqa: E402
from attnsim.simulator import sweep as S  # noqa: E402

# 2 variants x 2 GPUs, a -p alternative only swa has: (1 + 2) x 2 groups x 4 x 3 x 2 x 2 = 288 rows
ARGS = ["sweep", "--variant", "gqa,swa", "--hw", "h100,b200", "--seqlen", "1k..8k", "--batch", "1,2,4",
        "--heads", "16,32", "--causal", "both", "-p", "window_size=512,0;1024,0"]
ROWS = 288


def _parquet_rows(table):
    """A table's values and types; dictionary columns decoded (each partition has its own dictionary)."""
    return table.schema, {k: v.to_pylist() for k, v in zip(table.column_names, table.columns)}


@pytest.mark.parametrize("spec", [
    S.Spec(variants=["gqa", "swa"], hardware=["h100"], batch=[1, 3], seqlen_q=[1000, 8192], heads_kv=[4, 8],
           causal=[False, True], params={"window_size": ["512,0", "1024,1024"]}),
    S.Spec(variants=["mla"], hardware=["a100"], phases=["decode"], batch=[1, 16], seqlen_q=[8192, 512]),
], ids=["prefill", "decode"])
def test_partitions_in_order_are_the_run(spec):
    """Cut to at most 1 or 3 rows a task (along batch, seqlen, kv heads, causal), the partitions priced one
    by one and concatenated are run(spec)'s table: same schema, same values, same order."""
    whole = _parquet_rows(_table(S.run(spec)))
    for max_rows in (1, 3):
        parts = D.partitions(spec, max_rows)
        assert all(p.axis_sizes() <= max_rows for p in parts)
        assert sum(p.rows for p in parts) == spec.rows
        tables = [pq.read_table(pa.BufferReader(D.price_partition(p, list(spec.params))[2])) for p in parts]
        got = _parquet_rows(pa.concat_tables(tables))
        assert got[0].equals(whole[0]) and got[1] == whole[1], max_rows


def test_a_group_is_cut_along_its_outermost_axis():
    spec = S.Spec(variants=["mha"], hardware=["h100"], batch=[1, 2, 4], seqlen_q=[1024, 2048], causal=[False, True])
    parts = D.partitions(spec, 4)  # 4 rows under one batch value: one task per batch value
    assert [p.batch for p in parts] == [[1], [2], [4]] and all(p.seqlen_q == [1024, 2048] for p in parts)
    parts = D.partitions(spec, 8)
    assert [p.batch for p in parts] == [[1, 2], [4]]
    parts = D.partitions(spec, 3)  # one batch value is still too many: cut each along seqlen
    assert [(p.batch, p.seqlen_q) for p in parts] == [([b], [s]) for b in (1, 2, 4) for s in (1024, 2048)]


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes of one thread each, for the runs that pass --scheduler."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.CRITICAL) as c:
        yield c


def test_dask_equals_single_process(tmp_path, monkeypatch):
    """The command's own local cluster (--workers 2), groups cut into tasks of at most 16 rows: the Parquet
    partitions, read back as one table and file by file in name order, are the single-process table."""
    monkeypatch.setattr(D, "ROWS_PER_TASK", 16)
    single, parted = tmp_path / "single.parquet", tmp_path / "parted.parquet"
    r = invoke(*ARGS, "-o", single)
    assert r.exit_code == 0, r.output
    r = invoke(*ARGS, "--engine", "dask", "--workers", "2", "-o", parted)
    assert r.exit_code == 0, r.output
    files = sorted(os.listdir(parted))
    assert len(files) == 2 * (1 + 2) * 3 and files[0] == "part-00000.parquet"  # 48 rows a group, 16 a batch value
    expected = _parquet_rows(pq.read_table(single))
    assert len(expected[1]["time_s"]) == ROWS
    whole = _parquet_rows(pq.read_table(parted))
    assert whole[0].equals(expected[0]) and whole[1] == expected[1]
    one_by_one = pa.concat_tables([pq.read_table(parted / f) for f in files])
    assert _parquet_rows(one_by_one)[1] == expected[1]
    assert sorted(os.listdir(tmp_path)) == ["parted.parquet", "single.parquet"]  # no temporary directory left
    assert f"{ROWS} rows in {len(files)} Parquet partitions" in r.stderr


def test_a_failing_task_leaves_nothing(tmp_path, cluster):
    """One -p alternative is impossible: exit 2, one line, an earlier output left as it was, no temporary
    directory; a later good run replaces that output."""
    out = tmp_path / "s.parquet"
    args = ["sweep", "--variant", "mha,swa", "--hw", "h100,b200", "--seqlen", "1k,2k", "--engine", "dask",
            "--scheduler", cluster.scheduler_address, "-o", out]
    r = invoke(*args, "-p", "window_size=512,0")
    assert r.exit_code == 0, r.output
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    r = invoke(*args, "-p", "window_size=512,0;abc")
    assert_one_line_error(r, "window_size='abc'")
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before
    assert os.listdir(tmp_path) == ["s.parquet"]
    r = invoke(*args, "-p", "window_size=512,0;1024,0")
    assert r.exit_code == 0, r.output
    assert pq.read_table(out).num_rows == 2 * (1 + 2) * 2 and os.listdir(tmp_path) == ["s.parquet"]


@pytest.mark.parametrize("args, needle", [
    ([], "give -o NAME.parquet or -o DIR"),
    (["-o", "x.csv"], "not -o x.csv"),
    (["-o", "x.json"], "not -o x.json"),
    (["-o", "x.parquet", "--scheduler", "tcp://127.0.0.1:8786", "--workers", "3"], "drop one"),
    (["-o", "x.parquet", "--hw", "h999"], "h999"),
    (["-o", "x.parquet", "--scheduler", "nonsense::"], "not a scheduler address"),
])
def test_refusals(args, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(invoke("sweep", "--engine", "dask", *args), needle)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args, needle", [
    (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler is for --engine dask"),
    (["--workers", "2"], "--workers is for --engine dask"),
])
def test_single_refuses_the_dask_options(args, needle):
    assert_one_line_error(invoke("sweep", *args), needle)


def test_a_directory_of_other_files_is_not_replaced(tmp_path):
    (tmp_path / "notes.txt").write_text("precious\n")
    r = invoke("sweep", "--engine", "dask", "-o", tmp_path)
    assert_one_line_error(r, "notes.txt")
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_an_unreachable_scheduler_fails_quickly(tmp_path, monkeypatch):
    import socket
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(D, "CONNECT_TIMEOUT_S", 1.0)
    t0 = time.monotonic()
    r = invoke("sweep", "--engine", "dask", "--scheduler", f"tcp://127.0.0.1:{port}", "-o", tmp_path / "s.parquet")
    assert time.monotonic() - t0 < 15
    assert_one_line_error(r, "no Dask scheduler answered within 1 s")
    assert os.listdir(tmp_path) == []
