"""The speed-of-light bound, unit by unit, written out by hand."""
import pytest

from attnsim.simulator.bound import bound
from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.workload import Workload

H100 = load_hardware("h100")
SM, CLK = 132, 1.98e9


def test_exp_term_counts_sfu_plus_emulated_exps_on_fp32_pipes():
    # d = 32: the exp term comes within 15% of the tensor term. n exps; SFU 16/clk/SM; FP32 pipes
    # 256/2 = 128 instr/clk/SM at 6 instr/exp
    w = Workload(batch=2, seqlen_q=4096, heads_q=16, head_dim_qk=32)
    n = 2 * 16 * 4096 * 4096
    b = bound(w, H100)
    exp_s = n / (16 * SM * CLK + 128 * SM * CLK / 6)
    assert b.unit_times_s["exp"] == pytest.approx(exp_s, rel=1e-12)
    tensor_s = 2 * (32 + 32) * n / (4096 * SM * CLK)
    assert b.unit_times_s["tensor"] == pytest.approx(tensor_s, rel=1e-12)
    # the other units by hand: no score-function FP32 work; K and V staged through shared memory once
    # (written and read: 2 x 2 x 16 x 4096 x 64 B at 128 B/clk/SM); Q, K, V, O each read or written once
    kv = 2 * 16 * 4096 * (32 + 32) * 2
    smem_s = 2 * kv / (128 * SM * CLK)
    hbm_s = (kv + 2 * 2 * 16 * 4096 * 32 * 2) / 3.35e12
    assert b.unit_times_s["fp32"] == 0
    assert b.unit_times_s["smem"] == pytest.approx(smem_s, rel=1e-12)
    assert b.unit_times_s["hbm"] == pytest.approx(hbm_s, rel=1e-12)
    # tensor 128 n / (4096 SM CLK) = 0.0313 n vs exp n / (16 + 128/6) = 0.0268 n per SM-clock: tensor binds
    assert tensor_s > max(exp_s, smem_s, hbm_s)
    assert b.unit == "tensor" and b.time_s == pytest.approx(tensor_s, rel=1e-12)


def test_hbm_term_is_compulsory_traffic():
    # decode: one query, 32k keys, GQA 32/8: Q + K + V + O bytes
    w = Workload(batch=8, seqlen_q=1, seqlen_kv=32768, heads_q=32, heads_kv=8, head_dim_qk=128, phase="decode")
    b = bound(w, H100)
    hbm = 8 * 32 * 128 * 2 * 2 + 8 * 8 * 32768 * 256 * 2
    assert b.unit == "hbm"
    assert b.time_s == pytest.approx(hbm / 3.35e12, rel=1e-12)


def train_bounds_by_hand(L, heads, d):
    n = heads * L * (L + 1) // 2  # causal live pairs
    peak = 4096 * SM * CLK
    q = o = heads * L * d * 2
    kv = heads * L * 2 * d * 2
    hbm = 3 * q + 3 * kv + 2 * o  # fwd: Q, K, V in, O out; bwd: Q, K, V, dO in, dQ, dK, dV out
    recompute = max((2 * 2 * d + 2 * (3 * d + 2 * d)) * n / peak, hbm / 3.35e12)  # bwd 2(3d+2dv) per pair
    keep_p = max((2 * 2 * d + 2 * (2 * d + 2 * d)) * n / peak, (hbm + 2 * 2 * n) / 3.35e12)  # P out and back
    return recompute, keep_p


@pytest.mark.parametrize("L,winner", [(2048, "recompute P"), (16384, "keep P in HBM"), (128, "recompute P")])
def test_train_bound_is_the_smaller_of_recompute_and_keep_p(L, winner):
    recompute, keep_p = train_bounds_by_hand(L, 8, 128)
    b = bound(Workload(batch=1, seqlen_q=L, heads_q=8, head_dim_qk=128, causal=True, phase="train"), H100)
    assert b.strategy == winner
    assert b.time_s == pytest.approx(min(recompute, keep_p), rel=1e-12)


def test_bound_uses_clock_max_not_the_sustained_clock():
    w = Workload(batch=4, seqlen_q=8192, heads_q=32, head_dim_qk=128)
    assert bound(w, H100).time_s == pytest.approx(4 * 4 * 32 * 8192**2 * 128 / (4096 * SM * 1.98e9), rel=1e-12)


@pytest.mark.parametrize("phase,lq", [("train", 8192), ("decode", 1024), ("prefill", 8192)])
@pytest.mark.parametrize("qk,pv", [("fp16", "fp32"), ("fp32", "fp16"), ("fp16", "fp16")])
def test_mixed_accumulators_keep_time_above_the_bound(phase, lq, qk, pv):
    """RTX 4090 runs FP16-accumulate MMAs at twice the FP32-accumulate rate: each GEMM of the
    prediction (forward, backward, decode) must be priced at its own accumulate type, as the bound is."""
    hw = load_hardware("rtx4090")
    from attnsim.simulator.model import predict
    w = Workload(batch=4, seqlen_q=lq, seqlen_kv=8192, heads_q=32, head_dim_qk=64, dtype="fp16",
                 qk_accum=qk, pv_accum=pv, phase=phase)
    for fam in ("triton", "eager"):
        p = predict(w, hw, fam)
        assert p.time_s >= p.bound.time_s, (fam, p.time_s / p.bound.time_s)
