"""rates(hw, family, calibration): the figures a prediction runs at, written out by hand from the H100
profile (hardware_profiles/h100_sxm5.yaml), and a calibration reaching every price through them."""
import math

import pytest

from attnsim.simulator.families import FAMILIES
from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.masks import CausalMask
from attnsim.simulator.model import predict
from attnsim.simulator.rates import Calibration, peak_rates, rates
from attnsim.simulator.workload import Workload

H100 = load_hardware("h100")
REL = 1e-12


def test_uncalibrated_rates_by_hand():
    r = rates(H100, FAMILIES["fa3"])
    assert r.clock_hz == 1.83e9 and r.sm_count == 132 and not r.calibrated
    assert r.mma_per_sm("bf16") == pytest.approx(4096 * 1.83e9, rel=REL)  # FA3's wgmma: efficiency 1
    assert r.mma_device("bf16") == pytest.approx(989.4e12, rel=1e-3)  # the datasheet's dense BF16 figure
    assert r.exp_per_sm == pytest.approx(16 * 1.83e9, rel=REL)
    assert r.fp32_ops_per_sm == pytest.approx(256 / 2 * 1.83e9, rel=REL)  # FMA = one instruction, two FLOPs
    assert r.smem_per_sm == pytest.approx(128 * 1.83e9, rel=REL)
    assert (r.hbm_bytes_per_s, r.dram_latency_s, r.launch_overhead_s) == (3.35e12, 2.73e-7, 3.0e-6)
    assert r.overlap == 1.0 and r.l2_bytes_per_s == 0.0  # no sourced L2 bandwidth for the H100


def test_family_efficiency_and_library_rates():
    """FA2's mma.sync reaches 2/3 of Hopper's tensor peak (FA3 paper); library kernels (GEMMs) do not."""
    assert rates(H100, FAMILIES["fa2"]).mma_per_sm("bf16") == pytest.approx(4096 * 1.83e9 * 2 / 3, rel=REL)
    assert rates(H100).mma_per_sm("bf16") == pytest.approx(4096 * 1.83e9, rel=REL)
    assert rates(H100, FAMILIES["fa2"]).overlap == 0.0 and rates(H100).overlap == 0.0


def test_peak_rates_are_the_bounds():
    p = peak_rates(H100)
    assert p.clock_hz == 1.98e9 and p.mma_efficiency == 1.0
    assert p.exp_device() == pytest.approx(16 * 132 * 1.98e9, rel=REL)


def test_identity_calibration_changes_nothing():
    w = Workload(batch=2, seqlen_q=4096, heads_q=16, causal=True, phase="train")
    a, b = predict(w, H100, calibration=None), predict(w, H100, calibration=Calibration(source="identity"))
    assert a.time_s == b.time_s and not b.calibrated and b.to_json()["calibrated"] is False


def test_calibration_reaches_every_unit():
    """Each factor multiplies its unit's rate: a compute-bound forward slows by the tensor factor
    (FA3 overlaps the softmax, so the tile time is the MMA time); a memory-bound decode by the HBM
    factor; the clock and the launch overhead are replaced. The bound (speed of light) never moves."""
    prefill = Workload(batch=8, seqlen_q=8192, heads_q=32, head_dim_qk=128)
    base = predict(prefill, H100, "fa3", calibration=None)
    slow = predict(prefill, H100, "fa3", calibration=Calibration(tensor=0.5))
    assert slow.calibrated and slow.to_json()["calibrated"] is True
    assert slow.bound.time_s == base.bound.time_s
    (kb,), (ks,) = base.kernels, slow.kernels
    assert kb.bound == "tensor" and ks.unit_times_s["tensor"] == pytest.approx(2 * kb.unit_times_s["tensor"], rel=REL)
    assert slow.time_s == pytest.approx(2 * base.time_s, rel=0.02)  # launch and fill/drain do not scale
    decode = Workload(batch=64, seqlen_q=1, seqlen_kv=32768, heads_q=32, heads_kv=8, phase="decode")
    d0 = predict(decode, H100, "fa3", calibration=None)
    d1 = predict(decode, H100, "fa3", calibration=Calibration(hbm=0.8))
    assert d0.kernels[0].bound == "hbm"
    assert d1.kernels[0].unit_times_s["hbm"] == pytest.approx(d0.kernels[0].unit_times_s["hbm"] / 0.8, rel=REL)
    clocked = predict(prefill, H100, "fa3", calibration=Calibration(clock_hz=1.6e9))
    assert clocked.clock_hz == 1.6e9 and clocked.to_json()["clock_hz"] == 1.6e9
    assert clocked.kernels[0].unit_times_s["tensor"] == pytest.approx(kb.unit_times_s["tensor"] * 1.83 / 1.6, rel=REL)
    tiny = Workload(batch=1, seqlen_q=128, heads_q=1, head_dim_qk=64)
    t0 = predict(tiny, H100, "fa3", calibration=None)
    t1 = predict(tiny, H100, "fa3", calibration=Calibration(launch_overhead_s=10e-6))
    assert t1.time_s - t0.time_s == pytest.approx(7e-6, rel=1e-9)  # one kernel: 3 us -> 10 us


