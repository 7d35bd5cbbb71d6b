"""The fa4 family (FlashAttention-4, Blackwell): its forward's exp2 emulation priced per tile as the bound prices
it, its head-dim 256 forward (the dedicated 2-CTA kernel), its fp8 forward, and what it refuses per phase.

Sources (Dao-AILab/flash-attention flash_attn/cute): softmax.py SoftmaxSm100.apply_exp2_convert (a fraction of
each row's exp2s as a degree-3 polynomial on the FMA pipes, the rest on MUFU.EX2; masked tiles all on MUFU in
flash_fwd_sm100.py's softmax_step); sm100_hd256_2cta_fmha_forward.py (tile_m = tile_n = 128 per CTA, 2-CTA
clusters, kv_stage = 4 half tiles, 12 warps; emulation on every tile); flash_bwd_sm100.py (P = cute.math.exp2:
no emulation); interface.py ("FA4 CuTe FP8 backward is not supported yet (forward-only)"; head dims <= 128,
192/128, 256/256 on SM100).
"""
import dataclasses

import pytest

from attnsim.simulator.bound import unit_times
from attnsim.simulator.errors import AttnsimError, UnsupportedCore
from attnsim.simulator.families import FAMILIES, can_implement, check_family, fwd_tile_candidates
from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.model import SMRates, _bwd_tile_costs, _fwd_tile_costs, predict
from attnsim.simulator.ops import Tile, Work
from attnsim.simulator.rates import Calibration, peak_rates, rates
from attnsim.simulator.workload import Workload

FA4 = FAMILIES["fa4"]


@pytest.fixture(scope="module")
def b200():
    return load_hardware("b200")


def _tile(hw, dtype="bf16", d=128, k=1, calibration=None, family=FA4):
    r = rates(hw, family, calibration)
    tile = fwd_tile_candidates(family, hw, d, d, False, dtype)[0]
    s = {"bf16": 2, "fp8": 1}[dtype]
    return r, tile, _fwd_tile_costs(r, family, tile, k, d, d, s, s, SMRates.of(r, dtype, "fp32"))


# -- the softmax of one tile: SFU and FP32 pipes share the exp2s (B200 by hand) -----------------------------
def test_fa4_tile_softmax_is_the_sfu_and_fp32_split_by_hand(b200):
    """B200, sustained clock 1.856 GHz: SFU 16 exp2/clk/SM, FP32 256 FLOP/clk/SM = 128 instructions/clk/SM, one
    emulated exp2 = 6 FP32 instructions (b200.yaml exp2_emulation_fp32_ops). The 256 x 128 tile has 32768 scores,
    each one exp2 and 4 FP32 instructions (scale, max, sum, rescale). Alone the SFU needs 32768 / 16 = 2048 clk
    and the FP32 pipes 131072 / 128 = 1024 clk; sharing the exp2s at the best split (x emulated: (32768 - x) / 16
    = (131072 + 6x) / 128) both finish at (32768 + 131072 / 6) / (16 + 128 / 6) = 1462.857 clk (x = 28.6 %)."""
    clock = 1.856e9
    r, tile, tc = _tile(b200)
    assert (tile.block_m, tile.block_n) == (256, 128)
    assert r.clock_hz == clock and r.exp2_emulation_fp32_ops == 6
    split_clk = (32768 + 131072 / 6) / (16 + 128 / 6)
    assert split_clk == pytest.approx(1462.857, abs=1e-3)
    x = 32768 - 16 * split_clk
    assert x / 32768 == pytest.approx(0.2857, abs=1e-4)
    assert (131072 + 6 * x) / 128 == pytest.approx(split_clk)
    assert tc.parts["exp"] == pytest.approx(split_clk / clock, rel=1e-12)
    assert tc.parts["fp32"] == pytest.approx(1024 / clock, rel=1e-12)  # the softmax's own FP32 work
    # bf16 hd128: the matmuls take 2 x 256 x 128 x (128 + 128) / 8192 = 2048 clk and hide the softmax (overlap 1)
    assert tc.parts["tensor"] == pytest.approx(2048 / clock, rel=1e-12)
    assert tc.t_full == pytest.approx(2048 / clock, rel=1e-12)


def test_fa4_tile_softmax_equals_the_bounds_exp_term_per_sm(b200):
    """The tile's softmax is bound.unit_times' exp term for the same exps and FP32 work on one SM's share: 148
    tiles' worth of work over 148 SMs at the same clock."""
    _, _, tc = _tile(b200)
    work = Work(exp=148 * 32768.0, fp32=148 * 131072.0)
    t = unit_times(work, b200, r=peak_rates(b200, clock_hz=1.856e9))
    assert tc.parts["exp"] == pytest.approx(float(t["exp"]), rel=1e-12)


