"""Head layouts, latent and projected attention (issue 4): FLOPs, bytes and caches against arithmetic
written out from each paper's definition, the invariants the issue names, and the CLI's errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tile_oracle import classify

from attnsim.simulator import heads
from attnsim.simulator.bound import unit_times
from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.layouts import standard
from attnsim.simulator.masks import SpreadCausalMask, tile_cols, tile_rows
from attnsim.simulator.model import predict
from attnsim.simulator.variants import get_variant
from attnsim.simulator.workload import Workload
from test_cli import assert_one_line_error, invoke

H100 = load_hardware("h100")
S = 2  # bf16 bytes


def layout(name, w, d_model=None, rope_dim=None, **given):
    var = get_variant(name)
    return var.layout(var.resolve(given), w, d_model or w.heads_q * w.head_dim_qk,
                      w.head_dim_qk if rope_dim is None else rope_dim)


def run(name, w, scope="attention", kernel=None, d_model=None, **given):
    lay = layout(name, w, d_model, **given)
    return predict(w, H100, kernel, variant=name, scope=scope, layout=lay)


def core_pairs(b, h, lq, lk, causal=False):
    return b * h * (sum(min(lk, i + lk - lq + 1) for i in range(lq)) if causal else lq * lk)


# -- the gathered-row causal mask (MoH ideal) against a plain double loop ----------------------------
@pytest.mark.parametrize("n,positions,lk", [(6, 16, 16), (13, 40, 40), (40, 40, 40), (7, 20, 33), (25, 64, 64)])
@pytest.mark.parametrize("bm,bn", [(4, 4), (8, 3), (5, 16)])
def test_spread_causal_mask_tiles_match_brute_force(n, positions, lk, bm, bn):
    m = SpreadCausalMask(positions)
    live = np.zeros((n, lk), dtype=bool)
    for i in range(n):
        pos = (i + 1) * positions // n - 1  # row i's position: the last of its evenly spread stride
        for j in range(lk):
            live[i, j] = j <= pos + lk - positions
    assert m.live_pairs(n, lk) == live.sum()
    cls = classify(live, n, lk, bm, bn)
    f, p = tile_rows(m, n, lk, bm, bn)
    assert (f.tolist(), p.tolist()) == ((cls == 2).sum(1).tolist(), (cls == 1).sum(1).tolist())
    f, p = tile_cols(m, n, lk, bm, bn)
    assert (f.tolist(), p.tolist()) == ((cls == 2).sum(0).tolist(), (cls == 1).sum(0).tolist())


# -- SQA -------------------------------------------------------------------------------------------
def test_sqa_with_every_head_equals_mha():
    for phase, scope in (("prefill", "attention"), ("train", "layer"), ("decode", "layer")):
        w = Workload(batch=2, seqlen_q=1 if phase == "decode" else 2048, seqlen_kv=2048, heads_q=16, phase=phase,
                     causal=phase != "decode")
        a = run("sqa", w, scope, query_heads=16, kv_heads=16)
        b = predict(w, H100, scope=scope)
        assert (a.time_s, a.flops, a.useful_flops, a.hbm_bytes, a.memory_bytes, a.kv_cache_bytes) == \
               (b.time_s, b.flops, b.useful_flops, b.hbm_bytes, b.memory_bytes, b.kv_cache_bytes)


@pytest.mark.parametrize("name,hq,hkv", [("sqa", 16, 8), ("ssqa", 16, 16), ("xsqa", 8, 8)])
def test_sqa_presets_flops_and_projections(name, hq, hkv):
    """H = 32 baseline heads: attention FLOPs 4 B Hq L^2 d; W_Q/W_K/W_V d_model -> Hq d + 2 Hkv d, W_O Hq d -> d_model."""
    b, L, d, dm = 1, 4096, 128, 4096
    w = Workload(batch=b, seqlen_q=L, heads_q=32, head_dim_qk=d)
    p = run(name, w)
    assert (p.workload.heads_q, p.workload.heads_kv) == (hq, hkv)
    assert p.useful_flops == 4 * b * hq * L * L * d
    assert p.useful_flops / predict(w, H100).useful_flops == hq / 32
    layer = run(name, w, "layer")
    assert layer.useful_flops - p.useful_flops == 2 * b * L * dm * (hq * d + 2 * hkv * d) + 2 * b * L * hq * d * dm
    assert p.kv_cache_bytes == b * L * hkv * 2 * d * S


# -- MLA -------------------------------------------------------------------------------------------
V2 = dict(kv_lora_rank=512, q_lora_rank=1536, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)


def test_mla_prefill_layer_flops_by_hand():
    """DeepSeek-V2 shapes (d_model 5120, 128 heads): the GEMMs of section 2.1 and an MHA core of head dims 192/128."""
    b, L, h, dm = 1, 2048, 128, 5120
    w = Workload(batch=b, seqlen_q=L, heads_q=h, causal=True)
    p = run("mla", w, "layer", d_model=dm)
    t = b * L
    gemms = (2 * t * dm * 1536 + 2 * t * 1536 * h * (128 + 64)  # q_down, q_up
             + 2 * t * dm * (512 + 64) + 2 * t * 512 * h * (128 + 128)  # kv_down (W^DKV, W^KR), kv_up (W^UK, W^UV)
             + 2 * t * h * 128 * dm)  # o_proj
    core = 2 * (192 + 128) * core_pairs(b, h, L, L, causal=True)
    assert p.useful_flops == gemms + core
    assert p.kv_cache_bytes == b * L * (512 + 64) * S
    assert (p.workload.head_dim_qk, p.workload.head_dim_v, p.workload.heads_kv) == (192, 128, h)


@pytest.mark.parametrize("heads", [16, 128])
def test_mla_absorbed_decode_reads_the_latent_once(heads):
    """Absorbed decode: MQA over the latent, K = [c_KV, k_R] (576) and V = c_KV (512) read from the same rows."""
    b, ctx = 8, 8192
    w = Workload(batch=b, seqlen_q=1, seqlen_kv=ctx, heads_q=heads, phase="decode")
    p = run("mla", w, kernel="fa3", **V2)
    assert p.workload.v_in_k and p.workload.heads_kv == 1
    assert p.kv_cache_bytes == b * ctx * 576 * S  # no H in it
    q, o, kv = b * heads * 576 * S, b * heads * 512 * S, b * ctx * 576 * S
    assert unit_times(p.works[0], H100)["hbm"] * H100.hbm_bandwidth_bytes_per_s == pytest.approx(q + kv + o)
    assert p.useful_flops == 2 * (576 + 512) * b * heads * ctx


def test_mla_decode_cache_does_not_depend_on_heads_but_total_bytes_do():
    w = Workload(batch=4, seqlen_q=1, seqlen_kv=16384, heads_q=16, phase="decode")
    few, many = run("mla", w, kernel="fa3"), run("mla", w.with_(heads_q=128), kernel="fa3")
    assert few.kv_cache_bytes == many.kv_cache_bytes
    assert many.hbm_bytes > few.hbm_bytes
    fl, ml = run("mla", w, "layer", kernel="fa3"), run("mla", w.with_(heads_q=128), "layer", kernel="fa3")
    assert fl.kv_cache_bytes == ml.kv_cache_bytes and ml.hbm_bytes > fl.hbm_bytes


def test_mla_decode_absorbed_beats_up_projecting_the_cache():
    w = Workload(batch=16, seqlen_q=1, seqlen_kv=32768, heads_q=128, phase="decode")
    ab = run("mla", w, "layer", d_model=5120, kernel="fa3")
    up = run("mla", w, "layer", d_model=5120, kernel="fa3", absorb="false")
    assert up.time_s > 5 * ab.time_s
    names = [k.name for k in up.kernels]
    assert "kv_up" in names and "q_absorb" not in names
    kv_up = next(k for k in up.kernels if k.name == "kv_up")
    assert kv_up.useful_flops == 2 * 16 * 32768 * 512 * 128 * 256  # every cached token up-projected


def test_mla_fp8_latent_cache():
    w = Workload(batch=2, seqlen_q=1, seqlen_kv=4096, heads_q=128, phase="decode", kv_dtype="fp8")
    assert run("mla", w, kernel="fa3").kv_cache_bytes == 2 * 4096 * 576 * 1


# -- KV-head compression, CCA / CCGQA ------------------------------------------------------------------
def test_kvcompress_low_rank_projection_flops():
    b, L, h, hkv, d, r, dm = 1, 1024, 32, 8, 128, 256, 4096
    w = Workload(batch=b, seqlen_q=L, heads_q=h, heads_kv=hkv)
    p = run("kvcompress", w, "layer", rank=r)
    t = b * L
    proj = 2 * t * dm * h * d + 2 * t * dm * 2 * r + 2 * t * r * hkv * 2 * d + 2 * t * h * d * dm
    assert p.useful_flops == proj + 4 * b * h * L * L * d
    assert p.kv_cache_bytes == t * hkv * 2 * d * S


def test_ccgqa_with_compression_one_is_gqa_plus_its_convolution():
    w = Workload(batch=2, seqlen_q=2048, heads_q=32, heads_kv=8, causal=True)
    cc = run("ccgqa", w, compression=1, rope_fraction="full")
    gqa = predict(w, H100)
    assert (cc.time_s, cc.useful_flops, cc.hbm_bytes) == (gqa.time_s, gqa.useful_flops, gqa.hbm_bytes)
    lay = layout("ccgqa", w, compression=1, rope_fraction="full")
    std = standard(w, 32 * 128, 128)
    extra = heads.conv_ops(lay)
    shape = lambda op: (op.m, op.n, op.k, op.batch) if hasattr(op, "m") else (op.read, op.write, op.fp32_ops)  # noqa: E731
    assert [shape(op) for op in lay.pre if op not in extra] == [shape(op) for op in std.pre]
    assert [shape(op) for op in lay.post] == [shape(op) for op in std.post]
    t, d = 2 * 2048, 128
    cl, gl = run("ccgqa", w, "layer", compression=1, rope_fraction="full"), predict(w, H100, scope="layer")
    conv2 = 2 * t * d * d * 2 * (32 + 8)  # per head d -> d channels x 2 taps, q and k heads
    assert cl.useful_flops - gl.useful_flops == conv2
    state = 2 * ((32 + 8) * d * (2 + 2 - 2) + 8 * d // 2) * S
    assert cl.kv_cache_bytes - gl.kv_cache_bytes == state


def test_cca_compression_shrinks_heads_flops_and_cache():
    w = Workload(batch=1, seqlen_q=4096, heads_q=32)
    p = run("cca", w, compression=4)
    assert (p.workload.heads_q, p.workload.heads_kv) == (8, 8)
    assert p.useful_flops * 4 == predict(w, H100).useful_flops


# -- MoH / UoE, pruning, SHViT -------------------------------------------------------------------------
def test_moh_masked_computes_every_head_ideal_only_the_active_ones():
    b, L, h, d, dm = 1, 4096, 32, 128, 4096
    w = Workload(batch=b, seqlen_q=L, heads_q=h)
    masked = run("moh", w, shared_heads=16, active_heads=8)
    ideal = run("moh", w, shared_heads=16, active_heads=8, impl="ideal")
    assert masked.flops >= 4 * b * h * L * L * d  # every head executed
    assert ideal.useful_flops == 4 * b * h * (L * 24 // 32) * L * d  # 24 of 32 heads per token
    assert masked.alternative["impl"] == "ideal" and masked.alternative["useful_flops"] == ideal.useful_flops
    assert masked.useful_flops == ideal.useful_flops  # the dropped heads' work is not useful
    assert masked.bound.time_s <= ideal.bound.time_s and masked.time_s >= masked.bound.time_s
    lay = run("moh", w, "layer", shared_heads=16, active_heads=8)
    router = next(k for k in lay.kernels if k.name == "router")
    assert router.useful_flops == 2 * b * L * (h - 16) * dm


def test_moh_ideal_causal_uses_gathered_rows():
    w = Workload(batch=1, seqlen_q=2048, heads_q=16, causal=True)
    ideal = run("moh", w, shared_heads=0, active_heads=4, impl="ideal")
    rows = 2048 * 4 // 16
    pairs = sum((i + 1) * 2048 // rows for i in range(rows)) * 16  # row i at position (i+1) L / rows - 1
    assert ideal.useful_flops == 4 * 128 * pairs


def test_uoe_decode_uses_the_active_heads():
    w = Workload(batch=4, seqlen_q=1, seqlen_kv=4096, heads_q=32, phase="decode")
    p = run("uoe", w, impl="ideal")
    assert p.workload.heads_q == 16
    assert p.kv_cache_bytes == 4 * 4096 * 32 * 256 * S  # every head's K/V stays cached


def test_prune_removes_heads_and_their_projections():
    b, L, h, d = 1, 2048, 32, 128
    w = Workload(batch=b, seqlen_q=L, heads_q=h)
    p = run("prune", w, "layer", pruned_heads=8)
    dm, t = h * d, b * L
    assert p.useful_flops == 4 * b * 24 * L * L * d + 2 * t * dm * 24 * 3 * d + 2 * t * 24 * d * dm
    g = run("prune", Workload(batch=b, seqlen_q=L, heads_q=h, heads_kv=8), pruned_heads=8)
    assert (g.workload.heads_q, g.workload.heads_kv) == (24, 6)


def test_shvit_single_head_on_partial_channels():
    w = Workload(batch=1, seqlen_q=3136, heads_q=1, head_dim_qk=16)
    lay = layout("shvit", w, d_model=448)
    pdim = round(448 / 4.67)
    assert (lay.core.heads_q, lay.core.head_dim_qk, lay.core.head_dim_v) == (1, 16, pdim)
    qkv = next(op for op in lay.pre if op.name == "qkv_proj")
    assert (qkv.m, qkv.n, qkv.k) == (3136, 2 * 16 + pdim, pdim)


# -- score-function variants ------------------------------------------------------------------------
def test_rcmha_adds_a_score_matmul_per_pair_and_a_convolution():
    b, L, h, d = 1, 2048, 16, 64
    w = Workload(batch=b, seqlen_q=L, heads_q=h, head_dim_qk=d, causal=True)
    p = run("rcmha", w)
    pairs = core_pairs(b, h, L, L, causal=True)
    assert p.useful_flops == 2 * (2 * d + d) * pairs  # q k^T, q R^T, P V
    assert p.kv_cache_bytes == b * L * h * 2 * d * S  # R is not cached
    lay = layout("rcmha", w.with_(phase="train"))
    conv = next(op for op in lay.pre if op.name == "qkv_dwconv")
    assert conv.fp32_ops == 3 * b * L * 3 * h * d  # kernel 3, on Q, K and V


def test_complexformer_and_gaam_score_work_enters_the_bound():
    w = Workload(batch=1, seqlen_q=1024, heads_q=8, head_dim_qk=64)
    n = 8 * 1024 * 1024
    cf = run("complexformer", w)
    assert cf.works[0].exp == n * (1 + 3) and cf.works[0].fp32 == n * 8
    assert cf.useful_flops == 2 * (2 * 64 + 64) * n
    g = run("gaam", w, gaussians=3)
    assert g.works[0].fp32 == n * (2 + 3 * 3) and g.works[0].exp == n
    tr = run("gaam", w.with_(phase="train"), gaussians=3)
    assert tr.works[0].fp32 == n * (2 + 3 * 3) * 3  # forward, and the backward at twice the forward's


# -- eager -------------------------------------------------------------------------------------------
def test_eager_bytes_grow_as_l_squared():
    for L in (1024, 2048, 4096):
        w = Workload(batch=1, seqlen_q=L, heads_q=8)
        p = predict(w, H100, "eager")
        soft = next(k for k in p.kernels if k.name == "softmax")
        assert soft.hbm_bytes == 8 * L * L * S * 2  # S read, P written (torch's softmax writes no LSE)
    big, small = (predict(Workload(seqlen_q=L, heads_q=8), H100, "eager") for L in (8192, 4096))

    def part(p, layout):  # the layout copies of Q, K, V (per token) apart from the rest (per score)
        return sum(k.hbm_bytes for k in p.kernels if k.name.endswith("_layout") == layout)
    assert 3.9 < part(big, False) / part(small, False) <= 4.0
    assert part(big, True) == 2 * part(small, True) == 2 * 3 * 2 * (8 * 4096 * 128 * S)  # read + written


def test_eager_causal_forward_launches_the_standard_attention_kernels():
    """Causal prefill as FlashAttention's benchmark `attention_pytorch` runs it (model.eager_attention):
    Q and K copied to the GEMM layout, S = QK^T written, the L x L mask built in fp32 (full, triu) and cast,
    S + mask (S and the mask read, S written: the mask re-read per (batch, head) slice, priced at HBM),
    softmax (S read, P written), V copied, O = PV. Written out by hand at b=2, h=4, L=1024, d=128, bf16."""
    b, h, L, d = 2, 4, 1024, 128
    p = predict(Workload(batch=b, heads_q=h, seqlen_q=L, head_dim_qk=d, causal=True), H100, "eager")
    assert [k.name for k in p.kernels] == ["q_layout", "k_layout", "qk_gemm", "mask_fill", "mask_triu", "mask_cast",
                                           "mask_add", "softmax", "v_layout", "pv_gemm"]
    hbm = {k.name: k.hbm_bytes for k in p.kernels}
    op, sc = b * h * L * d * S, b * h * L * L * S  # one operand (Q, K or V), the score matrix
    assert hbm["q_layout"] == hbm["k_layout"] == hbm["v_layout"] == 2 * op  # read and written once
    assert hbm["qk_gemm"] == 2 * op + sc  # Q and K in, S out
    assert (hbm["mask_fill"], hbm["mask_triu"], hbm["mask_cast"]) == (L * L * 4, 2 * L * L * 4, L * L * (4 + S))
    assert hbm["mask_add"] == 3 * sc  # S and the per-slice mask read, S written
    assert hbm["softmax"] == 2 * sc
    assert hbm["pv_gemm"] == sc + 2 * op  # P and V in, O out
    assert p.time_s >= p.bound.time_s
    dense = predict(Workload(batch=b, heads_q=h, seqlen_q=L, head_dim_qk=d), H100, "eager")
    assert "mask_add" not in [k.name for k in dense.kernels]  # no mask, no mask kernels
    assert p.hbm_bytes - dense.hbm_bytes == 3 * sc + L * L * (4 + 8 + 4 + S)


def test_eager_train_adds_autograds_backward_kernels():
    """The autograd backward of `attention_pytorch`: bmm's dP = dO V^T and dV = P^T dO, the softmax
    backward (dP and P read, dS written), baddbmm's dQ = dS K and dK = dS^T Q, each scaled by alpha
    (maybe_multiply: read and written), unbind's stack of dQ, dK, dV (read and written once)."""
    b, h, L, d = 1, 2, 2048, 64
    p = predict(Workload(batch=b, heads_q=h, seqlen_q=L, head_dim_qk=d, phase="train"), H100, "eager")
    names = [k.name for k in p.kernels]
    assert names[names.index("pv_gemm") + 1:] == ["bwd_dp_gemm", "bwd_dv_gemm", "softmax_bwd", "bwd_dq_gemm",
                                                  "bwd_dq_scale", "bwd_dk_gemm", "bwd_dk_scale", "bwd_qkv_stack"]
    hbm = {k.name: k.hbm_bytes for k in p.kernels}
    op, sc = b * h * L * d * S, b * h * L * L * S
    assert hbm["softmax_bwd"] == 3 * sc
    assert hbm["bwd_dq_scale"] == hbm["bwd_dk_scale"] == 2 * op
    assert hbm["bwd_qkv_stack"] == 2 * 3 * op
    assert hbm["bwd_dp_gemm"] == 2 * op + sc  # dO and V in, dP out
    assert hbm["bwd_dq_gemm"] == hbm["bwd_dk_gemm"] == sc + 2 * op  # dS and K (Q) in, dQ (dK) out
    assert p.time_s >= p.bound.time_s