def test_calibration_applies_to_the_ops_around_the_core():
    """A layer's GEMMs are library kernels: the calibration's tensor factor slows them too."""
    w = Workload(batch=4, seqlen_q=4096, heads_q=32, causal=True)
    a = predict(w, H100, "fa3", scope="layer", calibration=None)
    b = predict(w, H100, "fa3", scope="layer", calibration=Calibration(tensor=0.5))
    qa, qb = (next(k for k in p.kernels if k.name == "qkv_proj") for p in (a, b))
    assert qb.time_s > qa.time_s * 1.5


@pytest.mark.parametrize("bad", [dict(tensor=0.0), dict(hbm=-1.0), dict(exp=math.nan), dict(overlap=1.5),
                                 dict(clock_hz=0.0), dict(launch_overhead_s=math.inf), dict(smem=1e9),
                                 dict(smem_exposed=1.5), dict(smem_exposed=-0.1)])
def test_calibration_refuses_nonsense(bad):
    with pytest.raises(ValueError):
        Calibration(**bad)


def test_rates_are_memoized_per_family_and_calibration():
    fam = FAMILIES["fa2"]
    assert rates(H100, fam) is rates(H100, fam)
    assert rates(H100, fam, Calibration(tensor=0.9)) is not rates(H100, fam)
    assert rates(H100, fam, Calibration(tensor=0.9)).mma_efficiency == pytest.approx(0.9 * 2 / 3, rel=REL)
    assert rates(H100, FAMILIES["fa3"]) is not rates(H100, fam)


def test_masks_are_shared_values():
    """The plain masks are shared instances (their memo serves every prediction); a prediction over
    a fresh CausalMask equals one over the shared one."""
    w = Workload(batch=2, seqlen_q=3000, heads_q=8, causal=True)
    assert predict(w, H100, calibration=None).time_s == predict(w, H100, mask=CausalMask(), calibration=None).time_s


@pytest.mark.parametrize("call", [lambda: Calibration(tensor=True), lambda: Calibration(overlap="a"),
                                  lambda: Calibration(source=3),
                                  lambda: predict(Workload(), H100, calibration={"tensor": 0.5}),
                                  lambda: predict(Workload(), H100, scope="layer", rope_dim=-2000, calibration=None),
                                  lambda: predict(Workload(), H100, scope="layer", d_model=-5, calibration=None),
                                  lambda: predict(Workload(), H100, scope="layer", rope_dim=7, calibration=None),
                                  lambda: predict(Workload(), H100, mask="causal", calibration=None),
                                  lambda: predict(Workload(), H100, kernel="", calibration=None)])
def test_bad_python_calls_are_attnsim_errors(call):
    from attnsim.simulator.errors import AttnsimError
    with pytest.raises(AttnsimError):
        call()


def test_predict_takes_a_hardware_name():
    w = Workload(batch=2, seqlen_q=2048, heads_q=8)
    assert predict(w, "h100", calibration=None).time_s == predict(w, H100, calibration=None).time_s