def test_fa4_masked_tiles_keep_their_exp2s_on_the_sfu_and_fp8_shows_it(b200):
    """fp8 hd128: the matmuls take 1024 clk, so the softmax sets the tile. A full tile shares its exp2s (1462.857
    clk); a masked tile runs them all on MUFU (flash_fwd_sm100.py passes ex2_emu_freq=0 with a mask_fn): max(32768
    / 16, 32768 x (4 + 3) / 128) = 2048 clk. Shared memory: K and V tiles (128 x 256 B) read once per 128-row Q
    tile (2 readers) plus Q (256 x 128 B) = 98304 B / 128 B/clk = 768 clk."""
    clock = 1.856e9
    _, tile, tc = _tile(b200, dtype="fp8")
    assert tc.parts["tensor"] == pytest.approx(1024 / clock, rel=1e-12)
    assert tc.parts["smem"] == pytest.approx(768 / clock, rel=1e-12)
    assert tc.t_full == pytest.approx((32768 + 131072 / 6) / (16 + 128 / 6) / clock, rel=1e-12)
    assert tc.t_partial == pytest.approx(2048 / clock, rel=1e-12)


def test_fa4_hd256_emulates_on_masked_tiles_too(b200):
    """sm100_hd256_2cta_fmha_forward.py's softmax_step emulates on every tile. Overlap 0 exposes the softmax: the
    128 x 128 tile (16384 scores) takes 2 x 128 x 128 x 512 / 8192 = 2048 clk of matmuls; full tiles add
    16384 x (1 + 4/6) / (16 + 128/6) = 731.43 clk, masked ones (7 FP32 instructions a score)
    16384 x (1 + 7/6) / (16 + 128/6) = 950.86 clk (more than their FP32 work alone, 16384 x 7 / 128 = 896)."""
    clock = 1.856e9
    _, tile, tc = _tile(b200, d=256, calibration=Calibration(overlap=0.0))
    assert (tile.block_m, tile.block_n, tile.num_warps, tile.stages) == (128, 128, 12, 2)
    full, masked = 16384 * (1 + 4 / 6) / (16 + 128 / 6), 16384 * (1 + 7 / 6) / (16 + 128 / 6)
    assert (full, masked) == (pytest.approx(731.43, abs=0.01), pytest.approx(950.86, abs=0.01))
    assert tc.t_full == pytest.approx((2048 + full) / clock, rel=1e-12)
    assert tc.t_partial == pytest.approx((2048 + masked) / clock, rel=1e-12)


def test_ctas_sharing_an_sm_share_its_pipes(b200):
    _, _, one = _tile(b200)
    _, _, two = _tile(b200, k=2)
    assert two.parts["exp"] == pytest.approx(2 * one.parts["exp"], rel=1e-12)


def test_only_the_fa4_forward_emulates(b200):
    """The backward's exps stay on the SFU (flash_bwd_sm100.py: cute.math.exp2), and a family without the trait
    keeps max(exps / SFU, FP32 / FP32 pipes)."""
    plain = dataclasses.replace(FA4, exp2_emulation=False)
    r = rates(b200, FA4)
    tile = Tile(64, 128, 8, 2)
    a = _bwd_tile_costs(r, FA4, tile, 1, 128, 128, 2, SMRates.of(r, "bf16", "fp32"))
    b = _bwd_tile_costs(r, plain, tile, 1, 128, 128, 2, SMRates.of(r, "bf16", "fp32"))
    assert (a.t_full, a.t_partial, a.parts) == (b.t_full, b.t_partial, b.parts)
    assert a.parts["exp"] == pytest.approx(64 * 128 / 16 / 1.856e9, rel=1e-12)
    _, _, tc = _tile(b200, family=plain)
    assert tc.parts["exp"] == pytest.approx(2048 / 1.856e9, rel=1e-12)
    assert not any(f.exp2_emulation for name, f in FAMILIES.items() if f is not FA4)


