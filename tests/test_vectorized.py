"""predict_many (vectorized) against predict (one configuration at a time) for every phase."""
import zlib

import numpy as np
import pytest

from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.model import num_splits_heuristic, predict
from attnsim.simulator.vectorized import predict_many
from attnsim.simulator.vectorized import num_splits_many
from attnsim.simulator.workload import Workload

CASES = [("h100", "fa3"), ("a100", "fa2"), ("b200", "fa4"), ("mi300x", "fa2"), ("rtx4090", "fa2"), ("h100", "triton"),
         ("a100", "triton"), ("h100", "fa2")]


def random_configs(rng, phase, n):
    for _ in range(n):
        h = int(rng.choice([8, 16, 32]))
        hkv = int(rng.choice([x for x in (1, 2, 4, 8) if h % x == 0]))
        if phase == "decode":
            lq, lk = int(rng.integers(1, 5)), int(rng.integers(1, 40000))
        else:
            lq, lk = int(rng.integers(1, 5000)), int(rng.integers(1, 5000))
        yield dict(batch=int(rng.integers(1, 9)), seqlen_q=lq, seqlen_kv=lk, heads_q=h, heads_kv=hkv,
                   head_dim_qk=int(rng.choice([64, 128])), causal=bool(rng.integers(0, 2)))


@pytest.mark.parametrize("hw_name,fam", CASES)
@pytest.mark.parametrize("phase", ["prefill", "train", "decode"])
def test_vectorized_matches_the_single_prediction(hw_name, fam, phase):
    """One model, two paths: time, tiles, executed and useful FLOPs, HBM bytes, CTAs, waves and the
    bound agree to 1e-9 (the same functions price both; the vectorized path finds the longest and
    shortest CTA among a few candidate tiles instead of listing every one)."""
    hw = load_hardware(hw_name)
    rng = np.random.default_rng(zlib.crc32(f"{hw_name}-{fam}-{phase}".encode()))
    configs = list(random_configs(rng, phase, 40))
    v = predict_many(hw, fam, phase=phase, **{k: np.array([c[k] for c in configs]) for k in configs[0]})
    for i, c in enumerate(configs):
        p = predict(Workload(phase=phase, **c), hw, fam)
        t = p.tiles
        assert (t["full"], t["partial"], t["empty"]) == (v["tiles_full"][i], v["tiles_partial"][i],
                                                         v["tiles_empty"][i]), c
        assert p.flops == v["flops"][i], c
        assert p.useful_flops == v["useful_flops"][i], c
        assert p.hbm_bytes == pytest.approx(v["hbm_bytes"][i], rel=1e-12), c
        assert p.bound.time_s == pytest.approx(v["bound_s"][i], rel=1e-12), c
        assert p.bound.unit == v["bound"][i], c
        assert p.memory_bytes == v["memory_bytes"][i], c
        assert v["time_s"][i] == pytest.approx(p.time_s, rel=1e-9), c
        main = next(k for k in p.kernels if k.name in ("attn_fwd", "attn_decode"))
        assert (main.ctas, main.waves) == (v["ctas"][i], pytest.approx(v["waves"][i], rel=1e-12)), c
        assert v["time_s"][i] >= v["bound_s"][i]
        if phase == "decode":
            assert v["splits"][i] == next(k.splits for k in p.kernels if k.name == "attn_decode"), c


def test_split_heuristic_vectorized_equals_the_scalar_one():
    rng = np.random.default_rng(7)
    bnm = rng.integers(1, 200, 3000)
    nblocks = rng.integers(1, 600, 3000)
    for style in ("fa2", "fa3"):
        for sms in (108, 132, 264):
            got = num_splits_many(bnm, sms, nblocks, style=style)
            want = [num_splits_heuristic(int(a), sms, int(b), style=style) for a, b in zip(bnm, nblocks)]
            assert got.tolist() == want


def test_fa3_split_rules_from_heuristics_h():
    """hopper/heuristics.h: never split <= 4 kv blocks ('we never split for hdim = 128 and seqlen_k = 512');
    no eligibility filter (FA2 skips split counts that repeat blocks per split)."""
    assert num_splits_heuristic(8, 132, 4, style="fa3") == 1
    assert num_splits_heuristic(8, 132, 4, style="fa2") > 1
    # 64 blocks, 48 row blocks on 108 SMs: both pick 2 (efficiency 0.89), the FA2 example
    assert num_splits_heuristic(48, 108, 64, style="fa3") == num_splits_heuristic(48, 108, 64) == 2


def test_decode_time_tracks_kv_cache_bytes_over_bandwidth():
    """Large-batch decode is HBM-bound: time ~ KV-cache bytes / bandwidth, never below."""
    hw = load_hardware("h100")
    batch = np.array([16, 64, 256])
    v = predict_many(hw, "fa3", phase="decode", batch=batch, seqlen_q=1, seqlen_kv=32768, heads_q=32,
                     heads_kv=8, head_dim_qk=128)
    kv = batch * 32768 * 8 * 256 * 2
    assert (v["time_s"] >= kv / 3.35e12).all()
    assert (v["time_s"] <= 1.1 * kv / 3.35e12).all()


@pytest.mark.parametrize("hw_name,fam", [("h100", "fa3"), ("a100", "fa2"), ("h100", "triton")])
@pytest.mark.parametrize("phase", ["prefill", "train"])
@pytest.mark.parametrize("self_attention", [True, False])
def test_chunks_sharing_the_length_memo_equal_the_single_prediction(hw_name, fam, phase, self_attention,
                                                                    monkeypatch):
    """The closed forms run in chunks that share what depends on the lengths only (counts and the
    longest and shortest CTA per distinct pair, tile and CTAs per SM). With chunks of 7 and lengths
    drawn from a few values (pairs repeat across chunks; self-attention takes the table of lengths,
    cross-attention the sorted pairs) every configuration still equals its own prediction."""
    import attnsim.simulator.vectorized as vectorized
    monkeypatch.setattr(vectorized, "_CHUNK", 7)
    rng = np.random.default_rng(zlib.crc32(f"chunks-{hw_name}-{fam}-{phase}-{self_attention}".encode()))
    n = 40
    lq = rng.choice([1, 63, 64, 65, 200, 1000, 4096], n)
    lk = lq if self_attention else rng.choice([64, 129, 1000, 3000], n)
    cols = dict(batch=rng.integers(1, 5, n), seqlen_q=lq, seqlen_kv=lk, heads_q=rng.choice([8, 32], n),
                head_dim_qk=rng.choice([64, 128], n), causal=rng.integers(0, 2, n).astype(bool))
    v = predict_many(load_hardware(hw_name), fam, phase=phase, **cols)
    for i in range(n):
        c = {k: x[i].item() for k, x in cols.items()}
        p = predict(Workload(phase=phase, **c), hw_name, fam)
        assert (p.tiles["full"], p.tiles["partial"], p.tiles["empty"]) == (
            v["tiles_full"][i], v["tiles_partial"][i], v["tiles_empty"][i]), c
        assert (p.flops, p.useful_flops) == (v["flops"][i], v["useful_flops"][i]), c
        assert v["time_s"][i] == pytest.approx(p.time_s, rel=1e-9), c
        assert v["bound_s"][i] == pytest.approx(p.bound.time_s, rel=1e-12), c
