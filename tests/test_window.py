"""Sliding-window masks (variant swa): analytic tiles, live pairs and keys against brute force;
the model and the CLI on top of them."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from attnsim.cli import cli
from tile_oracle import full_nonempty

from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.masks import CausalMask, DenseMask, WindowMask, tile_cols, tile_rows, window_mask
from attnsim.simulator.model import predict
from attnsim.simulator.workload import Workload

WINDOWS = [(0, 0), (3, 0), (0, 5), (7, 2), (-1, 3), (4, -1), (1, 1), (20, 0), (0, 20), (-1, 0), (100, 100)]
SIZES = [(1, 1), (3, 16), (7, 5), (16, 16), (29, 47), (40, 5), (33, 33)]
TILES = [(4, 4), (8, 16), (7, 5), (16, 8)]


def boxes(live, bm, bn, lq, lk):
    """(live, full, non-empty) of the padded live matrix cut into bm x bn tiles (tests/tile_oracle.py's rule)."""
    return (live, *full_nonempty(live, lq, lk, bm, bn))


def oracle_local(left, right, sink, chunk, lq, lk, bm, bn):
    """FlashAttention's construct_local_mask with sink_token_length (a query keeps key j when
    j <= i' + right and (j >= i' - left or j < sink)) and its chunk mask (same chunk of i'), written out."""
    live = np.zeros((-(-lq // bm) * bm, -(-lk // bn) * bn), dtype=bool)
    for i in range(lq):
        for j in range(lk):
            c = i + lk - lq
            ok = (right < 0 or j <= c + right) and ((left < 0 or j >= c - left) or j < sink)
            live[i, j] = ok and (not chunk or j // chunk == c // chunk)
    return boxes(live, bm, bn, lq, lk)


def assert_matches_oracle(m, left, right, sink=0, chunk=0):
    for lq, lk in SIZES:
        for bm, bn in TILES:
            assert_case(m, lq, lk, bm, bn, *oracle_local(left, right, sink, chunk, lq, lk, bm, bn))


def assert_case(m, lq, lk, bm, bn, live, full, nonempty):
    """The mask's live pairs, live keys, row and column tiles and predicate equal the oracle's."""
    assert m.live_pairs(lq, lk) == live.sum()
    assert m.live_keys(lq, lk) == live.any(axis=0).sum()
    f, p = tile_rows(m, lq, lk, bm, bn)
    assert f.tolist() == full.sum(1).tolist() and (f + p).tolist() == nonempty.sum(1).tolist()
    f, p = tile_cols(m, lq, lk, bm, bn)
    assert f.tolist() == full.sum(0).tolist() and (f + p).tolist() == nonempty.sum(0).tolist()
    q, k = np.meshgrid(np.arange(lq), np.arange(lk), indexing="ij")
    assert (m.mask_mod(q, k, lq, lk) == live[:lq, :lk]).all()


@pytest.mark.parametrize("left,right", WINDOWS)
def test_window_tiles_pairs_and_keys_match_brute_force(left, right):
    assert_matches_oracle(WindowMask(left, right), left, right)


def test_window_mask_of_flash_attention_arguments():
    assert isinstance(window_mask((-1, -1), False), DenseMask)
    assert isinstance(window_mask((-1, -1), True), CausalMask)
    m = window_mask((128, 64), True)  # causal caps the right side at 0
    assert (m.left, m.right) == (128, 0)
    # an unbounded left with right 0 is the causal mask: same tiles
    w = WindowMask(-1, 0)
    for lq, lk in SIZES:
        assert w.live_pairs(lq, lk) == CausalMask().live_pairs(lq, lk)
        assert [x.tolist() for x in tile_rows(w, lq, lk, 8, 16)] == [x.tolist() for x in tile_rows(CausalMask(), lq, lk, 8, 16)]


def test_window_wider_than_the_sequence_is_dense_or_causal_in_the_model():
    hw = load_hardware("h100")
    for causal in (False, True):
        w = Workload(batch=2, seqlen_q=3000, heads_q=8, head_dim_qk=128, causal=causal, phase="train")
        wide = predict(w, hw, "fa2", mask=window_mask((5000, 5000), causal))
        plain = predict(w, hw, "fa2")
        assert wide.flops == plain.flops and wide.useful_flops == plain.useful_flops
        assert wide.tiles == plain.tiles and wide.hbm_bytes == plain.hbm_bytes


def test_window_prefill_flops_by_hand_and_monotone_in_the_window():
    hw = load_hardware("h100")
    L, W, d = 8192, 1024, 128
    w = Workload(batch=1, seqlen_q=L, heads_q=4, head_dim_qk=d)
    p = predict(w, hw, mask=window_mask((W, 0), False))
    # rows 0..W-1 see i+1 keys, rows W..L-1 see W+1 keys
    pairs = W * (W + 1) // 2 + (L - W) * (W + 1)
    assert p.useful_flops == 4 * d * pairs * 4
    times = [predict(w, hw, mask=window_mask((x, 0), False)).time_s for x in (256, 1024, 4096, 8191)]
    assert times == sorted(times)
    assert p.time_s >= p.bound.time_s


def test_window_decode_reads_the_window_not_the_cache():
    hw = load_hardware("h100")
    w = Workload(batch=8, seqlen_q=1, seqlen_kv=100_000, heads_q=32, heads_kv=8, head_dim_qk=128, phase="decode")
    p = predict(w, hw, mask=window_mask((4096, 0), False))
    window_bytes = 8 * 8 * 4097 * 256 * 2  # the query at position 99,999 sees keys 95,903 .. 99,999
    assert p.kv_cache_bytes == 8 * 8 * 100_000 * 256 * 2
    assert window_bytes <= p.hbm_bytes < 1.2 * window_bytes
    assert p.bound.unit == "hbm" and p.bound.time_s >= window_bytes / 3.35e12


def test_cli_swa():
    r = CliRunner().invoke(cli, ["predict", "--variant", "swa", "-p", "window_size=1024,0", "--seqlen", "8192",
                                 "--json"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    assert j["mask"] == "swa_l1024_r0" and j["params"]["window_size"] == [1024, 0]
    assert j["workload"]["heads_kv"] == j["workload"]["heads_q"]  # no GQA default for swa
    r = CliRunner().invoke(cli, ["predict", "--variant", "swa", "-p", "window_size=512", "--causal", "--json"])
    assert json.loads(r.stdout)["mask"] == "swa_l512_r0"
    for bad in ("window_size=a,b", "window_size=1,2,3", "window_size=-2,4", "window=4"):
        r = CliRunner().invoke(cli, ["predict", "--variant", "swa", "-p", bad])
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, (bad, r.output)


@pytest.mark.parametrize("left,right", [(0, 0), (3, 0), (0, 5), (7, 2), (-1, 3), (4, -1), (-1, 0), (20, 0), (2, 2)])
@pytest.mark.parametrize("sink,chunk", [(1, 0), (4, 0), (9, 0), (0, 4), (0, 7), (0, 16)])
def test_sink_and_chunk_tiles_pairs_and_keys_match_brute_force(left, right, sink, chunk):
    assert_matches_oracle(window_mask((left, right), False, sink, chunk), left, right, sink, chunk)


def test_chunked_causal_is_a_quarter_of_causal_for_four_chunks():
    # 4 chunks of 1024, causal inside each: 4 * 1024 * 1025 / 2 live pairs
    m = window_mask((-1, 0), False, chunk=1024)
    assert m.live_pairs(4096, 4096) == 4 * 1024 * 1025 // 2


def test_cli_sink_and_chunk():
    ok = CliRunner().invoke(cli, ["predict", "--variant", "swa", "-p", "window_size=1024,0", "-p", "sink=4",
                                  "--seqlen", "8192", "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["mask"] == "swa_l1024_r0_sink4"
    for bad in (["-p", "sink=4", "-p", "attention_chunk=8"], ["-p", "sink=-1"], ["-p", "attention_chunk=x"]):
        r = CliRunner().invoke(cli, ["predict", "--variant", "swa", *bad])
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, (bad, r.output)


# -- segments (block-diagonal) -------------------------------------------------------------------------
def oracle_segments(sizes, left, right, lq, bm, bn):
    """A query at position i' = i + L - lq sees key j when both lie in the same segment (and in the window)."""
    L = sum(sizes)
    seg = np.repeat(np.arange(len(sizes)), sizes)
    live = np.zeros((-(-lq // bm) * bm, -(-L // bn) * bn), dtype=bool)
    for i in range(lq):
        c = i + L - lq
        for j in range(L):
            live[i, j] = (0 <= c < L and seg[j] == seg[c] and (right < 0 or j <= c + right)
                          and (left < 0 or j >= c - left))
    return boxes(live, bm, bn, lq, L)


def test_segment_tiles_pairs_and_keys_match_brute_force():
    from attnsim.simulator.masks import SegmentMask
    rng = np.random.default_rng(3)
    for _ in range(150):
        sizes = tuple(int(x) for x in rng.integers(1, 15, int(rng.integers(1, 6))))
        L = sum(sizes)
        lq = int(rng.choice([L, max(1, L - 3), L + 2]))
        left, right = [(-1, -1), (-1, 0), (3, 0), (2, 2), (0, 4)][int(rng.integers(0, 5))]
        bm, bn = int(rng.choice([2, 3, 4, 8])), int(rng.choice([2, 3, 5, 8]))
        assert_case(SegmentMask(sizes, left, right), lq, L, bm, bn, *oracle_segments(sizes, left, right, lq, bm, bn))


def test_cli_segment():
    r = CliRunner().invoke(cli, ["predict", "--variant", "segment", "-p", "segments=1000,3096", "--causal", "--json"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    pairs = 1000 * 1001 // 2 + 3096 * 3097 // 2
    assert j["useful_flops"] == 4 * 128 * 32 * pairs
    for bad, needle in ((["-p", "segments=100,200"], "sum to 300"), ([], "segments=a,b,c"), (["-p", "segments=0"], "positive")):
        r = CliRunner().invoke(cli, ["predict", "--variant", "segment", *bad])
        assert r.exit_code == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, (bad, r.output)


# -- mixture of block attention (MoBA) -----------------------------------------------------------------
def oracle_moba(block, k, causal, lq, lk, bm, bn):
    """The representative top-k choice: the k most recent blocks (causal: own block causally) or the
    k nearest (clamped at the ends), written out per query."""
    nb = -(-lk // block)
    live = np.zeros((-(-lq // bm) * bm, -(-lk // bn) * bn), dtype=bool)
    for i in range(lq):
        c = i + lk - lq
        if c < 0:
            continue
        b = c // block
        first = max(b - k + 1, 0) if causal else min(max(b - (k - 1) // 2, 0), max(nb - k, 0))
        for j in range(lk):
            live[i, j] = first <= j // block < first + k and (not causal or j <= c)
    return boxes(live, bm, bn, lq, lk)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("block,k", [(4, 1), (4, 2), (8, 3), (2, 4), (5, 2), (16, 2)])
def test_moba_tiles_pairs_and_keys_match_brute_force(causal, block, k):
    from attnsim.simulator.masks import BlockSelectMask
    m = BlockSelectMask(block, k, causal)
    for lq, lk in SIZES + [(64, 64)]:
        for bm, bn in TILES:
            assert_case(m, lq, lk, bm, bn, *oracle_moba(block, k, causal, lq, lk, bm, bn))


def test_moba_model_prices_the_gate():
    from attnsim.simulator.masks import BlockSelectMask
    hw = load_hardware("h100")
    L, d, h, B, k = 16384, 128, 8, 2048, 3
    p = predict(Workload(seqlen_q=L, heads_q=h, head_dim_qk=d, causal=True), hw, mask=BlockSelectMask(B, k, True))
    names = [x.name for x in p.kernels]
    assert names[:3] == ["moba_pool", "moba_gate_gemm", "moba_topk"] and names[3] == "attn_fwd"
    nb = L // B
    gate = 2 * L * nb * d * h  # every query against every block mean
    own = nb * (B * (B + 1) // 2)  # own block, causal
    past = sum(min(k - 1, b) for b in range(nb)) * B * B  # k - 1 earlier whole blocks
    assert p.useful_flops == 4 * d * h * (own + past) + gate
    assert p.kernels[3].tile.startswith("128x128")  # fa3's 128 x 176 runs as tiles that divide the block
    assert p.time_s >= p.bound.time_s
    decode = predict(Workload(seqlen_q=1, seqlen_kv=100_000, heads_q=h, head_dim_qk=d, causal=True, phase="decode"),
                     hw, mask=BlockSelectMask(B, k, True))
    assert decode.kernels[0].hbm_bytes < 2 * B * h * d * 2 + h * 49 * d * 2  # pools only the newest block


def test_cli_moba():
    r = CliRunner().invoke(cli, ["predict", "--variant", "moba", "--causal", "--seqlen", "8192",
                                 "-p", "block_size=1024", "-p", "top_k=2", "--json"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    assert j["mask"] == "moba_b1024_k2_causal" and j["speedup"]["useful_flops"] > 1
    for bad in (["-p", "top_k=0"], ["-p", "block_size=x"], ["-p", "topk=2"]):
        r = CliRunner().invoke(cli, ["predict", "--variant", "moba", *bad])
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, (bad, r.output)


# -- data-dependent sparsity: the occupancy model ----------------------------------------------------
def sample_occupancy(m, lq, lk, bm, bn, rng):
    """One random mask of the occupancy model's own generative story: per query, its runs start
    uniformly in [0, allowed - run length]."""
    live = np.zeros((-(-lq // bm) * bm, -(-lk // bn) * bn), dtype=bool)
    for i in range(lq):
        a = int(m._allowed(np.array([i]), lq, lk)[0])
        if a == 0:
            continue
        c, r = (int(x[0]) for x in m._run(np.array([a])))
        for _ in range(c):
            start = rng.integers(0, max(a - r + 1, 1))
            live[i, start:min(start + r, a)] = True
    return boxes(live, bm, bn, lq, lk)


@pytest.mark.parametrize("density,clusters,causal", [(0.02, 1, False), (0.01, 4, False), (0.3, 2, True),
                                                     (0.02, 1, True), (0.9, 1, False), (0.2, 1, True)])
def test_occupancy_model_matches_monte_carlo(density, clusters, causal):
    from attnsim.simulator.masks import OccupancyMask
    m = OccupancyMask(density, clusters, causal)
    lq = lk = 512
    rng = np.random.default_rng(0)
    samples = [sample_occupancy(m, lq, lk, 16, 32, rng) for _ in range(20)]
    f, p = m.tile_rows(lq, lk, 16, 32)
    want_full = np.mean([s[1].sum() for s in samples])
    want_ne = np.mean([s[2].sum() for s in samples])
    assert f.sum() == pytest.approx(want_full, abs=2, rel=0.01)
    assert (f + p).sum() == pytest.approx(want_ne, abs=2, rel=0.01)
    fc, pc = m.tile_cols(lq, lk, 16, 32)
    assert fc.sum() == f.sum() and (fc + pc).sum() == (f + p).sum()
    live_pairs = np.mean([s[0].sum() for s in samples])
    assert m.live_pairs(lq, lk) >= live_pairs  # runs may overlap in a sample; the model counts c x r


def test_unstructured_sparsity_rarely_pays_on_tiles():
    """5% density scattered at random keeps almost every tile live: executed FLOPs barely drop."""
    hw = load_hardware("h100")
    from attnsim.simulator.masks import OccupancyMask
    p = predict(Workload(seqlen_q=8192, heads_q=8, head_dim_qk=128), hw, mask=OccupancyMask(0.05, 1), compare=True)
    assert p.speedup["useful_flops"] == pytest.approx(20, rel=0.01)
    assert p.speedup["live_tiles"] < 1.2 and p.flops > 10 * p.useful_flops
    assert any("occupancy model" in n for n in p.notes)


def test_cli_sparse_topk_dma():
    for args in (["--variant", "sparse", "-p", "density=0.05"], ["--variant", "topk", "-p", "top_k=128", "--causal"],
                 ["--variant", "dma", "-p", "top_k=512", "-p", "predictor_flops_per_query=1e6", "--causal"]):
        r = CliRunner().invoke(cli, ["predict", "--seqlen", "8192", *args, "--json"])
        assert r.exit_code == 0, (args, r.output)
        j = json.loads(r.stdout)
        assert j["time_s"] >= j["bound_s"] and any("occupancy model" in n for n in j["notes"])
    names = [k["name"] for k in json.loads(CliRunner().invoke(
        cli, ["predict", "--variant", "topk", "--seqlen", "4096", "--json"]).stdout)["kernels"]]
    assert names[:2] == ["select_scores_gemm", "select_topk"]
    for bad in (["--variant", "sparse", "-p", "density=0"], ["--variant", "sparse", "-p", "density=2"],
                ["--variant", "topk", "-p", "top_k=0"], ["--variant", "sparse", "-p", "select=maybe"]):
        r = CliRunner().invoke(cli, ["predict", *bad])
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, (bad, r.output)


def test_decode_split_is_sized_from_the_window():
    """FA3 sizes its split from the keys it loads (min(seqlen_k, window + kBlockM)): a 192-key window
    over an 8k context is not split, and costs what dense decode over 192 keys costs."""
    hw = load_hardware("h100")
    w = Workload(seqlen_q=1, seqlen_kv=8192, heads_q=32, head_dim_qk=128, phase="decode")
    win = predict(w, hw, "fa3", mask=window_mask((191, 0), False))
    dense = predict(w.with_(seqlen_kv=192), hw, "fa3")
    assert [k.name for k in win.kernels] == ["attn_decode"]
    assert win.time_s == pytest.approx(dense.time_s, rel=0.01)


# -- mixture of attention spans (MoA): a window per head group ----------------------------------------
def test_moa_is_the_sum_of_its_head_groups():
    from attnsim.simulator.masks import ElasticWindowMask, HeadMixMask
    hw = load_hardware("h100")
    w = Workload(seqlen_q=8192, heads_q=8, head_dim_qk=128, causal=True, phase="train")
    moa = predict(w, hw, "fa3", mask=HeadMixMask([ElasticWindowMask(512), ElasticWindowMask(2048)]))
    parts = [predict(w.with_(heads_q=4, heads_kv=4), hw, "fa3", mask=window_mask((a, 0), False)) for a in (512, 2048)]
    assert moa.useful_flops == sum(p.useful_flops for p in parts)
    assert moa.flops == sum(p.flops for p in parts)
    assert moa.tiles == {k: sum(p.tiles[k] for p in parts) for k in moa.tiles}
    pairs = sum(4 * sum(min(i + 1, a + 1) for i in range(8192)) for a in (512, 2048))
    assert moa.useful_flops == 14 * 128 * pairs
    assert moa.time_s >= moa.bound.time_s


def test_moa_elastic_span_scales_with_the_length():
    from attnsim.simulator.masks import ElasticWindowMask
    m = ElasticWindowMask(100, 0.25)
    assert m._bounds(4000, 4000) == (1100, 0) and m._bounds(8000, 8000) == (2100, 0)
    assert m.live_pairs(4000, 4000) == sum(min(i + 1, 1101) for i in range(4000))


def test_cli_moa():
    r = CliRunner().invoke(cli, ["predict", "--variant", "moa", "--causal", "--seqlen", "8192", "--heads", "8",
                                 "-p", "spans=256,1024", "-p", "betas=0,0.1", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["mask"] == "moa_256_1024+0.1N"
    for bad, needle in ((["-p", "spans=100,200,300"], "do not divide"), (["-p", "betas=0.1,0.2"], "one each"),
                        (["-p", "betas=2"], "fractions")):
        r = CliRunner().invoke(cli, ["predict", "--variant", "moa", "--heads", "32", *bad])
        assert r.exit_code == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, (bad, r.output)


def test_moba_threshold_density_keeps_that_fraction_of_blocks():
    from attnsim.simulator.masks import BlockSelectMask
    m = BlockSelectMask(1024, causal=False, density=0.25)  # 16 blocks over 16k keys: 4 kept
    assert m.live_pairs(16384, 16384) == 16384 * 4 * 1024
    assert m.name == "moba_b1024_d0.25"


def test_vmoba_is_moba_over_box_major_tokens_plus_the_permutation():
    from attnsim.simulator.masks import BlockSelectMask, BoxBlockSelectMask
    hw = load_hardware("h100")
    w = Workload(seqlen_q=16 * 32 * 32, heads_q=8, head_dim_qk=128)
    v = predict(w, hw, "fa3", mask=BoxBlockSelectMask((16, 32, 32), (4, 16, 16), top_k=3))
    m = predict(w, hw, "fa3", mask=BlockSelectMask(4 * 16 * 16, top_k=3, causal=False))
    fwd = lambda p: next(k for k in p.kernels if k.name == "attn_fwd")  # noqa: E731
    assert fwd(v).time_s == fwd(m).time_s and v.useful_flops == m.useful_flops and v.tiles == m.tiles
    assert [k.name for k in v.kernels][:2] == ["token_permute", "token_unpermute"]
    assert v.time_s > m.time_s


def test_cli_vmoba():
    r = CliRunner().invoke(cli, ["predict", "--variant", "vmoba", "--token-shape", "16x32x32", "-p", "block=4x16x16",
                                 "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["mask"].startswith("vmoba_4x16x16")
    for bad, needle in ((["--token-shape", "8x8"], "-p block"), (["--token-shape", "8x8", "-p", "block=2x2x2"], "dimensions"),
                        (["--token-shape", "8x8", "-p", "block=4x4", "--seqlen", "100"], "differs")):
        r = CliRunner().invoke(cli, ["predict", "--variant", "vmoba", *bad])
        assert r.exit_code == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, (bad, r.output)


# -- duplex: within segments, then across ----------------------------------------------------------------
def oracle_complement(sizes, causal, bm, bn):
    L = sum(sizes)
    seg = np.repeat(np.arange(len(sizes)), sizes)
    live = np.zeros((-(-L // bm) * bm, -(-L // bn) * bn), dtype=bool)
    for i in range(L):
        for j in range(L):
            live[i, j] = seg[i] != seg[j] and (not causal or j < i)
    return boxes(live, bm, bn, L, L)


def test_segment_complement_matches_brute_force():
    from attnsim.simulator.masks import SegmentComplementMask
    rng = np.random.default_rng(5)
    for _ in range(150):
        sizes = tuple(int(x) for x in rng.integers(1, 15, int(rng.integers(1, 6))))
        causal = bool(rng.integers(0, 2))
        bm, bn = int(rng.choice([2, 3, 4, 8])), int(rng.choice([2, 3, 5, 8]))
        L = sum(sizes)
        assert_case(SegmentComplementMask(sizes, causal), L, L, bm, bn, *oracle_complement(sizes, causal, bm, bn))


def test_duplex_is_both_passes_and_a_merge():
    from attnsim.simulator.masks import DuplexMask, SegmentComplementMask, SegmentMask
    hw = load_hardware("h100")
    sizes = (1024, 1024, 2048)
    w = Workload(seqlen_q=4096, heads_q=8, head_dim_qk=128)
    d = predict(w, hw, "fa3", mask=DuplexMask(sizes), compare=True)
    within, across = predict(w, hw, "fa3", mask=SegmentMask(sizes)), predict(w, hw, "fa3", mask=SegmentComplementMask(sizes))
    assert d.useful_flops == within.useful_flops + across.useful_flops == 4 * 128 * 8 * 4096 ** 2  # together: dense
    merge = d.kernels[-1]
    assert merge.name == "merge_passes" and d.time_s == pytest.approx(within.time_s + across.time_s + merge.time_s)
    assert d.bound.time_s <= within.bound.time_s + across.bound.time_s and d.time_s >= d.bound.time_s
    assert d.speedup["useful_flops"] == pytest.approx(1.0)


def test_cli_duplex():
    r = CliRunner().invoke(cli, ["predict", "--variant", "duplex", "-p", "segments=1024,3072", "--causal", "--json"])
    assert r.exit_code == 0, r.output
    assert [k["name"] for k in json.loads(r.stdout)["kernels"]] == ["attn_fwd", "attn_fwd", "merge_passes"]
    for bad, needle in (([], "segments"), (["-p", "segments=10,20"], "sum to 30"), (["--scope", "layer", "-p",
                                                                                    "segments=4096"], "scope")):
        r = CliRunner().invoke(cli, ["predict", "--variant", "duplex", *bad])
        assert r.exit_code == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, (bad, r.output)


def test_hierarchical_groups_are_a_level_per_head_group():
    hw = load_hardware("h100")
    w = Workload(seqlen_q=4096, heads_q=4, heads_kv=4, head_dim_qk=64)
    from attnsim.simulator.masks import HeadMixMask
    hier = predict(w, hw, "fa2", mask=HeadMixMask([window_mask((-1, -1), False, chunk=n) for n in (256, 1024)]))
    pairs = 2 * 4096 * 256 + 2 * 4096 * 1024  # two heads per level, each query sees its whole group
    assert hier.useful_flops == 4 * 64 * pairs
    r = CliRunner().invoke(cli, ["predict", "--variant", "segment", "-p", "levels=256,1024", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["mask"] == "hier_256_1024"
    r = CliRunner().invoke(cli, ["predict", "--variant", "segment", "-p", "levels=256", "-p", "segments=4096"])
    assert r.exit_code == 2 and "not both" in r.stderr
