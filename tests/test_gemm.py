"""GEMM cost: FLOPs by hand, tile and wave quantization, and the layer scope built from it."""
import math
import re

import pytest

from attnsim.simulator.pricing import GEMM_TILES, gemm
from attnsim.simulator.rates import rates
from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.model import predict
from attnsim.simulator.workload import Workload


def parse_tile(s):
    tm, tn, tk = (int(x) for x in re.match(r"(\d+)x(\d+)x(\d+)", s).groups())
    return tm, tn, tk


@pytest.mark.parametrize("m,n,k,batch", [(4096, 4096, 4096, 1), (1000, 3000, 777, 1), (1, 4096, 4096, 1),
                                         (300, 200, 100, 7)])
def test_flops_and_quantization_by_hand(m, n, k, batch):
    hw = load_hardware("h100")
    g = gemm("g", rates(hw), m, n, k, batch, "bf16")
    tm, tn, tk = parse_tile(g.tile)
    assert (tm, tn, tk) in {t[:3] for t in GEMM_TILES}
    assert g.useful_flops == 2 * m * n * k * batch
    assert g.flops == 2 * math.ceil(m / tm) * tm * math.ceil(n / tn) * tn * math.ceil(k / tk) * tk * batch
    assert g.ctas == batch * math.ceil(m / tm) * math.ceil(n / tn)
    assert g.waves == pytest.approx(g.ctas / (hw.sm_count * g.ctas_per_sm))
    assert g.hbm_bytes == batch * (m * k + k * n + m * n) * 2
    # no faster than the tensor peak or HBM allow
    assert g.time_s >= 2 * m * n * k * batch / hw.peak_flops_per_s("bf16")
    assert g.time_s >= g.hbm_bytes / hw.hbm_bandwidth_bytes_per_s


def test_big_square_gemm_is_tensor_bound_and_one_wave_quantization_shows():
    hw = load_hardware("h100")
    big = gemm("g", rates(hw), 8192, 8192, 8192, 1, "bf16")
    assert big.bound == "tensor"
    # 132 SMs: 8192^2 / (128*256) = 2048 CTAs = 15.5 waves; one more column of tiles adds CTAs, not time per CTA
    # Those figures are the 128 x 256 x 64 tile's (3 stages: 3 x (128 + 256) x 64 x 2 B = 147,456 B of shared
    # memory, 233,472 // 147,456 = 1 CTA per SM): 2048 CTAs on 132 slots, ceil(15.5) = 16 waves of one CTA
    # (2 x latency + 8192 / 64 = 128 k-steps of 2 x 128 x 256 x 64 FLOPs at 4096 FLOP/clk/SM, 1.83 GHz).
    lat, clk = 2.73e-7, 1.83e9
    assert (hw.sm_count, hw.dram_latency_s, hw.clock_sustained_hz) == (132, lat, clk)
    assert 8192 // 128 * (8192 // 256) == 2048 and round(2048 / 132, 1) == 15.5 and math.ceil(2048 / 132) == 16
    t_cta = 2 * lat + max(2 * 128 * 256 * 8192 / (4096 * clk), 128 * lat / 3)
    # gemm() takes the fastest candidate, so it is never slower than that tile
    assert big.time_s <= (3e-6 + 16 * t_cta) * (1 + 1e-12)
    # and whatever tile it takes, its quantization is that tile's, by hand
    tm, tn, tk = parse_tile(big.tile)
    [(warps, stages)] = [t[3:] for t in GEMM_TILES if t[:3] == (tm, tn, tk)]
    ctas = (8192 // tm) * (8192 // tn)
    kk = min(hw.smem_per_sm_bytes // (stages * (tm + tn) * tk * 2), hw.max_threads_per_sm // (32 * warps),
             hw.max_ctas_per_sm, math.ceil(ctas / 132))
    waves = math.ceil(ctas / (132 * kk))
    assert (big.ctas, big.ctas_per_sm) == (ctas, kk)
    assert big.waves == pytest.approx(ctas / (132 * kk), rel=1e-12)
    assert big.wave_efficiency == pytest.approx(ctas / (waves * 132 * kk), rel=1e-12) and big.wave_efficiency < 1
    t_cta = 2 * lat + max(2 * tm * tn * 8192 / (4096 * clk) * kk, 8192 // tk * lat / stages)
    assert big.time_s == pytest.approx(3e-6 + waves * t_cta, rel=1e-9)


def test_weight_shared_across_batch_is_read_once():
    hw = load_hardware("a100")
    a = gemm("g", rates(hw), 512, 1024, 2048, 4, "bf16", b_shared=False)
    b = gemm("g", rates(hw), 512, 1024, 2048, 4, "bf16", b_shared=True)
    assert a.hbm_bytes - b.hbm_bytes == 3 * 2048 * 1024 * 2


def test_layer_scope_adds_the_projection_flops():
    hw = load_hardware("h100")
    w = Workload(batch=2, seqlen_q=1024, heads_q=16, heads_kv=4, head_dim_qk=128)
    core = predict(w, hw)
    layer = predict(w, hw, scope="layer")
    d_model = 16 * 128
    tokens = 2 * 1024
    qkv_n = 16 * 128 + 2 * 4 * 128
    proj = 2 * tokens * qkv_n * d_model + 2 * tokens * d_model * (16 * 128)
    assert layer.useful_flops - core.useful_flops == proj
    assert layer.time_s > core.time_s
    assert layer.time_s >= layer.bound.time_s
    train = predict(w.with_(phase="train"), hw, scope="layer", d_model=1024)
    qkv_n_train = qkv_n
    proj_train = 3 * (2 * tokens * qkv_n_train * 1024 + 2 * tokens * 1024 * (16 * 128))
    assert train.useful_flops - predict(w.with_(phase="train"), hw).useful_flops == proj_train