def test_eager_decode_keeps_the_cache_in_place():
    """Decode multiplies against the KV cache where it lies: no layout copies (and no mask at one query)."""
    p = predict(Workload(batch=2, seqlen_q=1, seqlen_kv=4096, heads_q=8, phase="decode"), H100, "eager")
    assert [k.name for k in p.kernels] == ["qk_gemm", "softmax", "pv_gemm"]


def test_eager_variant_contrasts_the_fused_kernel():
    r = invoke("predict", "--variant", "eager", "--seqlen", "4096", "--json")
    assert r.exit_code == 0, r.output
    j = json.loads(r.output)
    assert j["kernel"] == "eager" and j["contrast"]["kernel"] == "fa3"
    assert j["contrast"]["eager_over_fused_memory"] > 1 and j["contrast"]["eager_over_fused_hbm"] > 1
    assert_one_line_error(invoke("predict", "--variant", "eager", "--kernel", "fa3"), "eager kernel")


# -- train, memory, the layer scope --------------------------------------------------------------------
@pytest.mark.parametrize("name,given", [("sqa", {}), ("ccgqa", {}), ("mla", {}), ("rcmha", {})])
def test_train_core_is_forward_plus_a_recomputing_backward(name, given):
    w = Workload(batch=1, seqlen_q=1024, heads_q=32, heads_kv=8 if name == "ccgqa" else None, causal=True)
    fwd, tr = run(name, w, **given), run(name, w.with_(phase="train"), **given)
    c = fwd.workload
    m = c.qk_matmuls
    per_pair_fwd, per_pair_bwd = 2 * (m * c.head_dim_qk + c.head_dim_v), 2 * (3 * m * c.head_dim_qk + 2 * c.head_dim_v)
    assert tr.useful_flops * per_pair_fwd == fwd.useful_flops * (per_pair_fwd + per_pair_bwd)
    if c.head_dim_qk == c.head_dim_v and m == 1:
        assert tr.useful_flops == 3.5 * fwd.useful_flops
    assert any("recomputes S" in n for n in tr.notes)


