"""Ring attention and tensor-parallel attention on a real distributed engine (torch.distributed, gloo
processes on the CPU): outputs and gradients equal the single-process float64 reference, and the bytes
each rank sends and receives, counted on its isend/irecv calls, equal the model's
(`predict_parallel(...).collectives` through `model_bytes_sent_per_rank`) exactly.

Every rank computes in float64; buffers cross the wire in the model's dtype (fp16, or bf16) — the
bytes counted are those of real fp16 tensors — or, in the exactness runs, in float64 (the counts then
8/2 times the model's). Inputs lie on a grid fp16 and bf16 hold exactly, so the ring's forward (it
sends only K and V) is exact with fp16 transfers; sums sent in fp16 (the all-reduce, the backward's
dK/dV accumulators) are rounded to fp16 and checked at that precision.

One launch per rank count runs every case (`engine_worker`); processes come from a fork server that
has imported torch once, so a launch costs well under a second after the first.
"""
from __future__ import annotations

import importlib.util
import json
import os
import time
from fractions import Fraction
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the distributed engine tests need torch")
if not torch.distributed.is_available():
    pytest.skip("this torch build has no torch.distributed", allow_module_level=True)
if not torch.distributed.is_gloo_available():
    pytest.skip("this torch build has no gloo backend", allow_module_level=True)

from attnsim.simulator.ops import Collective  # noqa: E402
from attnsim.simulator.parallel import predict_parallel  # noqa: E402
from attnsim.validation import distributed as D  # noqa: E402
from attnsim.validation import records as R  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RANKS = (2, 3, 4)  # 3: an odd ring (zigzag over 6 chunks, uneven neighbours)
CASES = D.default_cases() + [D.EngineCase("cp", causal=True, zigzag=True, dtype="bf16", seed=3),
                             D.EngineCase("cp", causal=True, zigzag=True, train=True, dtype="bf16", seed=4)]
EXACT = 1e-12  # float64 rounding (relative to the reference's largest entry)
WIRE = {"fp16": 4e-3, "bf16": 2e-2}  # a sum rounded to the wire's dtype on a few hops (unit roundoff 2^-11, 2^-8)

_RUNS: dict = {}