def _fwd(w, cal=None):
    p = predict(w, H100, "fa3", calibration=cal)
    return p, p.kernels_for("forward")[0]


def test_cta_io_adds_each_ctas_own_io_at_its_sms_share_of_hbm():
    """One wave (16 heads x 8 query tiles = 128 CTAs on 132 SMs, one CTA per SM): the makespan is the
    longest CTA, so cta_io = 1 adds exactly one CTA's Q and O tile bytes (128 rows x (128 + 128)
    channels x 2 B) at 3.35 TB/s / 132 SMs."""
    w = Workload(batch=1, seqlen_q=1024, heads_q=16, head_dim_qk=128)
    _, base = _fwd(w)
    _, slow = _fwd(w, Calibration(cta_io=1.0))
    assert base.ctas == 128 and base.ctas_per_sm == 1 and base.tile.startswith("128x")
    assert slow.time_s - base.time_s == pytest.approx(128 * 256 * 2 / (3.35e12 / 132), rel=1e-9)
    _, half = _fwd(w, Calibration(cta_io=0.5))
    assert half.time_s - base.time_s == pytest.approx(0.5 * 128 * 256 * 2 / (3.35e12 / 132), rel=1e-9)


def test_smem_exposed_adds_a_fraction_of_each_tiles_shared_memory_time():
    """One wave of 128 CTAs, FA3's 128x176 tile at d = 128: 1024 keys are 6 kv tiles (the last ragged). A tile's
    shared memory: K and V (176 keys x 256 channels x 2 B) read by its two consumer warpgroups (TMA writes are not
    priced), Q (128 x 128 x 2 B) read once: 212,992 B at 128 B/clk = 1664 clk, below its tensor time
    (2 x 128 x 176 x 256 FLOPs at 4096 FLOP/clk = 2816 clk), so smem_exposed = 0.5 adds 832 clk to each of the
    longest CTA's 6 tiles at 1.83 GHz."""
    w = Workload(batch=1, seqlen_q=1024, heads_q=16, head_dim_qk=128)
    _, base = _fwd(w)
    _, slow = _fwd(w, Calibration(smem_exposed=0.5))
    assert base.tile.startswith("128x176") and base.ctas == 128 and base.ctas_per_sm == 1
    smem_clk = (176 * 256 * 2 * 2 + 128 * 128 * 2) / 128
    assert smem_clk == 1664 < 2 * 128 * 176 * 256 / 4096
    assert slow.time_s - base.time_s == pytest.approx(6 * 0.5 * smem_clk / 1.83e9, rel=1e-9)
    # a tile bound by shared memory itself (FA2 at d = 256 on H100: 64x64 tiles, every warp reading K and V)
    # pays only what the MMA/softmax chain plus the exposed part adds above it
    w256 = Workload(batch=4, seqlen_q=4096, heads_q=16, head_dim_qk=256)
    p0 = predict(w256, H100, "fa2", calibration=None).kernels_for("forward")[0]
    p1 = predict(w256, H100, "fa2", calibration=Calibration(smem_exposed=0.05)).kernels_for("forward")[0]
    u = p0.unit_times_s
    assert u["smem"] > u["tensor"] + u["exp"] + 0.05 * u["smem"]  # FA2's overlap 0: the chain is tensor + exp
    assert p1.time_s == pytest.approx(p0.time_s, rel=1e-12)