def test_layer_train_activation_memory_by_hand():
    b, L, h, d = 2, 1024, 16, 64
    dm, t = h * d, b * L
    w = Workload(batch=b, seqlen_q=L, heads_q=h, head_dim_qk=d, phase="train")
    p = predict(w, H100, scope="layer", rope_dim=d)
    core = t * h * 2 * d * S + t * h * 2 * d * S + t * h * 4  # Q and O, K and V, the LSE
    layer = t * dm * S + t * h * d * S  # x (qkv_proj's input), attn_out (o_proj's input); RoPE saves nothing
    assert p.activation_bytes == core + layer
    assert predict(w, H100).activation_bytes == core


def test_layer_fit_verdict():
    w = Workload(batch=64, seqlen_q=32768, heads_q=64, phase="train")
    assert not predict(w, H100, scope="layer").fits


# -- the CLI -------------------------------------------------------------------------------------------
def test_variants_lists_the_new_families_with_papers():
    out = invoke("variants").output
    for name, paper in (("sqa", "2510.01817"), ("mla", "DeepSeek-V2"), ("cca", "2510.04476"), ("moh", "2410.11842"),
                        ("shvit", "SHViT"), ("rcmha", "2308.03429"), ("complexformer", "2505.10222"),
                        ("gaam", "2401.11143"), ("eager", "FlashAttention"), ("kvcompress", "KV Heads")):
        assert f"\n{name}" in "\n" + out and paper in out, name


