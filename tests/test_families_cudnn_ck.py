"""The cudnn family (torch SDPA's cuDNN backend, Hopper and Blackwell) and the ck family (AMD Composable
Kernel FMHA, MI300X's default): where they run, what they refuse, and CK's tiles against the 64 KiB LDS
counted by hand from CK's own LDS layout (Q in registers, K/V staged in 32-wide chunks)."""
import json

import numpy as np
import pytest

from attnsim.simulator.errors import AttnsimError, UnsupportedCore
from attnsim.simulator.families import (FAMILIES, bwd_tile_candidates, can_implement, decode_tile_candidates,
                                        fwd_tile_candidates, regs_per_thread)
from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.model import predict
from attnsim.simulator.vectorized import predict_many
from attnsim.simulator.workload import Workload
from cli_checks import assert_one_line_error, invoke

CUDNN, CK = FAMILIES["cudnn"], FAMILIES["ck"]
BYTES = {"fp16": 2, "bf16": 2, "fp8": 1}


# -- cudnn ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hw_name", ["h100", "b200"])
@pytest.mark.parametrize("phase", ["prefill", "decode", "train"])
def test_cudnn_runs_on_hopper_and_blackwell(hw_name, phase):
    hw = load_hardware(hw_name)
    w = Workload(batch=2, heads_q=16, seqlen_q=1 if phase == "decode" else 2048, seqlen_kv=2048, phase=phase,
                 causal=phase != "decode")
    p = predict(w, hw, "cudnn")
    assert p.family is CUDNN
    j = p.to_json()
    assert j["kernel"] == "cudnn" and j["time_s"] >= j["bound_s"] > 0


