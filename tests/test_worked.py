"""Worked cases: predicted times written out by hand from the profile's figures and the mechanism
DESIGN.md section 5 documents, and hand arithmetic that kills mutants the rest of the suite lets live.

    kernel time   = launch overhead + max(makespan, HBM bytes / HBM bandwidth, L2 bytes / L2 bandwidth)
    CTA duration  = 2 x DRAM latency + max(compute, streaming)
    compute       = tiles x t_tile,  t_tile = max(t_smem, hi + (1 - overlap) x lo),
                    hi, lo = max, min(t_tensor, t_softmax),  t_softmax = max(exps / SFU, FP32 ops / FP32 pipes)
                    (each unit at its per-SM rate at clock_sustained_hz, shared by the k CTAs of an SM)
    streaming     = tiles x DRAM latency / stages
    makespan      = equal CTAs on SMs x k slots: ceil(CTAs / slots) waves of one CTA duration
    memory stream = launch overhead + max(bytes / HBM bandwidth, exps / SFU, FP32 ops / FP32 pipes, 2 x latency)

The profile's figures are read from the loaded Hardware (the inputs); the formulas, tile shapes,
tile counts and byte counts are written here, each derived in a comment. Every shape uses full tiles
only (sequence lengths are multiples of every tile size involved): how ragged tiles are priced is
not what these tests pin down.
"""
from __future__ import annotations

import math

import pytest

from attnsim.simulator.bound import bound
from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.masks import BlockSelectMask
from attnsim.simulator.model import predict
from attnsim.simulator.variants import get_variant
from attnsim.simulator.workload import Workload

A100 = load_hardware("a100")
H100 = load_hardware("h100")
REL = 1e-9


def per_sm_rates(hw, dtype="bf16"):
    """(tensor FLOP/clk, SFU exp/clk, FP32 instr/clk, smem B/clk) per SM; an FMA is 2 FLOPs, 1 instruction."""
    return (hw.mma_flops_per_clk_per_sm(dtype, "fp32"), hw.exp_ops_per_clk_per_sm,
            hw.fp32_flops_per_clk_per_sm / 2, hw.smem_bytes_per_clk_per_sm)


def stream_kernel(hw, read, write, fp32_ops=0.0, exps=0.0):
    """A memory-streaming kernel (preprocess, convert, combine): launch + its slowest unit."""
    clk, sm = hw.clock_sustained_hz, hw.sm_count
    return hw.kernel_launch_overhead_s + max((read + write) / hw.hbm_bandwidth_bytes_per_s,
                                             exps / (hw.exp_ops_per_clk_per_sm * sm * clk),
                                             fp32_ops / (hw.fp32_flops_per_clk_per_sm / 2 * sm * clk),
                                             2 * hw.dram_latency_s)


def kernel(p, name):
    [k] = [k for k in p.kernels if k.name == name]
    return k