def test_mla_params_win_over_head_dim_and_are_echoed():
    r = invoke("predict", "--variant", "mla", "--head-dim", "64", "--heads", "16", "--scope", "layer", "--json")
    assert r.exit_code == 0, r.output
    j = json.loads(r.output)
    assert j["workload"]["head_dim_qk"] == 192 and j["layout"]["kv_lora_rank"] == 512
    assert any("--head-dim 64 not used" in n for n in j["notes"])


@pytest.mark.parametrize("args,needle", [
    (["--variant", "cca", "-p", "compression=3"], "divisor"),
    (["--variant", "prune", "-p", "pruned_heads=32"], "at least one"),
    (["--variant", "prune"], "pruned_heads"),
    (["--variant", "mla", "-p", "absorb=maybe"], "allowed: auto, true, false"),
    (["--variant", "mla", "--phase", "train", "-p", "absorb=true"], "inference form"),
    (["--variant", "sqa", "--kv-heads", "8"], "-p kv_heads"),
    (["--variant", "sqa", "-p", "query_heads=64"], "exceeds"),
    (["--variant", "sqa", "-p", "kv_heads=3"], "divisor"),
    (["--variant", "kvcompress", "--kv-heads", "32"], "below --heads"),
    (["--variant", "moh", "-p", "shared_heads=30", "-p", "active_heads=8"], "must be 1..32"),
    (["--variant", "shvit", "-p", "partial_ratio=2"], "fraction"),
    (["--variant", "mha", "--scope", "layer", "--rope-dim", "7"], "even"),
    (["--variant", "mha", "--rope-dim", "64"], "--scope layer"),
    (["--variant", "rcmha", "--scope", "layer", "--rope-dim", "64"], "no RoPE"),
    (["--variant", "mla", "--scope", "layer", "--rope-dim", "64"], "qk_rope_head_dim"),
    (["--variant", "gaam", "-p", "gaussians=0"], "positive"),
    (["--variant", "sqa", "--heads", "6"], "divisible by 4"),
    (["--variant", "ssqa", "--heads", "1"], "divisible by 2"),
    (["--variant", "kvcompress", "-p", "rank=100000", "--scope", "layer"], "full rank 1024"),
    (["--variant", "cca", "--kv-heads", "8"], "ccgqa"),
    (["--variant", "mla", "--phase", "decode", "--seqlen-kv", "0"], "positive"),
    (["--variant", "sqa", "--phase", "train", "--dtype", "fp8"], "no fp8 backward"),  # no silent switch to eager
])
def test_bad_layout_parameters_exit_2_with_one_line(args, needle):
    assert_one_line_error(invoke("predict", *args), needle)