def test_partial_tile_adds_a_fraction_of_a_full_tile_to_each_masked_one():
    """Causal, one wave, square 128x128 tiles: the longest CTA (the last query tile) holds one
    diagonal (partial) tile, so partial_tile = 0.5 adds half a full tile: at FA3's overlap 1 a full
    tile is its tensor time, 2 x 128 x 128 x (128 + 128) FLOPs at 4096 FLOP/clk x 1.83 GHz."""
    w = Workload(batch=1, seqlen_q=1024, heads_q=16, head_dim_qk=128, causal=True)
    _, base = _fwd(w)
    _, slow = _fwd(w, Calibration(partial_tile=0.5))
    assert base.tile.startswith("128x128") and base.ctas == 128
    t_tensor = 2 * 128 * 128 * 256 / (4096 * 1.83e9)
    assert t_tensor > 128 * 128 / (16 * 1.83e9)  # the tensor time is the tile's largest unit
    assert slow.time_s - base.time_s == pytest.approx(0.5 * t_tensor, rel=1e-9)
    # dense with whole tiles (1408 = 8 x 176 keys, 11 x 128 queries): no partial tile, no change; dense
    # 1024 keys end in a ragged (masked) kv tile, which pays
    dense = Workload(batch=1, seqlen_q=1408, heads_q=16, head_dim_qk=128)
    assert _fwd(dense)[1].tiles["partial"] == 0
    assert _fwd(dense, Calibration(partial_tile=0.5))[1].time_s == pytest.approx(_fwd(dense)[1].time_s, rel=1e-12)
    ragged = Workload(batch=1, seqlen_q=1024, heads_q=16, head_dim_qk=128)
    assert _fwd(ragged, Calibration(partial_tile=0.5))[1].time_s > _fwd(ragged)[1].time_s


def test_backward_factor_scales_only_the_backward_kernels_tiles():
    w = Workload(batch=2, seqlen_q=4096, heads_q=16, head_dim_qk=128, phase="train")
    base = predict(w, H100, "fa3", calibration=None)
    slow = predict(w, H100, "fa3", calibration=Calibration(backward=1.5))
    assert slow.kernels_for("forward")[0].time_s == pytest.approx(base.kernels_for("forward")[0].time_s, rel=1e-12)
    b0, b1 = base.kernels_for("backward")[0], slow.kernels_for("backward")[0]
    # many waves of equal CTAs: the makespan grows by the tile time's growth, less the latency terms
    assert 1.4 * b0.time_s < b1.time_s < 1.5 * b0.time_s


@pytest.mark.parametrize("phase", ["prefill", "train", "decode"])
def test_the_mechanisms_reach_both_paths_alike(phase):
    import numpy as np
    from attnsim.simulator.vectorized import predict_many
    cal = Calibration(tensor=0.8, overlap=0.3, cta_io=0.7, partial_tile=0.2, causal=0.15, backward=1.3, hbm=0.9,
                      smem_exposed=0.4)
    rng = np.random.default_rng(7)
    n = 24
    cols = dict(batch=rng.integers(1, 5, n), heads_q=rng.choice([8, 16, 32], n), head_dim_qk=rng.choice([64, 128], n),
                causal=rng.integers(0, 2, n).astype(bool))
    if phase == "decode":
        cols.update(seqlen_q=rng.integers(1, 3, n), seqlen_kv=rng.integers(256, 9000, n))
    else:
        cols.update(seqlen_q=rng.integers(64, 5000, n))
    m = predict_many(H100, "fa2", phase=phase, calibration=cal, **cols)
    for i in range(n):
        c = {k: v[i].item() for k, v in cols.items()}
        p = predict(Workload(phase=phase, **c), H100, "fa2", calibration=cal)
        assert m["time_s"][i] == pytest.approx(p.time_s, rel=1e-9), c


def test_causal_adds_a_fraction_to_every_tile_of_a_causal_kernel():
    """Causal, one wave of 128 CTAs, 128x128 tiles: the longest CTA (the last of 8 query tiles) runs 7 full
    tiles and the diagonal one, each its tensor time (FA3's overlap 1: the exp and mask work hide behind
    it), so causal = 0.1 adds 0.1 x 8 tensor times; a dense kernel's tiles do not pay it."""
    w = Workload(batch=1, seqlen_q=1024, heads_q=16, head_dim_qk=128, causal=True)
    _, base = _fwd(w)
    _, slow = _fwd(w, Calibration(causal=0.1))
    t_tensor = 2 * 128 * 128 * 256 / (4096 * 1.83e9)
    assert slow.time_s - base.time_s == pytest.approx(0.1 * 8 * t_tensor, rel=1e-9)
    dense = Workload(batch=1, seqlen_q=1408, heads_q=16, head_dim_qk=128)
    assert _fwd(dense, Calibration(causal=0.1))[1].time_s == pytest.approx(_fwd(dense)[1].time_s, rel=1e-12)