def test_cudnn_is_a_cli_kernel():
    r = invoke("predict", "--hw", "h100", "--kernel", "cudnn", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["kernel"] == "cudnn"
    assert "cudnn" in invoke("variants").stdout


def test_cudnn_refused_on_ampere_in_one_line():
    line = assert_one_line_error(invoke("predict", "--hw", "a100", "--kernel", "cudnn"),
                                 "kernel family 'cudnn' does not run on", "ampere", "allowed there")
    assert "fa2" in line and "cudnn" not in line.split("allowed there")[1]


def test_cudnn_takes_fa3s_tiles_as_the_stated_assumption():
    h100 = load_hardware("h100")
    for d, causal in ((64, False), (128, False), (128, True), (256, False)):
        assert fwd_tile_candidates(CUDNN, h100, d, d, causal, "bf16") == \
            fwd_tile_candidates(FAMILIES["fa3"], h100, d, d, causal, "bf16")
    assert "not public" in CUDNN.source and "tile_size_fwd_sm90" in CUDNN.source
    assert (CUDNN.overlap, CUDNN.mma_m, CUDNN.kv_by_tma) == (1.0, 64, True)


@pytest.mark.parametrize("hw_name,phase,d,dv,ok", [
    ("h100", "train", 256, 256, True),  # Hopper bprop: d <= 256
    ("b200", "train", 128, 128, True),
    ("b200", "train", 256, 256, True),  # Blackwell bprop: d <= 128, 192/128, 256/256
    ("b200", "train", 192, 128, True),
    ("b200", "train", 160, 160, False),
    ("b200", "decode", 256, 256, False),  # Blackwell decode: d <= 128 or 192/128
    ("b200", "prefill", 256, 256, True),
    ("h100", "prefill", 128, 64, False),  # footnote 5: d_qk = d_vo except 192/128
])
def test_cudnn_support_matrix(hw_name, phase, d, dv, ok):
    w = Workload(batch=1, heads_q=8, seqlen_q=1 if phase == "decode" else 1024, seqlen_kv=1024, head_dim_qk=d,
                 head_dim_v=dv, phase=phase)
    hw = load_hardware(hw_name)
    if ok:
        assert predict(w, hw, "cudnn").time_s > 0
    else:
        with pytest.raises(UnsupportedCore, match="allowed"):
            predict(w, hw, "cudnn")


def test_cudnn_head_dim_refusal_is_one_line():
    r = invoke("predict", "--hw", "b200", "--kernel", "cudnn", "--phase", "train", "--head-dim", "160")
    assert_one_line_error(r, "no train kernel for head dims 160/160", "blackwell", "allowed")


# -- ck -------------------------------------------------------------------------------------------------------
def test_ck_is_the_mi300x_default():
    hw = load_hardware("mi300x")
    assert hw.default_kernel == "ck" and hw.arch in CK.archs
    assert predict(Workload(), hw).family is CK
    assert "fa2" in [n for n, f in FAMILIES.items() if hw.arch in f.archs]  # the FA2-shaped model stays selectable


def test_cli_predict_on_mi300x_reports_ck():
    r = invoke("predict", "--hw", "mi300x", "--json")
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    assert j["kernel"] == "ck" and j["time_s"] >= j["bound_s"] > 0


def test_ck_refused_off_cdna3_in_one_line():
    assert_one_line_error(invoke("predict", "--hw", "h100", "--kernel", "ck"), "kernel family 'ck' does not run on",
                          "hopper", "allowed there")


def _ck_forward_lds(tile, dv, skv):
    """CK qr/qr_async: Q in registers (no LDS); `stages` buffers, each the larger of a K chunk (BLOCK_N
    keys x 32 columns) and a V chunk (32 keys x dv columns)."""
    q = 0
    k_chunk, v_chunk = tile.block_n * 32, 32 * dv
    return q + tile.stages * max(k_chunk, v_chunk) * skv


def _ck_backward_lds(tile, d, dv, s):
    """CK kr_ktr_vr: the largest of K + K^T, V, and one step's Q, Q^T, dO, dO^T, LSE and D (fp32) and dS."""
    bm, bn = tile.block_m, tile.block_n
    return max(2 * bn * d * s, bn * dv * s, bm * (2 * d + 2 * dv) * s + 2 * 4 * bm + bm * bn * s)


def _ck_shapes():
    for dtype in CK.dtypes:
        for d in CK.head_dims:
            yield dtype, d, d
        yield dtype, 192, 128


@pytest.mark.parametrize("dtype,d,dv", list(_ck_shapes()))
def test_ck_tiles_fit_the_64k_lds_by_hand(dtype, d, dv):
    hw = load_hardware("mi300x")
    assert hw.smem_per_block_bytes == hw.smem_per_sm_bytes == 64 * 1024
    s = BYTES[dtype]
    for causal in (False, True):
        tiles = fwd_tile_candidates(CK, hw, d, dv, causal, dtype)
        assert tiles[0].block_m == 128  # bm0 = 128 in every forward row
        for t in tiles:
            lds = _ck_forward_lds(t, dv, s)
            assert lds <= hw.smem_per_block_bytes, (t, lds)
            leg = can_implement(CK, hw, t, d, dv, dtype)
            assert leg.ok and leg.smem_bytes == lds and leg.ctas_per_sm == min(
                hw.smem_per_sm_bytes // lds, hw.max_threads_per_sm // (64 * t.num_warps),
                hw.registers_per_sm // (leg.regs_per_thread * 64 * t.num_warps), hw.max_ctas_per_sm), (t, leg)
    for t in decode_tile_candidates(CK, hw, d, dv):
        assert t.stages == 1 and _ck_forward_lds(t, dv, s) <= hw.smem_per_block_bytes
        assert can_implement(CK, hw, t, d, dv, dtype).smem_bytes == _ck_forward_lds(t, dv, s)
    if dtype in CK.train_dtypes:
        for t in bwd_tile_candidates(CK, hw, d, dv, False, dtype):
            lds = _ck_backward_lds(t, d, dv, s)
            assert lds <= hw.smem_per_block_bytes, (t, lds)
            leg = can_implement(CK, hw, t, d, dv, dtype, backward=True)
            assert leg.ok and leg.smem_bytes == lds, (t, leg)


def test_ck_tables_and_wave64():
    hw = load_hardware("mi300x")
    # fmha_fwd.py: (64, 64) -> 128 x 64, (128, 128) -> 128 x 128, 4 waves; (32, 32) -> 2 waves; qr_async: 3 buffers
    assert [str(t) for t in fwd_tile_candidates(CK, hw, 128, 128, True, "bf16")] == ["128x128 w4 s3"]
    assert [str(t) for t in fwd_tile_candidates(CK, hw, 64, 64, False, "fp16")] == ["128x64 w4 s3"]
    assert [str(t) for t in fwd_tile_candidates(CK, hw, 32, 32, False, "fp16")] == ["128x64 w2 s3"]
    # fmha_bwd.py: hdim 128 -> 16 x 128, hdim 256 -> 16 x 64; fmha_fwd_splitkv.py: hdim 128 -> 64 x 128
    assert [str(t) for t in bwd_tile_candidates(CK, hw, 128, 128, True, "bf16")] == ["16x128 w4 s1"]
    assert [str(t) for t in bwd_tile_candidates(CK, hw, 256, 256, True, "bf16")] == ["16x64 w4 s1"]
    assert [str(t) for t in decode_tile_candidates(CK, hw, 128, 128)] == ["64x128 w4 s1"]
    # a wavefront is 64 lanes: 4 waves = 256 threads; fp32 accumulators O (128 x 128) + S (128 x 128) per thread
    t = fwd_tile_candidates(CK, hw, 128, 128, False, "bf16")[0]
    assert CK.warp_lanes == 64 and regs_per_thread(CK, t, 128) == 128 * 256 // 256 + CK.reg_overhead_per_thread
    assert regs_per_thread(FAMILIES["fa2"], t, 128) == 128 * 256 // 128 + 32  # NVIDIA warps: 32 lanes
    assert (CK.mma_m, CK.mma_n) == (16, 16)


@pytest.mark.parametrize("phase", ["prefill", "decode", "train"])
@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("causal", [False, True])
def test_ck_prediction_on_mi300x_is_at_least_the_bound(phase, d, causal):
    hw = load_hardware("mi300x")
    w = Workload(batch=4, heads_q=32, heads_kv=8, seqlen_q=1 if phase == "decode" else 3000, seqlen_kv=3000,
                 head_dim_qk=d, phase=phase, causal=causal and phase != "decode")
    p = predict(w, hw, None)
    assert p.family is CK
    j = p.to_json()
    assert j["time_s"] >= j["bound_s"] > 0 and j["flops"] >= j["useful_flops"] > 0
    assert all(k["time_s"] > 0 for k in j["kernels"])


def test_ck_fp8_forward_but_no_fp8_backward():
    hw = load_hardware("mi300x")
    assert predict(Workload(dtype="fp8"), hw).kernels[0].tile == "128x128 w4 s1"  # fp8 rows: pipeline qr, 1 buffer
    with pytest.raises(AttnsimError, match="no fp8 backward"):
        predict(Workload(dtype="fp8", phase="train"), hw)


@pytest.mark.parametrize("phase", ["prefill", "train", "decode"])
def test_ck_vectorized_equals_predict(phase):
    hw = load_hardware("mi300x")
    rng = np.random.default_rng(11)
    cfgs = [dict(batch=int(rng.integers(1, 9)), seqlen_q=int(rng.integers(1, 5)) if phase == "decode"
                 else int(rng.integers(1, 5000)), seqlen_kv=int(rng.integers(1, 20000)), heads_q=16,
                 heads_kv=int(rng.choice([2, 4, 16])), head_dim_qk=int(rng.choice([64, 128])),
                 causal=bool(rng.integers(0, 2))) for _ in range(12)]
    v = predict_many(hw, None, phase=phase, **{k: np.array([c[k] for c in cfgs]) for k in cfgs[0]})
    for i, c in enumerate(cfgs):
        p = predict(Workload(phase=phase, **c), hw, "ck")
        assert v["time_s"][i] == pytest.approx(p.time_s, rel=1e-9), c
        assert p.flops == v["flops"][i], c


def test_published_mi300x_rows_do_not_beat_the_bound():
    """validation/reference/published_mi300x.csv: every forward and forward+backward measurement takes at
    least the speed-of-light bound of its shape on the MI300X profile (flops=N of the notes, or the time)."""
    import csv
    import re
    from pathlib import Path
    rows = list(csv.DictReader(open(Path(__file__).parents[1] / "validation/reference/published_mi300x.csv")))
    assert rows and all(r["hardware"].startswith("AMD Instinct MI300X") for r in rows)
    hw = load_hardware("mi300x")
    checked = 0
    for r in rows:
        if r["direction"] not in ("fwd", "fwd+bwd"):
            continue
        flops = int(re.search(r"flops=(\d+)", r["notes"]).group(1))
        measured = flops / (float(r["value"]) * 1e12) if r["unit"] == "TFLOP/s" else float(r["value"]) * 1e-6
        w = Workload(batch=int(r["batch"]), heads_q=int(r["heads_q"]), heads_kv=int(r["heads_kv"]),
                     seqlen_q=int(r["seqlen_q"]), seqlen_kv=int(r["seqlen_kv"]), head_dim_qk=int(r["head_dim"]),
                     causal=r["causal"] == "true", dtype=r["dtype"].split()[0],
                     phase="prefill" if r["direction"] == "fwd" else "train")
        assert measured >= predict(w, hw, "ck").bound.time_s, r["location_in_source"]
        checked += 1
    assert checked >= 10