def test_every_new_variant_runs_in_every_phase_and_scope():
    for name in ("sqa", "ssqa", "xsqa", "mla", "cca", "ccgqa", "moh", "uoe", "rcmha", "complexformer", "gaam",
                 "eager", "shvit"):
        for phase in ("prefill", "decode", "train"):
            for scope in ("attention", "layer"):
                r = invoke("predict", "--variant", name, "--seqlen", "1024", "--heads", "16", "--phase", phase,
                           "--scope", scope, "--json", *(["--d-model", "448"] if name == "shvit" else []))
                assert r.exit_code == 0, (name, phase, scope, r.output)
                case = (name, phase, scope)

                def no_constant(c, case=case):  # NaN, Infinity, -Infinity are not JSON
                    raise AssertionError(f"{case}: {c} in the JSON")
                j = json.loads(r.output, parse_constant=no_constant)

                def finite(x, path="", case=case):
                    if isinstance(x, dict):
                        for key, v in x.items():
                            finite(v, f"{path}.{key}")
                    elif isinstance(x, list):
                        for i, v in enumerate(x):
                            finite(v, f"{path}[{i}]")
                    elif isinstance(x, float):
                        assert np.isfinite(x), (case, path, x)
                finite(j)
                counts = [j[k] for k in ("flops", "useful_flops", "hbm_bytes", "kv_cache_bytes", "memory_bytes",
                                         "tiles_iterated")] + list(j["tiles"].values())
                for kr in j["kernels"]:
                    counts += [kr[k] for k in ("flops", "useful_flops", "hbm_bytes", "l2_bytes", "ctas", "ctas_per_sm")]
                    counts += list((kr.get("tiles") or {}).values())
                    assert kr["time_s"] > 0 and kr["flops"] >= kr["useful_flops"], (case, kr["name"])
                assert all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts), (case, counts)
                assert j["time_s"] >= j["bound_s"] > 0, case
                assert j["useful_flops"] > 0, case
                assert j["flops"] >= j["useful_flops"], case
                assert j["memory_bytes"] >= j["kv_cache_bytes"] > 0, case
                assert j["hbm_bytes"] > 0 and j["bound"] in j["unit_times_s"], case


