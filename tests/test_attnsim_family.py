"""The "attnsim" kernel family: the simulator's description of attnsim's own Triton kernels, whose tiles are
ranked with their compiled code's facts (simulator/triton_compiled.json, written by
benchmarks/bench_triton_registers.py): a tile that spills is illegal, registers are ptxas's, a forward tile
computes the compiled exps per score; decode splits the cache as FlashAttention-2 does, as the kernel does."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest

from attnsim.simulator.families import (FAMILIES, Tile, can_implement, compiled_facts, compiled_tile, get_family)
from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.model import SMRates, _fwd_tile_costs, num_splits_heuristic, predict
from attnsim.simulator.rates import rates
from attnsim.simulator.workload import Workload

FAM = get_family("attnsim")
PROFILES = {"sm_80": "a100", "sm_90": "h100"}


def test_the_facts_say_where_they_come_from():
    import json
    from importlib.resources import files
    data = json.loads(files("attnsim.simulator").joinpath("triton_compiled.json").read_text())
    assert data["triton"] and data["ptxas"] and data["date"] and "bench_triton_registers.py" in data["command"]
    archs = {r["arch"] for r in data["rows"]}
    assert archs == {"sm_80", "sm_90"}
    # every forward tile of the space at head dims 64 and 128 on both, and the backward's dK/dV and dQ
    assert {(r["arch"], r["kernel"], r["head_dim"]) for r in data["rows"]} == {
        (a, k, d) for a in archs for k in ("_fwd_kernel", "_bwd_dkdv_kernel", "_bwd_dq_kernel") for d in (64, 128)}
    assert len(compiled_facts()) == len(data["rows"])


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_legality_follows_the_compiled_code(arch):
    """Every compiled tile, by brute force over the table: spilled -> illegal (saying so); else ptxas's
    registers are the legality's, and a tile that fits (shared memory, threads) is legal."""
    hw = load_hardware(PROFILES[arch])
    seen = 0
    for (a, kernel, d, bm, bn, w, st), r in compiled_facts().items():
        if a != arch or kernel == "_bwd_dq_kernel":
            continue
        backward = kernel == "_bwd_dkdv_kernel"
        tile = Tile(bm, bn, w, st)
        leg = can_implement(FAM, hw, tile, d, d, "fp16", backward=backward)
        spill = r["spill_bytes"]
        regs = r["regs"]
        if backward:
            dq = compiled_facts()[(a, "_bwd_dq_kernel", d, bm, bn, w, st)]
            spill, regs = max(spill, dq["spill_bytes"]), max(regs, dq["regs"])
        if spill:
            assert not leg.ok and f"spills {spill} B" in leg.reason
        else:
            assert leg.regs_per_thread == regs
            tutorial = can_implement(get_family("triton"), hw, tile, d, d, "fp16", backward=backward)
            if tutorial.ok or "registers" in tutorial.reason:  # the estimate's register limit no longer decides
                assert leg.ok == (leg.smem_bytes <= hw.smem_per_block_bytes), (tile, leg)
        seen += 1
    assert seen > 40


def test_no_facts_no_change():
    """Where nothing was compiled (another GPU, head dim 256, a latent V) the family keeps the estimate."""
    b200, h100 = load_hardware("b200"), load_hardware("h100")
    t = Tile(128, 64, 8, 2)
    assert compiled_tile(FAM, b200, t, 128, 128) is None and compiled_tile(FAM, h100, t, 256, 256) is None
    assert compiled_tile(FAM, h100, t, 576, 512, v_in_k=True) is None
    assert compiled_tile(get_family("triton"), h100, t, 128, 128) is None  # the tutorial family has none
    est = can_implement(get_family("triton"), b200, t, 128, 128, "fp16")
    assert can_implement(FAM, b200, t, 128, 128, "fp16").regs_per_thread == est.regs_per_thread