# -- head dim 256 (and 192/128): the forward FA4 runs, per phase -----------------------------------------------
def test_fa4_hd256_tile_fills_the_kernels_shared_memory(b200):
    """Per CTA of the 2-CTA pair: Q 128 x 256 x 2 B = 64 KiB and 4 K/V stages of half a 128 x 256 tile each for K
    and for V = 128 KiB: 196608 B, one CTA per SM; tensor memory 128 + 256 = 384 of 512 columns."""
    leg = can_implement(FA4, b200, Tile(128, 128, 12, 2), 256, 256, "bf16")
    assert leg.ok and leg.smem_bytes == 128 * 256 * 2 + 2 * 128 * 256 * 2 == 196608 and leg.ctas_per_sm == 1
    assert fwd_tile_candidates(FA4, b200, 192, 128, True, "bf16") == [Tile(256, 128, 16, 2)]
    assert can_implement(FA4, b200, Tile(256, 128, 16, 2), 192, 128, "bf16").ok


@pytest.mark.parametrize("phase,d,dv,ok", [
    ("prefill", 256, 256, True), ("train", 256, 256, True),  # the dedicated hd256 forward and backward kernels
    ("decode", 256, 256, False),  # the hd256 kernel has no split-KV, no pack-GQA (attnsim's FA4 decode has both)
    ("prefill", 192, 128, True), ("decode", 192, 128, True),
    ("train", 192, 128, False),  # flash_bwd_sm100.py: head_dim and head_dim_v must be the same
    ("train", 64, 128, False), ("prefill", 64, 128, True),
    ("prefill", 240, 240, False), ("prefill", 192, 192, False), ("prefill", 256, 128, False),
])
def test_fa4_head_dims_per_phase(b200, phase, d, dv, ok):
    if ok:
        check_family(FA4, b200, "bf16", d, dv, phase)
        w = Workload(batch=2, heads_q=8, seqlen_q=1 if phase == "decode" else 1024, seqlen_kv=1024,
                     head_dim_qk=d, head_dim_v=dv, phase=phase)
        p = predict(w, b200, "fa4", calibration=None)
        assert p.time_s >= p.bound.time_s > 0
    else:
        with pytest.raises(UnsupportedCore, match=f"fa4.*{phase}.*{d}/{dv}"):
            check_family(FA4, b200, "bf16", d, dv, phase)


def test_fa4_hd256_prediction_reports_the_2cta_kernels_tile(b200):
    p = predict(Workload(batch=4, heads_q=8, seqlen_q=8192, head_dim_qk=256), b200, "fa4", calibration=None)
    k = p.kernels[0]
    assert (k.tile_obj.block_m, k.tile_obj.block_n) == (128, 128)
    assert k.ctas == 4 * 8 * 8192 // 128


# -- fp8: forward only -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_fa4_fp8_forward_runs(b200, phase):
    w = Workload(batch=4, heads_q=16, seqlen_q=1 if phase == "decode" else 4096, seqlen_kv=4096, dtype="fp8",
                 phase=phase, causal=phase == "prefill")
    p = predict(w, b200, "fa4", calibration=None)
    assert p.family is FA4 and p.time_s >= p.bound.time_s > 0


def test_fa4_fp8_train_is_refused(b200):
    assert "fp8" in FA4.dtypes and "fp8" not in FA4.train_dtypes
    with pytest.raises(AttnsimError, match="no fp8 backward"):
        predict(Workload(seqlen_q=1024, dtype="fp8", phase="train"), b200, "fa4")


@pytest.mark.parametrize("phase,d,dv,dtype", [("prefill", 256, 256, "bf16"), ("train", 256, 256, "bf16"),
                                              ("prefill", 192, 128, "bf16"), ("prefill", 128, 128, "fp8"),
                                              ("decode", 128, 128, "fp8")])
def test_fa4_new_shapes_price_alike_on_the_vectorized_path(b200, phase, d, dv, dtype):
    import numpy as np
    from attnsim.simulator.vectorized import predict_many
    b, lk, causal = np.array([1, 3]), np.array([1000, 4096]), np.array([phase != "decode", False])
    lq = np.array([1, 2]) if phase == "decode" else lk
    v = predict_many(b200, "fa4", phase=phase, batch=b, seqlen_q=lq, seqlen_kv=lk, heads_q=np.array([8, 16]),
                     head_dim_qk=np.array([d, d]), head_dim_v=np.array([dv, dv]), causal=causal, dtype=dtype,
                     calibration=None)
    for i in range(2):
        p = predict(Workload(phase=phase, batch=int(b[i]), seqlen_q=int(lq[i]), seqlen_kv=int(lk[i]),
                             heads_q=[8, 16][i], head_dim_qk=d, head_dim_v=dv, causal=bool(causal[i]), dtype=dtype),
                    b200, "fa4", calibration=None)
        assert float(v["time_s"][i]) == pytest.approx(p.time_s, rel=1e-9)
