"""NATTEN's token permutation priced as the gather (token_permute) and scatter (token_unpermute) it is:
each contiguous run is one token of one tensor, heads x head_dim x dtype bytes (NATTEN's heads-last
layout, flip_tiled_dims=True), and device memory moves whole units of the profile's
`l2_fetch_granularity_bytes` (32-byte sectors on NVIDIA GPUs). `masks.permutation_ops` describes the
runs, `pricing.run_waste_bytes` prices them; every time below is written out by hand."""
import math
from dataclasses import replace

import numpy as np
import pytest

from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.masks import permutation_ops
from attnsim.simulator.model import predict
from attnsim.simulator.na import NAMask
from attnsim.simulator.ops import Pointwise
from attnsim.simulator.pricing import op_kernels, run_waste_bytes
from attnsim.simulator.rates import rates
from attnsim.simulator.vectorized import predict_many
from attnsim.simulator.workload import Workload

H100 = load_hardware("h100")
LAUNCH, HBM, LAT = 3e-6, 3.35e12, 2.73e-7  # the H100 profile's launch overhead, HBM bandwidth, DRAM latency
REL = 1e-12


def test_the_fetch_granularity_is_a_sourced_profile_figure():
    assert H100.l2_fetch_granularity_bytes == 32
    assert "Coalesced Access to Global Memory" in H100.sources["l2_fetch_granularity_bytes"]
    assert "fetchGranularity = 32 bytes" in H100.sources["l2_fetch_granularity_bytes"]  # MT4G's p-chase on an H100
    assert load_hardware("mi300x").l2_fetch_granularity_bytes == 128  # MT4G's p-chase on an MI300X


@pytest.mark.parametrize("run", [2048, 6144, 256, 128, 64, 32, 144, 80, 48, 16, 8, 40, 12, 1])
def test_run_waste_against_sector_enumeration(run):
    """Runs of L bytes tiling a contiguous, 32-byte-aligned tensor start at offsets k x L; over one period
    of offsets, count the 32-byte sectors each run touches. The pricer's closed form (32 - gcd(L, 32)
    wasted bytes a run) must equal that average."""
    g = math.gcd(run, 32)
    period = 32 // g
    sectors = sum((k * run + run - 1) // 32 - (k * run) // 32 + 1 for k in range(period))
    waste_per_run = sectors * 32 / period - run
    assert run_waste_bytes(rates(H100), ((period * 1000, run),)) == pytest.approx(period * 1000 * waste_per_run)
    assert waste_per_run == 32 - g


def test_no_granularity_in_the_profile_is_a_stream():
    bare = replace(H100, l2_fetch_granularity_bytes=None)
    assert run_waste_bytes(rates(bare), ((1000, 144),)) == 0
    op = Pointwise("copy", read=144_000, write=144_000, runs=((1000, 144),))
    assert op_kernels(op, rates(bare), "bf16")[0].hbm_bytes == 288_000


def test_long_runs_are_priced_as_a_stream():
    """2D neighborhood attention, 8 heads of d 128 in bf16: a token of Q (K, V, O) is 8 x 128 x 2 = 2 KiB,
    64 sectors exactly, so the gather wastes nothing: bytes / HBM bandwidth + the launch overhead."""
    w = Workload(batch=1, seqlen_q=4096, heads_q=8, head_dim_qk=128)
    p = predict(w, H100, "fa3", mask=NAMask((64, 64), (9, 9)), calibration=None)
    perm, unperm = p.kernels[:2]
    assert (perm.name, unperm.name) == ("token_permute", "token_unpermute")
    qkv = 3 * 4096 * 8 * 128 * 2  # Q, K, V: 12 MiB, read in 2 KiB runs and written as a stream
    o = 4096 * 8 * 128 * 2
    assert perm.hbm_bytes == 2 * qkv and unperm.hbm_bytes == 2 * o
    assert perm.time_s == pytest.approx(LAUNCH + 2 * qkv / HBM, rel=REL)
    assert unperm.time_s == pytest.approx(LAUNCH + 2 * o / HBM, rel=REL)


def test_short_runs_waste_their_partial_sectors():
    """One head of d 72 in bf16: a token is a 144-byte run. Runs start at offsets k x 144, i.e. at every
    multiple of gcd(144, 32) = 16 within a sector: on average a run touches 1 + (144 - 16) / 32 = 5
    sectors, 160 bytes, so the gather side moves at 144 / 160 = 90% of the HBM bandwidth and the
    contiguous side streams. Time = launch + strided bytes / (HBM x 0.9) + contiguous bytes / HBM."""
    w = Workload(batch=2, seqlen_q=4096, heads_q=1, head_dim_qk=72)
    p = predict(w, H100, "fa3", mask=NAMask((64, 64), (9, 9)), calibration=None)
    perm, unperm = p.kernels[:2]
    eff = 144 / (32 + 144 - 16)
    assert eff == 0.9
    qkv = 3 * 2 * 4096 * 144  # Q, K, V of both sequences
    o = 2 * 4096 * 144
    t_perm = LAUNCH + max(qkv / (HBM * eff) + qkv / HBM, 2 * LAT)  # gathered reads, streamed writes
    t_unperm = LAUNCH + max(o / HBM + o / (HBM * eff), 2 * LAT)  # streamed reads, scattered writes
    assert qkv / (HBM * eff) + qkv / HBM > 2 * LAT and o / HBM + o / (HBM * eff) > 2 * LAT  # bandwidth sets them
    assert perm.time_s == pytest.approx(t_perm, rel=REL)
    assert unperm.time_s == pytest.approx(t_unperm, rel=REL)
    assert perm.hbm_bytes == qkv + qkv + 3 * 2 * 4096 * 16  # 16 wasted bytes per token and tensor
    assert unperm.hbm_bytes == o + o + 2 * 4096 * 16


def test_the_runs_are_one_token_of_each_tensor():
    """Q and O runs are heads_q x d (dv) x s, K and V runs heads_kv x d (dv) x s; train moves dO in and
    dQ, dK, dV out too. The bytes are those of the stream the model priced before."""
    w = Workload(batch=3, seqlen_q=1024, heads_q=16, heads_kv=4, head_dim_qk=128, head_dim_v=64, phase="train")
    perm, unperm = permutation_ops(w)
    q, o, k, v = 16 * 128 * 2, 16 * 64 * 2, 4 * 128 * 2, 4 * 64 * 2
    n = 3 * 1024
    assert perm.runs == ((n, q), (n, k), (n, v), (n, o))  # Q, K, V, dO
    assert unperm.runs == ((n, o), (n, q), (n, k), (n, v))  # O, dQ, dK, dV
    assert perm.read == perm.write == n * (q + k + v + o) == unperm.read == unperm.write


def test_predict_many_prices_the_runs_as_predict_does():
    """The grouped path of `predict_many` (mask variants over arrays of batches) reads the same runs."""
    batch = np.array([1, 2, 3])
    params = {"token_shape": "64x64", "kernel_size": "9x9"}
    for heads, d in ((1, 72), (8, 128), (3, 40)):
        m = predict_many(H100, "fa3", variant="na", params=params, batch=batch, heads_q=heads, head_dim_qk=d,
                         calibration=None)
        for i, b in enumerate(batch):
            p = predict(Workload(batch=int(b), seqlen_q=4096, heads_q=heads, head_dim_qk=d), H100, "fa3",
                        mask=NAMask((64, 64), (9, 9)), calibration=None)
            assert m["time_s"][i] == pytest.approx(p.time_s, rel=1e-9)
            assert int(m["hbm_bytes"][i]) == p.hbm_bytes