def test_a_forward_tile_pays_its_compiled_exps():
    """The exp time of a forward tile is the triton family's times the compiled exps per score (by hand:
    the same rates, the same tile, the count from the table)."""
    hw = load_hardware("h100")
    fam_tut = replace(FAMILIES["triton"], exp2_emulation=False)
    for t in (Tile(64, 64, 8, 2), Tile(128, 128, 8, 2), Tile(64, 32, 4, 2)):
        e = compiled_facts()[("sm_90", "_fwd_kernel", 128, t.block_m, t.block_n, t.num_warps, t.stages)]["exp_per_score"]
        got = [_fwd_tile_costs(rates(hw, f, None), f, t, 1, 128, 128, 2, 2, SMRates.of(rates(hw, f, None), "fp16", "fp32"))
               .parts["exp"] for f in (FAM, fam_tut)]
        assert math.isclose(got[0], got[1] * e, rel_tol=1e-12) and e >= 1.0


@pytest.mark.parametrize("hw_name", ["a100", "h100"])
def test_the_picked_forward_and_backward_tiles_do_not_spill(hw_name):
    hw = load_hardware(hw_name)
    arch = "sm_" + hw.compute_capability.replace(".", "")
    for d in (64, 128):
        w = Workload(batch=1, seqlen_q=16384, heads_q=16, head_dim_qk=d, dtype="fp16", phase="train")
        p = predict(w, hw, "attnsim")
        for kc, k in zip(p.kernels_for("forward") + p.kernels_for("backward"),
                         ("_fwd_kernel", "_bwd_dkdv_kernel", "_bwd_dq_kernel")):
            t = kc.tile_obj
            assert compiled_facts()[(arch, k, d, t.block_m, t.block_n, t.num_warps, t.stages)]["spill_bytes"] == 0