# -- (a) one CTA: launch + latency + the family's overlap formula ---------------------------------------
def test_single_cta_prefill_fa2_a100_serializes_softmax_and_matmuls():
    """batch 1, 1 head, 128 tokens, d 128, bf16 on A100 with FA2: FA2's sm80 hdim-128 tile is
    128 x 64 (4 warps, 1 stage; flash_fwd_launch_template.h), so one CTA owns the only query tile
    and walks 128 / 64 = 2 full kv tiles."""
    hw = A100
    p = predict(Workload(batch=1, seqlen_q=128, heads_q=1, head_dim_qk=128), hw, "fa2", calibration=None)
    [k] = p.kernels
    assert (k.name, k.tile, k.ctas, k.ctas_per_sm) == ("attn_fwd", "128x64 w4 s1", 1, 1)
    mma, sfu, fp32, smem = per_sm_rates(hw)
    assert (mma, sfu, fp32, smem) == (2048, 16, 64, 128)  # the figures the cycle counts below assume
    clk, lat = hw.clock_sustained_hz, hw.dram_latency_s
    # one tile, 128 query rows x 64 keys, alone on its SM (k = 1):
    t_tensor = 2 * 128 * 64 * (128 + 128) / mma  # QK^T and PV: 4,194,304 FLOPs -> 2048 clk
    t_exp = 128 * 64 / sfu  # one exp per score: 8192 / 16 = 512 clk
    t_fp32 = 128 * 64 * 4 / fp32  # FA2's 4 FP32 instructions per score: 32768 / 64 = 512 clk
    # shared memory: the K and V tile (64 keys x 256 channels x 2 B = 32 KiB) written once (cp.async)
    # and read by each of the 4 warps (each owns a 16-row slice: min(4 warps, 128/16)); Q read once
    t_smem = (64 * 256 * 2 * (1 + 4) + 128 * 128 * 2) / smem  # 196,608 B / 128 = 1536 clk
    assert (t_tensor, t_exp, t_fp32, t_smem) == (2048, 512, 512, 1536)
    # FA2 runs softmax and the matmuls one after the other (overlap 0): t_tile = max(smem, tc + softmax)
    t_tile = max(t_smem, t_tensor + max(t_exp, t_fp32)) / clk  # 2560 clk
    cta = 2 * lat + max(2 * t_tile, 2 * lat / 1)  # 2 tiles; streaming = 2 tiles x latency / 1 stage
    hbm = 128 * 128 * 2 * 4 + 128 * 4  # Q, K, V, O (128 x 128 bf16 each) + the fp32 LSE: 131,584 B
    l2 = 2 * 64 * 256 * 2 + 2 * 128 * 128 * 2  # each kv tile once, Q and O: 131,072 B
    expected = hw.kernel_launch_overhead_s + max(cta, hbm / hw.hbm_bandwidth_bytes_per_s,
                                                 l2 / hw.l2_bandwidth_bytes_per_s)
    assert cta > hbm / hw.hbm_bandwidth_bytes_per_s  # the CTA, not HBM, sets the time: the formula is exercised
    assert k.time_s == pytest.approx(expected, rel=REL)
    assert p.time_s == pytest.approx(expected, rel=REL)
    assert expected == pytest.approx(3e-6 + 2 * 3.31e-7 + 2 * 2560 / 1.41e9, rel=REL)  # the A100 figures
    assert k.flops == k.useful_flops == p.useful_flops == 2 * 4_194_304
    assert k.hbm_bytes == hbm
    # footprint: Q, K, V, O and the LSE (4 B per query row)
    assert p.memory_bytes == 128 * 128 * 2 * 4 + 128 * 4 == 131_584


def test_single_cta_prefill_fa3_h100_hides_softmax_behind_the_matmuls():
    """128 queries against 1408 keys, 1 head, d 128, bf16 on H100 with FA3: tile_size_fwd_sm90 gives
    128 x 176 (non-causal hdim 128), 3 warpgroups, 2 stages; 1408 = 8 x 176, so one CTA, 8 full tiles."""
    hw = H100
    p = predict(Workload(batch=1, seqlen_q=128, seqlen_kv=1408, heads_q=1, head_dim_qk=128), hw, "fa3", calibration=None)
    [k] = p.kernels
    assert (k.tile, k.ctas, k.ctas_per_sm) == ("128x176 w12 s2", 1, 1)
    mma, sfu, fp32, smem = per_sm_rates(hw)
    assert (mma, sfu, fp32, smem) == (4096, 16, 128, 128)
    clk, lat = hw.clock_sustained_hz, hw.dram_latency_s
    t_tensor = 2 * 128 * 176 * 256 / mma  # 11,534,336 FLOPs / 4096 = 2816 clk
    t_exp = 128 * 176 / sfu  # 22,528 / 16 = 1408 clk
    t_fp32 = 128 * 176 * 4 / fp32  # 704 clk
    # TMA writes K/V (not counted); each of the 2 consumer warpgroups (128 / 64) reads the K/V tile
    t_smem = (176 * 256 * 2 * 2 + 128 * 128 * 2) / smem  # 212,992 B / 128 = 1664 clk
    assert (t_tensor, t_exp, t_fp32, t_smem) == (2816, 1408, 704, 1664)
    # FA3 overlaps softmax with the matmuls completely (overlap 1): t_tile = max(smem, max(tc, softmax))
    t_tile = max(t_smem, max(t_tensor, t_exp)) / clk  # 2816 clk (an unhidden softmax would be 4224)
    cta = 2 * lat + max(8 * t_tile, 8 * lat / 2)  # streaming: 8 tiles, 2 in flight
    hbm = 128 * 128 * 2 + 1408 * 256 * 2 + 128 * 128 * 2 + 128 * 4  # Q, K and V, O, LSE
    expected = hw.kernel_launch_overhead_s + max(cta, hbm / hw.hbm_bandwidth_bytes_per_s)  # no sourced L2 rate
    assert hw.l2_bandwidth_bytes_per_s is None
    assert k.time_s == pytest.approx(expected, rel=REL)
    assert expected == pytest.approx(3e-6 + 2 * 2.73e-7 + 8 * 2816 / 1.83e9, rel=REL)
    assert k.hbm_bytes == hbm == 786_944