def reports(world: int) -> list:
    """Every case's report for `world` ranks (one launch, cached; a failure is cached too)."""
    if world not in _RUNS:
        try:
            t0 = time.monotonic()
            res = D.launch(D.engine_worker, world, args=(CASES,), timeout_s=60)
            _RUNS[world] = ([D.compare_case(c, res, i) for i, c in enumerate(CASES)], time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001
            _RUNS[world] = e
    got = _RUNS[world]
    if isinstance(got, Exception):
        raise got
    return got[0]


def _ids(pred):
    return [pytest.param(i, c, id=c.label().replace(" ", "-")) for i, c in enumerate(CASES) if pred(c)]


# -- outputs and gradients ------------------------------------------------------------------------

@pytest.mark.parametrize("world", RANKS)
@pytest.mark.parametrize("index,case", _ids(lambda c: c.scheme == "cp"))
def test_ring_attention_equals_float64_reference(world, index, case):
    """The output is exact with fp16 (or bf16) K/V transfers; so is dQ (it reads only K and V). dK, dV
    accumulate over the ring: exact with float64 transfers, to fp16 rounding with fp16 ones."""
    rep = reports(world)[index]
    errs = rep["errors"]
    assert errs["out"] <= EXACT, rep
    if case.train:
        assert errs["dq"] <= EXACT, rep
        tol = EXACT if case.wire == "fp64" else WIRE[case.dtype]
        assert errs["dk"] <= tol and errs["dv"] <= tol, rep
        assert rep["autograd_equal"], "ring_attention (autograd) differs from the explicit forward/backward"


@pytest.mark.parametrize("world", RANKS)
@pytest.mark.parametrize("index,case", _ids(lambda c: c.scheme == "tp"))
def test_tp_attention_equals_float64_reference(world, index, case):
    """The output (and, in train, dX) is all-reduced: exact in float64, to fp16 rounding in fp16; the
    weights' gradients never cross the wire (each rank's slice; their sum is the whole)."""
    rep = reports(world)[index]
    tol = EXACT if case.wire == "fp64" else WIRE[case.dtype]
    assert rep["errors"]["out"] <= tol, rep
    if case.train:
        assert rep["errors"]["dx"] <= tol, rep
        assert rep["errors"]["dw_qkv"] <= EXACT and rep["errors"]["dw_o"] <= EXACT, rep


# -- bytes: counted on isend/irecv, against the model ------------------------------------------------

@pytest.mark.parametrize("world", RANKS)
@pytest.mark.parametrize("index,case", _ids(lambda c: True))
def test_bytes_sent_and_received_equal_the_model(world, index, case):
    """Every rank sends and receives exactly what the model counts (fp16 buffers: the model's own
    figure; float64 buffers: 8/2 of it)."""
    rep = reports(world)[index]
    model = D.case_model_bytes(case, world)
    assert isinstance(model, int) and model > 0
    expected = model * 8 // 2 if case.wire == "fp64" else model
    assert rep["model_bytes"] == expected
    assert rep["sent"] == [expected] * world, rep
    assert rep["recv"] == [expected] * world, rep


@pytest.mark.parametrize("world", RANKS)
def test_calls_and_forward_bytes_follow_the_algorithms(world):
    """Ring: N-1 K/V sends in the forward (the model's count, its bytes the model's forward
    collective), 2(N-1) more in the backward; TP: 2(N-1) sends an all-reduce, one (train: two)."""
    n = world
    for index, case in enumerate(CASES):
        rep = reports(world)[index]
        pp = predict_parallel("8xh100-nvlink", f"{case.scheme}={n}", case.variant(), None, **case.shapes())
        fwd_model = D.model_bytes_sent_per_rank(pp.collectives[:1]) * (4 if case.wire == "fp64" else 1)
        if case.scheme == "cp":
            assert pp.collectives[0]["count"] == n - 1
            assert rep["sends"] == [(3 if case.train else 1) * (n - 1)] * n, rep
            assert rep["fwd_sent"] == [fwd_model] * n, rep
        else:
            assert rep["sends"] == [(2 if case.train else 1) * 2 * (n - 1)] * n, rep
            if not case.train:
                assert rep["fwd_sent"] == [fwd_model] * n, rep
        assert rep["recvs"] == rep["sends"]


def test_engine_runs_are_quick():
    """One launch per rank count, every case: a few seconds at most on a small CI machine."""
    for world in RANKS:
        reports(world)
        assert _RUNS[world][1] < 20, (world, _RUNS[world][1])


# -- the model's per-rank bytes (no processes) ---------------------------------------------------------

def test_model_bytes_sent_per_rank_formulas():
    n = 4096
    assert D.model_bytes_sent_per_rank([{"op": "p2p", "bytes": n, "group_size": 4, "count": 3}]) == 3 * n
    all_reduce = [{"op": "all_reduce", "bytes": n, "group_size": 4, "count": 2}]
    assert D.model_bytes_sent_per_rank(all_reduce) == 2 * 3 * n // 2
    for op in ("all_gather", "reduce_scatter", "all_to_all"):
        assert D.model_bytes_sent_per_rank([Collective(op, op, n, 4, count=1)]) == 3 * n // 4
    assert D.model_bytes_sent_per_rank([{"op": "all_reduce", "bytes": n, "group_size": 1, "count": 1}]) == 0
    third = D.model_bytes_sent_per_rank([{"op": "all_to_all", "bytes": 100, "group_size": 3, "count": 1}])
    assert third == pytest.approx(float(Fraction(200, 3)))
    with pytest.raises(ValueError, match="unknown collective"):
        D.model_bytes_sent_per_rank([{"op": "broadcast", "bytes": 1, "group_size": 2, "count": 1}])


def test_model_bytes_of_the_worked_example():
    """cp=4, batch 1, 64 tokens, 4 heads of 16, fp16: each rank's K/V chunk is 16 tokens x 4 heads x
    (16 + 16) x 2 bytes = 4096 bytes, sent 3 times; train adds 3 sends of 8192."""
    kw = dict(batch=1, seqlen=64, heads=4, head_dim=16, dtype="fp16", causal=False)
    assert D.model_bytes_sent_per_rank(predict_parallel("8xh100-nvlink", "cp=4", "mha", None, **kw).collectives) \
        == 3 * 4096
    train = predict_parallel("8xh100-nvlink", "cp=4", "mha", None, **dict(kw, phase="train")).collectives
    assert D.model_bytes_sent_per_rank(train) == 3 * 4096 + 3 * 8192
    tp = predict_parallel("8xh100-nvlink", "tp=4", "mha", None, **kw).collectives  # 64 x 64 x 2 bytes, 2(p-1)/p
    assert D.model_bytes_sent_per_rank(tp) == 64 * 64 * 2 * 3 // 2


# -- the sequence layout (no processes) -------------------------------------------------------------

@pytest.mark.parametrize("world", (1, 2, 3, 4))
@pytest.mark.parametrize("zigzag", (False, True))
def test_shards_round_trip(world, zigzag):
    x = torch.arange(2 * 3 * 24 * 5, dtype=torch.float64).view(2, 3, 24, 5)
    shards = [D.shard_sequence(x, r, world, zigzag) for r in range(world)]
    assert all(s.shape[2] == 24 // world for s in shards)
    assert torch.equal(D.unshard_sequence(shards, zigzag), x)
    if zigzag:
        assert D.chunk_bounds(0, 4, 16, True) == [(0, 2), (14, 16)]
    with pytest.raises(ValueError, match="equal chunks"):
        D.chunk_bounds(0, 5, 24, zigzag)


@pytest.mark.parametrize("world", (2, 3, 4))
@pytest.mark.parametrize("causal,zigzag", ((False, False), (True, False), (True, True)))
def test_ring_blocks_cover_exactly_the_mask(world, causal, zigzag):
    """For every rank and every chunk in hand, the blocks listed (the diagonal masked by position)
    are exactly the visible (query, key) pairs: nothing visible skipped, nothing hidden computed —
    and with zigzag every step after the first carries the same work (half the queries x the chunk)."""
    seqlen, local = 24, 24 // world
    for r in range(world):
        qp = D.token_positions(r, world, seqlen, zigzag)
        work = {}
        for src in range(world):
            kp = D.token_positions(src, world, seqlen, zigzag)
            want = (qp[:, None] >= kp[None, :]) if causal else torch.ones(local, local, dtype=torch.bool)
            got = torch.zeros(local, local, dtype=torch.bool)
            cells = 0
            for qs, ks, diag in D.ring_blocks(r, src, world, local, causal, zigzag):
                block = (qp[qs, None] >= kp[None, ks]) if diag else torch.ones(local, local, dtype=torch.bool)[qs, ks]
                assert block.any()
                if not diag:
                    assert want[qs, ks].all()  # an unmasked block holds only visible pairs
                got[qs, ks] |= block
                cells += block.numel()
            assert torch.equal(got, want), (r, src)
            work[src] = cells
        if zigzag:  # every chunk but our own: half our queries x the chunk
            assert {w for src, w in work.items() if src != r} == {local * local // 2}


# -- the launcher -------------------------------------------------------------------------------------

def _rank_raises(rank, world):
    if rank == 1:
        raise ValueError("rank one refuses")
    torch.distributed.barrier()  # waits on rank 1, which never comes: the launcher must stop it
    return rank


def _rank_dies(rank, world):
    if rank == 0:
        os._exit(3)
    return rank


def _sleeps(rank, world):
    time.sleep(60)


def _echo(rank, world, base, scale=1):
    t = torch.full((2,), float(rank))
    torch.distributed.all_reduce(t)
    return base + rank * scale, t


def test_launch_returns_results_by_rank():
    out = D.launch(_echo, 3, args=(10,), kwargs={"scale": 2})
    assert [r[0] for r in out] == [10, 12, 14]
    assert all(torch.equal(r[1], torch.full((2,), 3.0)) for r in out)


def test_launch_reports_a_failing_rank():
    t0 = time.monotonic()
    with pytest.raises(D.DistributedError, match=r"rank 1 of 2 failed") as e:
        D.launch(_rank_raises, 2, timeout_s=30, grace_s=1)
    assert "ValueError: rank one refuses" in str(e.value)
    assert time.monotonic() - t0 < 15


def test_launch_reports_a_dead_rank():
    with pytest.raises(D.DistributedError, match=r"rank 0 of 2 exited with code 3 without a result"):
        D.launch(_rank_dies, 2, timeout_s=30, grace_s=1)


def test_launch_times_out():
    t0 = time.monotonic()
    with pytest.raises(D.DistributedError, match=r"timed out after 2 s"):
        D.launch(_sleeps, 2, timeout_s=2)
    assert time.monotonic() - t0 < 10


def test_launch_refuses_nonsense():
    with pytest.raises(ValueError):
        D.launch(_echo, 0)


# -- the collective micro-benchmark ----------------------------------------------------------------

def _bench(tmp_path):
    out = tmp_path / "links.jsonl"
    recs = D.collective_benchmark(2, "gloo", sizes=(4096, 65536), repeats=3, warmup=1, out=out,
                                  cluster="8xh100-nvlink", timeout_s=60)
    return out, recs


def test_collective_benchmark_writes_records(tmp_path):
    out, recs = _bench(tmp_path)
    assert [(r["op"], r["bytes"]) for r in recs] == [(op, n) for op in D.BENCH_OPS for n in (4096, 65536)]
    lines = out.read_text().splitlines()
    assert len(lines) == len(recs)
    for line, rec in zip(lines, recs):
        back = json.loads(line)
        assert back == json.loads(json.dumps(rec))
        D.check_collective_record(back)
        assert back["schema"] == R.SCHEMA and back["kind"] == "collective" and back["group_size"] == 2
        assert back["backend"] == "gloo" and back["link"] == "intra_node"
        assert back["device"]["type"] == "cpu" and back["device"]["sm_count"] >= 1
        t = back["timing"]
        assert 0 < t["min_s"] <= t["median_s"] <= t["max_s"] and t["n"] == 3
        assert back["prediction"]["cluster"] == "8xh100-nvlink" and back["prediction"]["time_s"] > 0
        assert back["bandwidth"]["busbw_bytes_per_s"] == pytest.approx(
            back["terms"]["bytes_factor"] * back["bytes"] / t["median_s"])
    assert D.link_rows(recs)[0] == {"op": "all_reduce", "bytes": 4096, "group_size": 2,
                                    "time_s": recs[0]["timing"]["median_s"]}


def test_calibrate_link_recovers_planted_factors_from_records():
    """Records timed by the model with planted link factors: `calibrate_link` (records -> rows ->
    `links.fit_link`) gives the factors back."""
    from attnsim.simulator.cluster import load_cluster
    from attnsim.simulator.pricing import collective_time
    from attnsim.simulator.rates import LinkCalibration, link_rates
    cl = load_cluster("8xh100-nvlink")
    lr = link_rates(cl.intra, LinkCalibration(bandwidth=0.6, latency_s=3e-6))
    recs = []
    for op in D.BENCH_OPS:
        for n in (1 << 12, 1 << 18, 1 << 24):
            t = collective_time(Collective(op, op, n, 4), lr)
            timing = {"median_s": t, "p10_s": t, "p90_s": t, "min_s": t, "max_s": t, "n": 1, "method": "model"}
            recs.append(D.collective_record(op=op, nbytes=n, group_size=4, backend="nccl",
                                            device=D.cpu_device_block(), timing=timing))
    fit = D.calibrate_link(recs, cl)
    assert fit.calibration.bandwidth == pytest.approx(0.6, rel=1e-6)
    assert fit.calibration.latency_s == pytest.approx(3e-6, rel=1e-6)


def test_check_collective_record_refuses_defects(tmp_path):
    dev = D.cpu_device_block()
    timing = {"median_s": 2e-5, "p10_s": 1e-5, "p90_s": 3e-5, "min_s": 1e-5, "max_s": 4e-5, "n": 5, "method": "x"}
    rec = D.collective_record(op="p2p", nbytes=1024, group_size=2, backend="gloo", device=dev, timing=timing)
    assert rec["prediction"] is None and rec["bandwidth"]["algbw_bytes_per_s"] == pytest.approx(1024 / 2e-5)
    for key, value in (("op", "broadcast"), ("bytes", 0), ("group_size", "two"), ("backend", "")):
        with pytest.raises(R.RecordError):
            D.check_collective_record({**rec, key: value})
    with pytest.raises(R.RecordError, match="p10_s"):
        D.check_collective_record({**rec, "timing": {**timing, "p10_s": 1e-3}})
    path = tmp_path / "one.jsonl"
    D.append_collective_record(path, rec)
    D.append_collective_record(path, rec)
    assert [json.loads(x)["op"] for x in path.read_text().splitlines()] == ["p2p", "p2p"]


def test_read_records_reads_collective_records(tmp_path):
    dev = D.cpu_device_block()
    timing = {"median_s": 2e-5, "p10_s": 1e-5, "p90_s": 3e-5, "min_s": 1e-5, "max_s": 4e-5, "n": 5, "method": "x"}
    path = tmp_path / "links.jsonl"
    for op in D.BENCH_OPS:
        D.append_collective_record(path, D.collective_record(op=op, nbytes=4096, group_size=2, backend="gloo",
                                                             device=dev, timing=timing))
    recs, warnings = R.read_records(path)
    assert [r["op"] for r in recs] == list(D.BENCH_OPS) and not warnings


def test_bench_script_prints_and_appends(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_collectives", ROOT / "benchmarks" / "bench_collectives.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "bench.jsonl"
    assert mod.main(["--sizes", "4K,16K", "--repeats", "2", "--warmup", "1", "--ops", "all_reduce,p2p",
                     "--cluster", "8xh100-nvlink", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "all_reduce" in text and "p2p" in text and "appended 4 records" in text
    assert len(out.read_text().splitlines()) == 4
    assert mod.parse_sizes("4K,1M") == [4096, 1 << 20]