def test_mla_absorbed_decode_packs_heads_and_falls_back_where_fa4_has_no_latent_kernel():
    r = invoke("predict", "--variant", "mla", "--heads", "128", "--phase", "decode", "--seqlen-kv", "4096",
               "--batch", "8", "--hw", "b200", "--json")
    assert r.exit_code == 0, r.output
    j = json.loads(r.output)
    assert j["kernel"] == "triton" and any("512-wide latent cache" in n for n in j["notes"])
    assert j["flops"] == j["useful_flops"] == 2 * (576 + 512) * 8 * 128 * 4096  # 16 heads per 16-row tile: no padding
    assert_one_line_error(invoke("predict", "--variant", "mla", "--phase", "decode", "--hw", "b200", "--kernel", "fa4"),
                          "latent", "--kernel")


def test_extra_score_operands_read_from_hbm_as_their_paper_defines():
    """Decode, per step: ComplexFormer's imaginary part reuses the K tile (no extra bytes); RCMHA's R is one
    table for the batch (H x ctx x d once, whatever the batch); GAAM's statistics pass reads K again."""
    for b in (1, 16):
        w = Workload(batch=b, seqlen_q=1, seqlen_kv=8192, heads_q=16, head_dim_qk=64, phase="decode")
        base = predict(w, H100).kernels[0].hbm_bytes
        cf = run("complexformer", w).kernels[0].hbm_bytes
        rc = run("rcmha", w).kernels[0].hbm_bytes
        ga = run("gaam", w).kernels[0].hbm_bytes
        assert cf == base
        assert rc - base == 16 * 8192 * 64 * S
        assert ga - base == b * 16 * 8192 * 64 * S


def test_mla_eager_decode_folds_heads_and_reads_the_latent_once_per_sequence():
    w = Workload(batch=2, seqlen_q=1, seqlen_kv=16384, heads_q=128, phase="decode")
    p = run("mla", w, kernel="eager")
    qk = next(k for k in p.kernels if k.name == "qk_gemm")
    assert qk.useful_flops == 2 * 576 * 2 * 128 * 16384
    cache = 2 * 16384 * 576 * S
    assert cache <= qk.hbm_bytes < cache + 2 * 128 * 16384 * S + 2 * 128 * 576 * S + 1  # K once, Q, S out