# -- (b) several waves of equal CTAs ------------------------------------------------------------------
def test_multi_wave_prefill_fa2_a100_runs_ceil_ctas_over_slots_waves():
    """batch 4, 32 heads, 512 tokens, d 128 on A100 with FA2 (128 x 64 tile): 4 x 32 x 512/128 = 512
    equal CTAs of 512/64 = 8 full tiles each."""
    hw = A100
    p = predict(Workload(batch=4, seqlen_q=512, heads_q=32, head_dim_qk=128), hw, "fa2", calibration=None)
    [k] = p.kernels
    mma, sfu, fp32, smem = per_sm_rates(hw)
    clk, lat, sms = hw.clock_sustained_hz, hw.dram_latency_s, hw.sm_count
    # CTAs per SM: shared memory Q 128x128x2 + one stage of K, V 64x256x2 = 65,536 B -> 167,936 // 65,536 = 2;
    # registers (128 x (128 + 64)) / 128 threads + 32 = 224 per thread -> 65,536 // (224 x 128) = 2;
    # threads 2048 // 128 = 16; at most 32; the grid puts ceil(512 / 108) = 5 >= 2 on an SM
    smem_cta = 128 * 128 * 2 + 64 * 256 * 2
    regs = 128 * (128 + 64) // 128 + 32
    kk = min(hw.smem_per_sm_bytes // smem_cta, hw.registers_per_sm // (regs * 128),
             hw.max_threads_per_sm // 128, hw.max_ctas_per_sm, math.ceil(512 / sms))
    assert kk == 2 and (k.ctas, k.ctas_per_sm) == (512, 2)
    slots = sms * kk  # 216
    waves = math.ceil(512 / slots)  # 3 (2.37 rounded up)
    assert waves == 3
    assert k.waves == pytest.approx(512 / 216, rel=REL)
    assert k.wave_efficiency == pytest.approx(512 / (3 * 216), rel=REL)
    # two CTAs share the SM: every unit at half its rate (cycle counts of the single-CTA case x 2)
    t_tile = max(2 * 1536, 2 * 2048 + 2 * 512) / clk  # 5120 clk
    assert 2 * (64 * 256 * 2 * 5 + 128 * 128 * 2) / smem == 2 * 1536 and 2 * 2 * 128 * 64 * 256 / mma == 2 * 2048
    assert 2 * 128 * 64 / sfu == 2 * 128 * 64 * 4 / fp32 == 2 * 512
    cta = 2 * lat + max(8 * t_tile, 8 * lat)
    makespan = waves * cta
    rows = 4 * 32 * 512
    hbm = rows * 128 * 2 * 2 + rows * 256 * 2 + rows * 4  # Q + O, K + V, LSE: 67,371,008 B
    l2 = 512 * 8 * 64 * 256 * 2 + rows * 128 * 2 * 2  # every CTA's 8 K/V tiles, Q, O
    expected = hw.kernel_launch_overhead_s + max(makespan, hbm / hw.hbm_bandwidth_bytes_per_s,
                                                 l2 / hw.l2_bandwidth_bytes_per_s)
    assert makespan > hbm / hw.hbm_bandwidth_bytes_per_s  # the waves set the time
    assert k.hbm_bytes == hbm and k.l2_bytes == l2
    assert k.unit_times_s["schedule"] == pytest.approx(makespan, rel=REL)
    assert p.time_s == pytest.approx(expected, rel=REL)


# -- (c) split-KV decode and its combine kernel ---------------------------------------------------------
def test_split_kv_decode_fa2_a100_by_flash_attention_heuristic():
    """One decode step, batch 48, 128 query heads over 2 kv heads (group 64), 4096 cached tokens, d 128,
    on A100 with FA2. FA2 packs the 64 query heads of a kv head into the 64 rows of its split-KV tile
    (64 x 128, 4 warps, 1 stage; run_mha_fwd_splitkv_dispatch hdim 128): one full row block per
    (sequence, kv head): 48 x 2 = 96 blocks, 4096 / 128 = 32 kv blocks.

    num_splits_heuristic (flash_api.cpp), called by FA2 with num_SMs = 2 x 108 = 216: 96 < 0.8 x 216,
    so it splits; 1 split fills 96/216 = 0.44 of a wave, 2 splits fill 192/216 = 0.89 >= 0.85 x (best
    <= 1) and are eligible (ceil(32/2) = 16 != ceil(32/1) = 32): 2 splits. (With 108 SMs it would not
    split at all: 96 >= 0.8 x 108.)"""
    hw = A100
    w = Workload(batch=48, seqlen_q=1, seqlen_kv=4096, heads_q=128, heads_kv=2, head_dim_qk=128, phase="decode")
    p = predict(w, hw, "fa2", calibration=None)
    assert [k.name for k in p.kernels] == ["attn_decode", "decode_combine"]
    main, comb = p.kernels
    assert 96 < 0.8 * 2 * hw.sm_count and 96 >= 0.8 * hw.sm_count  # the case where 2 x SMs matters
    assert main.splits == 2
    assert main.tile == "64x128 w4 s1"
    # 96 row blocks x 2 splits = 192 CTAs of 32 / 2 = 16 full tiles; CTAs per SM:
    # min(smem 167,936 // (64x128x2 + 128x256x2 = 81,920) = 2, regs 65,536 // ((64x256/128 + 32) x 128) = 3,
    # grid ceil(192 / 108) = 2) = 2 -> 216 slots, one wave
    assert (main.ctas, main.ctas_per_sm) == (192, 2)
    mma, sfu, fp32, smem = per_sm_rates(hw)
    clk, lat = hw.clock_sustained_hz, hw.dram_latency_s
    t_tensor = 2 * 2 * 64 * 128 * 256 / mma  # 2 CTAs per SM: 2 x 2048 = 4096 clk
    t_soft = 2 * max(64 * 128 / sfu, 64 * 128 * 4 / fp32)  # 2 x 512 = 1024 clk
    t_smem = 2 * (128 * 256 * 2 * (1 + 4) + 64 * 128 * 2) / smem  # 2 x 344,064 / 128 = 5376 clk
    t_tile = max(t_smem, t_tensor + t_soft) / clk  # 5376 clk: shared memory bound
    assert (t_tensor, t_soft, t_smem) == (4096, 1024, 5376)
    cta = 2 * lat + max(16 * t_tile, 16 * lat / 1)
    assert main.unit_times_s["schedule"] == pytest.approx(cta, rel=REL)  # 192 CTAs <= 216 slots: one wave
    q_rows = 48 * 128
    kv = 48 * 2 * 4096 * 256 * 2  # the cache, read once: 201,326,592 B
    partials = q_rows * (128 + 1) * 4 * 2  # fp32 partial O and LSE per split: 6,340,608 B
    hbm = kv + q_rows * 128 * 2 + partials  # O is written by the combine kernel, not here
    l2 = 192 * 16 * 128 * 256 * 2 + hbm
    t_main = hw.kernel_launch_overhead_s + max(cta, hbm / hw.hbm_bandwidth_bytes_per_s,
                                               l2 / hw.l2_bandwidth_bytes_per_s)
    assert main.hbm_bytes == hbm == 209_240_064
    assert main.time_s == pytest.approx(t_main, rel=REL)
    # combine: read the partials, write O (bf16), 3 FP32 ops per output element per split
    t_comb = stream_kernel(hw, partials, q_rows * 128 * 2, fp32_ops=3 * q_rows * 128 * 2)
    assert comb.hbm_bytes == partials + q_rows * 128 * 2
    assert comb.time_s == pytest.approx(t_comb, rel=REL)
    assert p.time_s == pytest.approx(t_main + t_comb, rel=REL)
    assert p.useful_flops == main.useful_flops == 2 * 256 * 48 * 128 * 4096
    # footprint: Q, O, the cache, one LSE per query row, and the split partials
    assert p.memory_bytes == q_rows * 128 * 2 * 2 + kv + q_rows * 4 + partials


# -- (d) a backward ------------------------------------------------------------------------------------
def test_train_fa2_a100_forward_and_backward_by_hand():
    """Train, batch 2, 4 heads, 256 tokens, d 128, bf16 on A100 with FA2: the forward (128 x 64),
    bwd_preprocess (D = rowsum(dO * O), dQ accumulator zeroed), attn_bwd gridded over kv tiles
    (64 x 128, 8 warps, 1 stage: flash_bwd_launch_template.h hdim 128) and bwd_dq_convert."""
    hw = A100
    p = predict(Workload(batch=2, seqlen_q=256, heads_q=4, head_dim_qk=128, phase="train"), hw, "fa2", calibration=None)
    assert [k.name for k in p.kernels] == ["attn_fwd", "bwd_preprocess", "attn_bwd", "bwd_dq_convert"]
    fwd, pre, bwd, conv = p.kernels
    mma, sfu, fp32, smem = per_sm_rates(hw)
    clk, lat, launch, bw, l2bw = (hw.clock_sustained_hz, hw.dram_latency_s, hw.kernel_launch_overhead_s,
                                  hw.hbm_bandwidth_bytes_per_s, hw.l2_bandwidth_bytes_per_s)
    rows = 2 * 4 * 256  # query rows of every (sequence, head) = key rows
    pairs = 2 * 4 * 256 * 256
    # forward: 2 x 4 x 2 = 16 CTAs (1 per SM: 16 < 108 SMs), 4 full kv tiles each, t_tile 2560 clk
    assert (fwd.tile, fwd.ctas, fwd.ctas_per_sm) == ("128x64 w4 s1", 16, 1)
    cta_f = 2 * lat + max(4 * 2560 / clk, 4 * lat)
    hbm_f = rows * 128 * 2 * 4 + rows * 4  # Q, K, V, O + LSE
    l2_f = 16 * 4 * 64 * 256 * 2 + rows * 128 * 2 * 2
    t_fwd = launch + max(cta_f, hbm_f / bw, l2_f / l2bw)
    assert fwd.time_s == pytest.approx(t_fwd, rel=REL)
    # preprocess: read dO and O, write D (fp32) and zero the fp32 dQ accumulator; 2 FP32 ops per element
    t_pre = stream_kernel(hw, 2 * rows * 128 * 2, rows * 4 + rows * 128 * 4, fp32_ops=2 * rows * 128)
    assert pre.time_s == pytest.approx(t_pre, rel=REL)
    # backward: a CTA owns 128 keys of one (sequence, head): 2 x 4 x 256/128 = 16 CTAs, 256/64 = 4 q tiles each.
    # CTAs per SM: shared memory Q+dO (64 x 256 x 2) + K+V (128 x 256 x 2) + dS (64 x 128 x 2) = 114,688 B -> 1
    assert (bwd.tile, bwd.ctas, bwd.ctas_per_sm) == ("64x128 w8 s1", 16, 1)
    assert hw.smem_per_sm_bytes // (64 * 256 * 2 + 128 * 256 * 2 + 64 * 128 * 2) == 1
    t_tensor = 2 * 64 * 128 * (3 * 128 + 2 * 128) / mma  # S, dQ, dK (3d) and dP, dV (2dv): 5120 clk
    t_soft = max(64 * 128 / sfu, 64 * 128 * 4 / fp32)  # 512 clk
    # Q and dO tiles written once, read by 4 warps (min(8 warps, 64/16)); dS written and read once
    t_smem = (64 * 256 * 2 * (1 + 4) + 2 * 64 * 128 * 2) / smem  # 196,608 / 128 = 1536 clk
    assert (t_tensor, t_soft, t_smem) == (5120, 512, 1536)
    t_tile = max(t_smem, t_tensor + t_soft) / clk  # 5632 clk (overlap 0)
    cta_b = 2 * lat + max(4 * t_tile, 4 * lat)
    # HBM: Q and dO read, K and V read, LSE and D read (8 B per row), dK and dV written, dQ fp32 accumulator
    hbm_b = rows * 256 * 2 + rows * 256 * 2 + rows * 8 + rows * 256 * 2 + rows * 128 * 4
    # L2: every visited tile brings its Q and dO rows (+ LSE and D) and read-modify-writes dQ in fp32
    l2_b = 16 * 4 * (64 * 256 * 2 + 8 * 64 + 2 * 64 * 128 * 4) + hbm_b
    t_bwd = launch + max(cta_b, hbm_b / bw, l2_b / l2bw)
    assert bwd.hbm_bytes == hbm_b == 4_210_688
    assert bwd.time_s == pytest.approx(t_bwd, rel=REL)
    # dQ convert: read the fp32 accumulator, write dQ in bf16
    t_conv = stream_kernel(hw, rows * 128 * 4, rows * 128 * 2)
    assert conv.time_s == pytest.approx(t_conv, rel=REL)
    assert p.time_s == pytest.approx(t_fwd + t_pre + t_bwd + t_conv, rel=REL)
    # useful FLOPs: forward 2(d + dv) per live pair, backward 2(3d + 2dv) (S recomputed, dQ, dK, dP, dV)
    assert bwd.useful_flops == bwd.flops == 2 * (3 * 128 + 2 * 128) * pairs == 671_088_640
    assert p.useful_flops == 2 * (128 + 128) * pairs + 2 * (3 * 128 + 2 * 128) * pairs


# -- mutants the suite used to let live ------------------------------------------------------------------
def test_fp8_kv_cache_is_read_at_one_byte_per_element_in_decode():
    """bf16 compute over an fp8 KV cache on H100 (FA3): batch 16, 32 query / 8 kv heads, 8192 cached
    tokens. 16 x 8 = 128 row blocks >= 0.8 x 132 SMs: no split, so the kernel writes O itself."""
    w = Workload(batch=16, seqlen_q=1, seqlen_kv=8192, heads_q=32, heads_kv=8, head_dim_qk=128,
                 kv_dtype="fp8", phase="decode")
    p = predict(w, H100, "fa3", calibration=None)
    [k] = p.kernels
    assert k.splits == 1
    kv = 16 * 8 * 8192 * (128 + 128) * 1  # K and V, one byte per element
    q = o = 16 * 32 * 128 * 2  # bf16 query and output
    assert k.hbm_bytes == kv + q + o == 268_697_600
    assert p.kv_cache_bytes == kv
    assert p.bound.unit == "hbm" and p.bound.time_s == pytest.approx((kv + q + o) / 3.35e12, rel=REL)


def test_moba_gate_scores_every_query_head_under_gqa():
    """MoBA (Lu et al. 2025) gates each query head: s = <q, mean-pool(K of block)>, the block means of
    the query head's own kv head. GQA, batch 2, 16 query / 4 kv heads, 4096 tokens, d 128, blocks of
    512 (8 blocks), top 3, causal. Pooling reads K once per kv head; the gate GEMM scores every query
    of every query head against the 8 block means; top-k reads those scores."""
    w = Workload(batch=2, seqlen_q=4096, heads_q=16, heads_kv=4, head_dim_qk=128, causal=True)
    p = predict(w, H100, "fa3", mask=BlockSelectMask(512, 3, causal=True), compare=False, calibration=None)
    gate = kernel(p, "moba_gate_gemm")
    gate_flops = 2 * 2 * 16 * 4096 * 8 * 128  # batch x query heads x queries x blocks x d, 2 FLOPs per MAC
    assert gate.useful_flops == gate_flops == 268_435_456
    assert gate.ctas >= 2 * 16  # one GEMM problem per (sequence, query head)
    pool = kernel(p, "moba_pool")
    assert pool.hbm_bytes == 2 * 4 * 4096 * 128 * 2 + 2 * 4 * 8 * 128 * 2  # K per kv head in, block means out
    topk = kernel(p, "moba_topk")
    assert topk.hbm_bytes == 2 * 16 * 4096 * 8 * 4 + 2 * 16 * (4096 // 512) * 3 * 4  # fp32 scores in, indices out
    # attention: query block b sees blocks max(b - 2, 0) .. b, its own causally
    per_head = sum(i % 512 + 1 + 512 * min(i // 512, 2) for i in range(4096))
    assert per_head == 131_328 + 393_472 + 6 * 655_616
    attn = 2 * (128 + 128) * 2 * 16 * per_head
    assert kernel(p, "attn_fwd").useful_flops == attn
    assert p.useful_flops == attn + gate_flops  # the gate's GEMM is useful work of the op (and in its bound)


def test_mla_absorbed_decode_reads_the_latent_cache_once():
    """MLA decode (absorbed; DeepSeek-V2 defaults: kv_lora_rank 512, rope 64) on H100, FA3's latent
    kernel: 128 heads packed over one latent 'kv head', K = [c_KV, k_R] (576 channels) and V = c_KV read
    from the same rows. batch 64: 64 x 128 / 64 = 128 row blocks >= 0.8 x 132: no split."""
    w = Workload(batch=64, seqlen_q=1, seqlen_kv=4096, heads_q=128, head_dim_qk=192, head_dim_v=128,
                 phase="decode")
    var = get_variant("mla")
    lay = var.layout(var.resolve({}), w, 128 * 128, 64)
    p = predict(w, H100, "fa3", variant="mla", layout=lay, calibration=None)
    k = kernel(p, "attn_decode")
    assert k.splits == 1
    cache = 64 * 4096 * (512 + 64) * 2  # the latent once per token: 576 bf16 elements, for all 128 heads
    q = 64 * 128 * 576 * 2  # absorbed queries: latent + rope channels per head
    o = 64 * 128 * 512 * 2  # latent outputs
    assert k.hbm_bytes == cache + q + o
    assert p.kv_cache_bytes == cache
    assert k.useful_flops == 2 * (576 + 512) * 64 * 128 * 4096


def test_bound_exp_term_counts_the_score_functions_fp32_work():
    """A score function with 3 FP32 instructions per score (score_fp32_ops), H100, d 32. Exps can run
    on the SFU (16/clk/SM) or emulated on the FP32 pipes (128 instr/clk/SM at 6 instr per exp2), and
    the pipes also carry the 3 FP32 ops per score: the LP optimum is (n + 3n/6) / (16 + 128/6) per SM-clock,
    never below 3n / 128 (the FP32 work alone)."""
    hw = H100
    w = Workload(batch=1, seqlen_q=4096, heads_q=16, head_dim_qk=32, score_fp32_ops=3)
    b = bound(w, hw)
    n = 16 * 4096 * 4096
    smclk = hw.sm_count * hw.clock_max_hz  # the bound runs at the maximum clock
    exp_s = max(3 * n / (128 * smclk), (n + 3 * n / 6) / (16 * smclk + 128 * smclk / 6))
    tensor_s = 2 * (32 + 32) * n / (4096 * smclk)
    assert b.unit_times_s["exp"] == pytest.approx(exp_s, rel=1e-12)
    assert b.unit_times_s["fp32"] == pytest.approx(3 * n / (128 * smclk), rel=1e-12)
    assert exp_s > tensor_s  # 0.0402 n vs 0.0313 n per SM-clock: the exp term binds
    assert b.unit == "exp" and b.time_s == pytest.approx(exp_s, rel=1e-12)


def test_fa2_split_heuristic_case_where_twice_the_sms_matters_on_h100():
    """FA2 on H100 (132 SMs; FA2 hands its heuristic 2 x 132 = 264): batch 20, 8 heads (MHA: one row
    block per (sequence, head)), 8192-token context, d 128 (kv tile 128: 64 kv blocks), 160 row blocks.
    160 < 0.8 x 264 = 211.2, so it splits: 1 split fills 160/264 = 0.61 of a wave, 2 splits 320/264 =
    1.21 waves -> 0.61, 3 splits 480/264 = 1.82 waves -> 0.91 >= 0.85 x (best <= 1), eligible
    (ceil(64/3) = 22 != ceil(64/2) = 32): 3 splits. Given 132 it would not split (160 >= 105.6)."""
    w = Workload(batch=20, seqlen_q=1, seqlen_kv=8192, heads_q=8, head_dim_qk=128, phase="decode")
    p = predict(w, H100, "fa2", calibration=None)
    main = kernel(p, "attn_decode")
    assert 0.8 * 132 <= 160 < 0.8 * 264
    assert main.splits == 3
    assert main.ctas == 160 * 3


# -- bugs found while writing these (strict xfail: each turns into a failure when fixed) ---------------------
@pytest.mark.xfail(strict=True, reason=(
    "gemm() prices no shared-memory operand traffic (the attention tiles do): a 64x64x64 tile streams "
    "(64 + 64) x 64 x 2 B = 16 KiB of operands per 524,288 FLOPs, i.e. 128 B/clk at H100's 4096 FLOP/clk/SM "
    "(the whole 128 B/clk/SM shared-memory rate, before any warp re-reads it), against 48 B/clk for 128x256x64; "
    "with no L2 rate in the H100 profile nothing penalizes it, so it wins the 8192^3 GEMM on finer wave "
    "quantization (41.4 -> 42 waves of 3 CTAs/SM vs 15.5 -> 16 waves; 1.151 vs 1.155 ms). On A100, whose "
    "profile has an L2 rate, the same GEMM takes 128x256x64."))
def test_big_h100_gemm_takes_the_large_tile_its_comment_derives():
    from attnsim.simulator.pricing import gemm
    from attnsim.simulator.rates import rates
    big = gemm("g", rates(H100), 8192, 8192, 8192, 1, "bf16")
    # 8192^2 / (128 x 256) = 2048 CTAs, 1 per SM (147,456 B of shared memory each): 2048 / 132 = 15.5 waves
    assert big.tile in ("128x256x64 w8 s3", "256x128x64 w8 s3") and (big.ctas, big.ctas_per_sm) == (2048, 1)
    assert big.waves == pytest.approx(2048 / 132, rel=1e-12)


def test_eager_train_executes_at_least_its_useful_flops():
    """Eager train executes the keep-P backward, 2(2d + 2dv) FLOPs per pair (bwd_dv_gemm, bwd_dp_gemm,
    bwd_dq_gemm, bwd_dk_gemm), and its useful FLOPs count that algorithm: 4d + 8d = 12d per live pair
    at d = dv, not FlashAttention's recompute-P 14d (which exceeded what eager executes)."""
    w = Workload(batch=1, seqlen_q=1024, heads_q=16, head_dim_qk=128, phase="train")
    p = predict(w, H100, "eager", calibration=None)
    pairs = 16 * 1024 * 1024
    # eager computes every score: forward S and O, backward dV, dP, dQ, dK: 2 x 128 FLOPs per pair each
    assert p.flops == 6 * 2 * 128 * pairs  # 1024 and 128 divide every GEMM tile: no padding
    assert p.useful_flops == (4 * 128 + 8 * 128) * pairs  # dense: every pair is live, so useful = executed
    assert p.flops >= p.useful_flops