def test_decode_splits_as_the_kernel_does():
    """The family's decode splits the cache with FlashAttention-2's heuristic on 2 x SMs over 64-row, 64-key
    blocks of packed GQA rows: what kernels/triton_attention.py's default_splits does (by hand here)."""
    hw = load_hardware("h100")
    for batch, hq, hkv, ctx in ((1, 32, 8, 4096), (1, 8, 1, 65536), (4, 64, 8, 8192), (64, 32, 8, 2048)):
        w = Workload(batch=batch, seqlen_q=1, seqlen_kv=ctx, heads_q=hq, heads_kv=hkv, head_dim_qk=128,
                     dtype="bf16", phase="decode")
        p = predict(w, hw, "attnsim")
        rows = hq // hkv  # one step token: the group's heads packed into the rows of one row block (<= 64 rows)
        want = num_splits_heuristic(batch * hkv * -(-rows // 64), 2 * hw.sm_count, -(-ctx // 64), style="fa2")
        assert p.kernels_for("decode")[0].splits == want


def test_a_forward_tile_is_no_faster_than_its_compiled_loop_issues():
    """By hand: a tile's warp instructions (the compiled main loop's per score x its scores) issue at the
    profile's 4 per clock per SM (NVIDIA's A100/H100 whitepapers: four schedulers); the tile takes at least
    that, else what its units take. Without facts (B200) no issue term."""
    from attnsim.simulator.model import _tile_time
    for hw_name, arch in (("h100", "sm_90"), ("a100", "sm_80")):
        hw = load_hardware(hw_name)
        r = rates(hw, FAM, None)
        assert hw.warp_issue_per_clk_per_sm == 4
        for t in (Tile(64, 32, 4, 2), Tile(64, 128, 8, 2)):
            ips = compiled_facts()[(arch, "_fwd_kernel", 128, t.block_m, t.block_n, t.num_warps, t.stages)][
                "loop_instructions_per_score"]
            tc = _fwd_tile_costs(r, FAM, t, 2, 128, 128, 2, 2, SMRates.of(r, "fp16", "fp32"))
            want = t.block_m * t.block_n * ips / (4 * r.clock_hz) * 2  # two CTAs share the SM's schedulers
            assert math.isclose(tc.parts["issue"], want, rel_tol=1e-12)
            units = _tile_time(tc.parts["tensor"], max(tc.parts["exp"], tc.parts["fp32"]), tc.parts["smem"], r.overlap)
            assert math.isclose(tc.t_full, max(units, want), rel_tol=1e-12)
    b200 = load_hardware("b200")
    r = rates(b200, FAM, None)
    assert "issue" not in _fwd_tile_costs(r, FAM, Tile(128, 128, 8, 2), 1, 128, 128, 2, 2,
                                          SMRates.of(r, "fp16", "fp32")).parts


def test_the_raw_model_ranks_hopper_sized_tiles_first_on_h100():
    """Uncalibrated, the compiled facts rank H100's d = 128 forward at 128 x 128 with 8 warps: the fewest
    instructions and exps per score among the tiles that do not spill."""
    w = Workload(batch=1, seqlen_q=16384, heads_q=16, head_dim_qk=128, dtype="fp16")
    t = predict(w, load_hardware("h100"), "attnsim", calibration=None).kernels_for("forward")[0].tile_obj
    assert (t.block_m, t.block_n, t.num_warps) == (128, 128, 8)


@pytest.mark.parametrize("hw_name", ["a100", "h100"])
def test_decode_takes_none_of_the_forwards_compiled_facts(hw_name):
    """The decode kernel is another kernel: the forward's compiled spills, exps and issue rate are not its own
    (A100's forward 64 x 64 w4 spills; the decode runs that tile, 64 rows x 64 keys, and is not refused)."""
    w = Workload(batch=4, seqlen_q=1, seqlen_kv=8192, heads_q=32, heads_kv=8, head_dim_qk=128, dtype="bf16",
                 phase="decode")
    k = predict(w, load_hardware(hw_name), "attnsim", calibration=None).kernels_for("decode")[0]
    assert k.tile_obj == Tile(16, 64, 4, 2) and "issue" not in k.unit_times_s  # 4 packed rows: a 16-row block
    assert can_implement(FAM, load_hardware(hw_name), Tile(64, 64, 4, 2), 128, 128, "bf16", decode=True).ok


def test_decode_row_blocks_fit_the_packed_rows_as_the_kernel_does():
    """By hand, the kernel's BLOCK_R = min(next power of two of the packed rows, 64), at least 16: rows 1, 4, 16 ->
    16; 17 -> 32; 48 -> 64; 128 -> 64 (two blocks); executed FLOPs count the block's padded rows. The
    vectorized closed forms, which group configurations by their row block, equal predict."""
    import numpy as np

    from attnsim.simulator.families import decode_block_m
    from attnsim.simulator.vectorized import predict_many
    t = Tile(64, 64, 4, 2)
    assert [decode_block_m(FAM, t, n) for n in (1, 4, 16, 17, 48, 128)] == [16, 16, 16, 32, 64, 64]
    assert decode_block_m(FAM, t, np.array([1, 17, 128])).tolist() == [16, 32, 64]
    assert decode_block_m(get_family("fa3"), t, 4) == 64  # FlashAttention's decode keeps its 64 rows
    hw = load_hardware("h100")
    hq, hkv, lq = np.array([32, 64, 128, 32, 8]), np.array([8, 4, 1, 32, 8]), np.array([1, 1, 1, 3, 2])
    out = predict_many(hw, "attnsim", batch=2, seqlen_q=lq, seqlen_kv=4096, heads_q=hq, heads_kv=hkv, head_dim_qk=128,
                       phase="decode", calibration=None)
    for i in range(len(hq)):
        w = Workload(batch=2, seqlen_q=int(lq[i]), seqlen_kv=4096, heads_q=int(hq[i]), heads_kv=int(hkv[i]),
                     head_dim_qk=128, dtype="bf16", phase="decode")
        p = predict(w, hw, "attnsim", calibration=None)
        rows = int(lq[i] * hq[i] // hkv[i])
        bm = decode_block_m(FAM, t, rows)
        assert p.kernels_for("decode")[0].tile_obj.block_m == bm
        # executed FLOPs: every row block's padded rows against the context (QK^T and PV, 2 x 128 each)
        assert p.kernels_for("decode")[0].flops == 2 * hkv[i] * -(-rows // bm) * bm * 4096 * 2 * 128 * 2
        assert math.isclose(out["time_s"][i], p.time_s, rel_tol=1e-9) and out["flops"][i] == p.flops


def test_shared_memory_follows_the_compiled_dot_layouts_on_sm80():
    """By hand, per forward tile at d = 128 on A100 (fp16, 2 bytes): Triton lays a 64-row tile's dots with every
    warp along the keys ([1, w]: each warp reads all of Q and P goes through shared memory) and a 128-row tile's
    with every warp along the rows ([w, 1]: the warp16 count)."""
    from attnsim.simulator.model import _smem_tile_bytes
    hw = load_hardware("a100")
    facts = compiled_facts()
    f = facts[("sm_80", "_fwd_kernel", 128, 64, 128, 8, 2)]
    assert f["mma_version"] == 2 and f["dot_warps"][:2] == [[1, 8], [1, 8]]
    # K and V (128 keys x 128 channels x 2 B = 32 KiB each): written once, read once (one warp row);
    # Q (64 x 128 x 2 B = 16 KiB) read by 8 warps; P (64 x 128 x 2 B = 16 KiB) written once, read by 8 warps
    want = 2 * 32768 * (1 + 1) + 8 * 16384 + (1 + 8) * 16384
    assert _smem_tile_bytes(FAM, Tile(64, 128, 8, 2), 256, 128, 2, 2, hw.arch, f) == want
    g = facts[("sm_80", "_fwd_kernel", 128, 128, 32, 8, 3)]
    assert g["dot_warps"][:2] == [[8, 1], [8, 1]]
    # K and V (32 keys: 8 KiB each) written once, read by 8 warps; Q (32 KiB) once; P stays in registers
    want = 2 * 8192 * (1 + 8) + 32768
    assert _smem_tile_bytes(FAM, Tile(128, 32, 8, 3), 256, 128, 2, 2, hw.arch, g) == want
    assert _smem_tile_bytes(FAM, Tile(128, 32, 8, 3), 256, 128, 2, 2, hw.arch, None) == want  # warp16 agrees
    h = facts[("sm_90", "_fwd_kernel", 128, 64, 128, 8, 2)]  # wgmma: the warpgroup count, not the layout's
    assert h["mma_version"] == 3
    assert _smem_tile_bytes(FAM, Tile(64, 128, 8, 2), 256, 128, 2, 2, "hopper", h) == \
        _smem_tile_bytes(FAM, Tile(64, 128, 8, 2), 256, 128, 2, 2, "hopper", None)


def test_a100_forward_at_d128_picks_a_tile_that_keeps_p_in_registers():
    """Priced with its layouts' shared-memory traffic, A100's d = 128 forward is 128 x 32 with 8 warps and 3
    stages: FA2's layout (every warp along the rows), no spill, 1.125 exps per score."""
    w = Workload(batch=1, seqlen_q=16384, heads_q=16, head_dim_qk=128, dtype="fp16")
    t = predict(w, load_hardware("a100"), "attnsim", calibration=None).kernels_for("forward")[0].tile_obj
    f = compiled_facts()[("sm_80", "_fwd_kernel", 128, t.block_m, t.block_n, t.num_warps, t.stages)]
    assert f["dot_warps"][0][1] == 1 and f["spill_bytes"] == 0 and f["exp_per_score"] <= 1.15


def test_backward_candidates_list_pipelined_loops_first():
    """Between configurations the model prices alike the tie keeps the earliest: two stages before one."""
    cands = FAM.bwd_tiles(load_hardware("a100"), 128, 128, False, "fp16")
    stages = [t.stages for t in cands]
    assert stages == sorted(stages, reverse=True) and set(stages) == {1, 2}
    tut = get_family("triton").bwd_tiles(load_hardware("a100"), 128, 128, False, "fp16")
    key = lambda t: (t.block_m, t.block_n, t.num_warps, t.stages)  # noqa: E731
    assert sorted(map(key, cands)) == sorted(map(key, tut))  # the same space, another order
    w = Workload(batch=1, seqlen_q=16384, heads_q=16, head_dim_qk=128, dtype="fp16", phase="train")
    assert predict(w, load_hardware("a100"), "attnsim", calibration=None).kernels_for("backward")[0].tile_obj.stages == 2


def test_the_backward_is_priced_as_the_kernels_two_passes():
    """attnsim's backward (kernels/triton_attention.py `_bwd`): the preprocess, a dK/dV kernel over kv tiles and a
    dQ kernel over query tiles (S and dP computed twice, no atomics), then dK and dV summed over each GQA group and
    converted. By hand for H100, d = 128, 16 query heads over 4 kv heads, 16k tokens, fp16, dense."""
    from attnsim.simulator.vectorized import predict_many
    hw = load_hardware("h100")
    w = Workload(batch=1, seqlen_q=16384, heads_q=16, heads_kv=4, head_dim_qk=128, dtype="fp16", phase="train")
    p = predict(w, hw, "attnsim")
    names = [k.name for k in p.kernels]
    assert names == ["attn_fwd", "bwd_preprocess", "bwd_dk_zero", "bwd_dv_zero", "attn_bwd_dkdv", "attn_bwd_dq",
                     "bwd_dk_sum", "bwd_dk_convert", "bwd_dv_sum", "bwd_dv_convert"]
    dkdv, dq = p.kernels[4], p.kernels[5]
    t, u = dkdv.tile_obj, dq.tile_obj  # each kernel its own tile (H100: the dQ kernel's 64 rows reach wgmma)
    assert (u.block_m, u.block_n) == (64, 64) and t.block_m == 32
    # every (query tile, kv tile) pair of every head, each kernel at its own tile: dK/dV S, dK; dP, dV and dQ S, dQ; dP
    assert dkdv.flops == 16 * (16384 // t.block_m) * (16384 // t.block_n) * 2 * t.block_m * t.block_n * (2 * 128 + 2 * 128)
    assert dq.flops == 16 * (16384 // u.block_m) * (16384 // u.block_n) * 2 * u.block_m * u.block_n * (2 * 128 + 128)
    pairs = 16 * 16384 ** 2
    assert dkdv.useful_flops == 2 * (2 * 128 + 2 * 128) * pairs and dq.useful_flops == 2 * 128 * pairs
    assert dkdv.ctas == 16 * 16384 // t.block_n and dq.ctas == 16 * 16384 // u.block_m
    # HBM: both read Q, dO (16 heads x 16k x 256 x 2 B), K, V (4 kv heads x 16k x 256 x 2 B), LSE and D (8 B a row);
    # dK/dV written in fp32 per query head (16 x 16k x 256 x 4 B); dQ in fp16 (16 x 16k x 128 x 2 B)
    common = 16 * 16384 * 256 * 2 + 4 * 16384 * 256 * 2 + 16 * 16384 * 8
    assert dkdv.hbm_bytes == common + 16 * 16384 * 256 * 4 and dq.hbm_bytes == common + 16 * 16384 * 128 * 2
    # L2: each visited tile streams Q and dO (32 rows x 256 x 2 B + LSE, D) into dK/dV, K and V (64 keys x 256 x 2 B)
    # into dQ; dK/dV's CTAs of 16 query heads load their 4 kv heads' K and V (12 more head loads of 16k x 256 x 2 B)
    visited_kv = 16 * (16384 // t.block_m) * (16384 // t.block_n)
    visited_q = 16 * (16384 // u.block_m) * (16384 // u.block_n)
    assert dkdv.l2_bytes == visited_kv * (t.block_m * 256 * 2 + 8 * t.block_m) + dkdv.hbm_bytes + 12 * 16384 * 256 * 2
    assert dq.l2_bytes == visited_q * u.block_n * 256 * 2 + dq.hbm_bytes
    k = {x.name: x for x in p.kernels}
    assert k["bwd_preprocess"].hbm_bytes == 2 * 16 * 16384 * 128 * 2 + 16 * 16384 * 4  # O, dO in; D out
    assert k["bwd_dk_sum"].hbm_bytes == 16 * 16384 * 128 * 4 + 4 * 16384 * 128 * 4  # 16 heads' fp32 in, 4 out
    assert k["bwd_dk_convert"].hbm_bytes == 4 * 16384 * 128 * (4 + 2)
    assert k["bwd_dk_zero"].hbm_bytes == k["bwd_dv_zero"].hbm_bytes == 16 * 16384 * 128 * 4  # torch.zeros: writes
    assert "bwd_dq_convert" not in names and "attn_bwd" not in names  # no fp32 dQ accumulator, no atomics
    many = predict_many(hw, "attnsim", batch=[1, 2], seqlen_q=16384, heads_q=16, heads_kv=4, head_dim_qk=128,
                        dtype="fp16", phase="train")
    assert many["time_s"][0] == pytest.approx(p.time_s, rel=1e-12)
    assert many["time_s"][1] == pytest.approx(predict(replace(w, batch=2), hw, "attnsim").time_s, rel=1e-12)
    tut = predict(w, hw, "triton")  # the tutorial family keeps FlashAttention's one kernel with atomics
    assert [x.name for x in tut.kernels if x.role == "backward"] == ["attn_bwd"]


def test_each_backward_kernel_pays_its_own_compiled_exps():
    """compiled_tile(part=...) is one kernel's row; a dK/dV tile's exp time is the dQ tile's times the ratio of
    their compiled counts (the same scores, rates and SM share)."""
    from attnsim.simulator.model import _bwd_tile_costs
    hw = load_hardware("a100")
    t = Tile(32, 64, 8, 2)  # at d = 64 on sm_80 the dK/dV kernel computes each exp twice at this tile, dQ once
    a = compiled_tile(FAM, hw, t, 64, 64, backward=True, part="dkdv")
    b = compiled_tile(FAM, hw, t, 64, 64, backward=True, part="dq")
    assert a == compiled_facts()[("sm_80", "_bwd_dkdv_kernel", 64, 32, 64, 8, 2)] and a["exp_per_score"] == 2.0
    assert b == compiled_facts()[("sm_80", "_bwd_dq_kernel", 64, 32, 64, 8, 2)] and b["exp_per_score"] == 1.0
    r = rates(hw, FAM, None)
    sm = SMRates.of(r, "fp16", "fp32")
    e = {part: _bwd_tile_costs(r, FAM, t, 2, 64, 64, 2, sm, kernel=part).parts["exp"] for part in ("dkdv", "dq")}
    assert math.isclose(e["dkdv"], 2.0 * e["dq"], rel_tol=1e-12)


def test_dots_without_wgmma_on_hopper_run_at_mma_sync_speed():
    """H100, d = 128, 32 x 64 w4 s2: Triton gives wgmma only to dots of 64 rows or more. Every dK/dV dot has the
    tile's 64 keys as rows (S and dP computed transposed): all wgmma, no change; every dQ dot has its 32 query rows:
    all mma.sync at 2/3 of the peak, so by hand its tensor time is the FLOPs at the family's rate x 3/2. A100 has
    no wgmma: nothing changes there. And a kernel with both kinds pays the FLOP-weighted mean (by hand: half its
    FLOPs at 2/3 of the peak, x (1/2 + 1/2 x 3/2) = 1.25)."""
    from attnsim.simulator.model import _bwd_tile_costs, _mma_sync_share
    for hw_name, factors in (("h100", {"dkdv": 1.0, "dq": 1.5}), ("a100", {"dkdv": 1.0, "dq": 1.0})):
        hw = load_hardware(hw_name)
        t = Tile(32, 64, 4, 2)
        r = rates(hw, FAM, None)
        sm = SMRates.of(r, "fp16", "fp32")
        arch = "sm_" + hw.compute_capability.replace(".", "")
        for part, flops, kernel in (("dkdv", 2 * 32 * 64 * (2 * 128 + 2 * 128), "_bwd_dkdv_kernel"),
                                    ("dq", 2 * 32 * 64 * (2 * 128 + 128), "_bwd_dq_kernel")):
            f = compiled_facts()[(arch, kernel, 128, 32, 64, 4, 2)]
            if hw_name == "h100":  # the compiled dots, by hand: versions of the full-tile loop's dots
                assert (sum(x for v, x in zip(f["dot_versions"], f["dot_flops"]) if v == 2)
                        / sum(f["dot_flops"]) == (0.0 if part == "dkdv" else 1.0))
            got = _bwd_tile_costs(r, FAM, t, 2, 128, 128, 2, sm, kernel=part).parts["tensor"]
            assert math.isclose(got, flops / sm.mma * 2 * factors[part], rel_tol=1e-12), (hw_name, part)
    mixed = {"dot_versions": [2, 3, 3, 2, 3], "dot_flops": [4, 2, 2, 4, 4]}
    assert math.isclose(1 / _mma_sync_share(rates(load_hardware("h100"), FAM, None), mixed), 1.25, rel_tol=1e-12)
    assert _mma_sync_share(rates(load_hardware("a100"), FAM, None), mixed) == 1.0



def test_a_tiled_neighborhood_order_keeps_the_forwards_tile_in_the_backward():
    """In NATTEN's tiled token order the plan's boxes are the forward's: the kernels run both backward kernels at
    the forward's tile (kernels/triton_attention.py `_bwd`), and so does the model; in row-major order each takes
    its own."""
    from attnsim import predict_variant
    tiles = {}
    for order in ("tiled", "rowmajor"):
        p = predict_variant("h100", "na", {"token_shape": "32x32", "kernel_size": "7x7", "token_order": order},
                            kernel="attnsim", phase="train", heads=4, head_dim=64, dtype="fp16")
        tiles[order] = [k.tile_obj for k in p.kernels if k.role in ("forward", "backward")]
    fwd, dkdv, dq = tiles["tiled"]
    assert dkdv == fwd and dq == fwd
    own = predict_variant("h100", "mha", {}, kernel="attnsim", phase="train", heads=4, head_dim=64, dtype="fp16",
                          seqlen=1024)
    assert tiles["rowmajor"][1:] == [k.tile_obj for k in own.kernels if k.role == "backward"]


def test_tiles_priced_alike_go_to_the_one_whose_units_do_less():
    """An autotuned family takes the fastest tile, then the fewest FLOPs, then the least busy units. Under a
    calibration that hides the softmax behind a slowed tensor rate (η 0.32, overlap 1: the A100 Triton fit the
    attnsim family borrows), 64x32 w4 s2 and 128x32 w8 s3 price exactly alike at d = 128, 16k tokens; the second
    computes 1.125 exps per score where the first computes 1.5 (its compiled facts), so its exp unit is busy
    for 1.125 / 1.5 of the time and it is chosen, by predict and predict_many alike."""
    from attnsim.simulator.model import _choose, busy_time
    from attnsim.simulator.rates import Calibration
    from attnsim.simulator.vectorized import predict_many
    from types import SimpleNamespace as K
    fam = get_family("attnsim")
    a = K(time_s=1.0, flops=8, unit_times_s={"tensor": 1.0, "exp": 0.5, "hbm": 9.0, "schedule": 1.0})
    b = K(time_s=1.0, flops=8, unit_times_s={"tensor": 1.0, "exp": 0.375, "hbm": 9.0, "schedule": 1.0})
    assert busy_time(a.unit_times_s) == 1.5 and busy_time(b.unit_times_s) == 1.375  # hbm, schedule: not a tile's
    assert _choose(fam, [a, b], lambda c: c) is b and _choose(fam, [b, a], lambda c: c) is b
    faster = K(time_s=0.9, flops=9, unit_times_s={"tensor": 2.0})
    assert _choose(fam, [a, b, faster], lambda c: c) is faster  # time first
    hw = load_hardware("a100")
    cal = Calibration(tensor=0.3164, overlap=1.0)
    w = Workload(batch=1, seqlen_q=16384, heads_q=16, head_dim_qk=128, dtype="fp16")
    k = predict(w, hw, "attnsim", calibration=cal).kernels_for("forward")[0]
    assert k.tile == "128x32 w8 s3"
    exps = {t: compiled_tile(fam, hw, Tile(*t), 128, 128)["exp_per_score"] for t in ((64, 32, 4, 2), (128, 32, 8, 3))}
    assert exps == {(64, 32, 4, 2): 1.5, (128, 32, 8, 3): 1.125}
    many = predict_many(hw, "attnsim", batch=[1], seqlen_q=[16384], heads_q=[16], head_dim_qk=[128], dtype="fp16",
                        calibration=cal)
    assert many["time_s"][0] == pytest.approx(k.time_s, rel=1e-12) and many["flops"][0] == k.flops
