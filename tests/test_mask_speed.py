"""Issue 9: the occupancy model (sparse / topk / dma) and block selection (moba / vmoba) are counted
per class of rows or in closed form, never as (query tile x kv tile) tables nor row by row over the
whole sequence. Every closed form is checked here against the per-row computation it replaced (the
dense tables, written out below as they were) and against brute force over the mask, on random
lengths, blocks, top_k, densities and causality (hypothesis); the largest sizes answer; a causal
occupancy grid too costly to evaluate is refused with the length that fits. Timing is measured by
benchmarks/bench_mask_speed.py, never asserted here."""
import re

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnsim.cli import cli
from attnsim.simulator.errors import AttnsimError
from attnsim.simulator.masks import BlockSelectMask, BoxBlockSelectMask, LocalMask, OccupancyMask
from tile_oracle import full_nonempty

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_TOKENS = 1 << 24


# -- the per-row computation the occupancy model's sums replace ---------------------------------------
def dense_probabilities(m, rows, lq, lk, bn):
    """(P touch, P cover) of each row at each kv tile: (rows x kv tiles) arrays."""
    a = m._allowed(rows, lq, lk)[:, None].astype(float)
    c, r = m._run(a)
    t = np.arange(-(-lk // bn))[None, :]
    t0, t1 = t * bn, np.minimum((t + 1) * bn, a) - 1
    last = np.maximum(a - r, 0)
    starts = last + 1
    n_touch = np.clip(np.minimum(t1, last) - np.maximum(t0 - r + 1, 0) + 1, 0, None)
    n_cover = np.clip(np.minimum(t0, last) - np.maximum(t1 - r + 1, 0) + 1, 0, None)
    touch = np.where(t1 >= t0, 1 - (1 - n_touch / starts) ** c, 0.0)
    cover = np.where(t1 - t0 + 1 == bn, 1 - (1 - n_cover / starts) ** c, 0.0)
    return touch, cover


def dense_expected(m, lo, hi, complete, lq, lk, bn, bm, exact):
    """(P full, P non-empty) of every (range, kv tile): exactly over every row, or at middle rows."""
    lo, hi = np.asarray(lo), np.asarray(hi)
    n_kv = -(-lk // bn)
    if exact:
        rows = np.concatenate([np.arange(a, b + 1) for a, b in zip(lo, hi)])
        touch, cover = dense_probabilities(m, rows, lq, lk, bn)
        idx = np.repeat(np.arange(len(lo)), hi - lo + 1)
        with np.errstate(divide="ignore"):
            log_miss = np.zeros((len(lo), n_kv))
            np.add.at(log_miss, idx, np.log1p(-np.minimum(touch, 1 - 1e-300)))
            log_cov = np.zeros((len(lo), n_kv))
            np.add.at(log_cov, idx, np.log(np.maximum(cover, 1e-300)))
        nonempty = 1 - np.exp(log_miss)
        full = np.where(np.asarray(complete)[:, None] & (cover.max(initial=0) > 0), np.exp(log_cov), 0.0)
        return np.where(full < 1e-200, 0.0, full), nonempty
    touch, cover = dense_probabilities(m, (lo + hi) // 2, lq, lk, bn)
    nrows = (hi - lo + 1)[:, None]
    return np.where(np.asarray(complete)[:, None], cover ** nrows, 0.0), 1 - (1 - touch) ** nrows


def dense_live_pairs(m, lq, lk):
    a = m._allowed(np.arange(lq), lq, lk)
    c, r = m._run(a)
    return int(np.minimum(c * r, a).sum())


def dense_live_keys(m, lq, lk):
    """(the count, its unrounded float sum)."""
    a = m._allowed(np.arange(lq), lq, lk)
    c, r = m._run(a)
    frac = float(np.median(np.minimum(c * r, a) / np.maximum(a, 1)))
    seen_by = np.minimum(np.arange(lk, 0, -1) if m.is_causal else np.full(lk, lq), lq)
    x = float((1 - (1 - frac) ** seen_by).sum())
    return int(round(x)), x


def assert_grid_alike(f, p, full, ne):
    """(full, partial) tile counts against the reference expectations, rounded as the model rounds
    them (running sums): equal, unless a reference running sum sits on a rounding tie (x.5 to 1e-6),
    where two computations of the same expectations may round either way."""
    sums = np.cumsum(full), np.cumsum(ne)
    if any((np.abs(x - np.floor(x) - 0.5) < 1e-6).any() for x in sums):
        return
    f_ref, n_ref = (np.diff(np.rint(x), prepend=0) for x in sums)
    assert (f == f_ref).all() and (p == np.maximum(n_ref - f_ref, 0)).all()


def occupancy_masks():
    keep = st.one_of(st.builds(dict, top_k=st.integers(1, 300)),
                     st.builds(dict, density=st.sampled_from([0.01, 0.05, 0.1, 0.3, 0.5, 0.9, 1.0])
                               | st.floats(0.001, 1.0)))
    return st.builds(lambda kw, clusters, causal: OccupancyMask(clusters=clusters, causal=causal, **kw),
                     keep, st.integers(1, 40), st.booleans())


@SETTINGS
@given(m=occupancy_masks(), lq=st.integers(1, 400), lk=st.integers(1, 400),
       bm=st.sampled_from([1, 3, 16, 32, 64, 128]), bn=st.sampled_from([1, 5, 16, 32, 64, 128]),
       exact=st.booleans())
def test_occupancy_sums_match_the_per_row_tables(m, lq, lk, bm, bn, exact):
    if not exact:
        m.EXACT_ROW_PAIRS = 0  # this instance takes every tile at its middle row
    r = np.arange(-(-lq // bm))
    lo, hi = r * bm, np.minimum(r * bm + bm, lq) - 1
    whole = np.ones(len(lo), dtype=bool)  # the grid's query ranges count as whole (ragged rows need no mask)
    full, ne = dense_expected(m, lo, hi, whole, lq, lk, bn, bm, exact)
    got = m._sums(lo, hi, whole, lq, lk, bn, bm)
    for g, w in zip(got, (full.sum(1), ne.sum(1), full.sum(0), ne.sum(0))):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9)
    for axis, (f, p) in ((1, m.tile_rows(lq, lk, bm, bn)), (0, m.tile_cols(lq, lk, bm, bn))):
        assert_grid_alike(f, p, full.sum(axis), ne.sum(axis))
    assert m.live_pairs(lq, lk) == dense_live_pairs(m, lq, lk)
    keys, x = dense_live_keys(m, lq, lk)
    assert m.live_keys(lq, lk) == keys or abs(x - np.floor(x) - 0.5) < 1e-9


@SETTINGS
@given(m=occupancy_masks(), lq=st.integers(1, 64), lk=st.integers(1, 3000), bn=st.sampled_from([16, 64, 128]),
       data=st.data())
def test_occupancy_decode_ranges_match_the_per_row_tables(m, lq, lk, bn, data):
    """Decode asks for arbitrary (even overlapping) query-row ranges."""
    lo = np.array(data.draw(st.lists(st.integers(0, lq - 1), min_size=1, max_size=6)))
    hi = np.minimum(lo + np.array(data.draw(st.lists(st.integers(0, 20), min_size=len(lo), max_size=len(lo)))), lq - 1)
    comp = np.array(data.draw(st.lists(st.booleans(), min_size=len(lo), max_size=len(lo))))
    bm = int((hi - lo).max()) + 1
    full, ne = dense_expected(m, lo, hi, comp, lq, lk, bn, bm, True)
    f, n = m.row_tiles(lo, hi, comp, lq, lk, bn)  # decode: (full, non-empty)
    assert_grid_alike(f, np.maximum(n - f, 0), full.sum(1), ne.sum(1))


@SETTINGS
@given(m=occupancy_masks(), lq=st.integers(1, 300), lk=st.integers(1, 300),
       bm=st.sampled_from([16, 32, 64]), bn=st.sampled_from([1, 16, 32]))
def test_occupancy_falls_back_to_middle_rows_past_the_row_table(m, lq, lk, bm, bn):
    """A causal row table past ROW_TABLE_PAIRS (long runs) takes the middle rows, as past EXACT_ROW_PAIRS."""
    m.ROW_TABLE_PAIRS = 0
    r = np.arange(-(-lq // bm))
    lo, hi = r * bm, np.minimum(r * bm + bm, lq) - 1
    whole = np.ones(len(lo), dtype=bool)
    full, ne = dense_expected(m, lo, hi, whole, lq, lk, bn, bm, not m.is_causal)
    got = m._sums(lo, hi, whole, lq, lk, bn, bm)
    for g, w in zip(got, (full.sum(1), ne.sum(1), full.sum(0), ne.sum(0))):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9)


def test_occupancy_closed_forms_at_sizes_past_the_dense_tables():
    """live_pairs and live_keys at 2^22 and 2^24 tokens, causal, against hand sums; the middle-row
    grid of a causal top-k at 2^24 answers, its totals alike both ways."""
    L = MAX_TOKENS
    m = OccupancyMask(top_k=64, clusters=64, causal=True, label="topk")
    assert m.live_pairs(L, L) == 64 * 65 // 2 + 64 * (L - 64)  # rows 1..64 keep all, the rest 64
    frac = 64 / (L // 2 + 1)  # the median row (L even: rows L/2 - 1 and L/2 see L/2 and L/2 + 1 keys)
    frac = (64 / (L // 2) + frac) / 2
    q = 1 - frac
    assert abs(m.live_keys(L, L) - (L - q * (1 - q ** L) / (1 - q))) <= 1
    f, p = m.tile_rows(L, L, 128, 128)
    fc, pc = m.tile_cols(L, L, 128, 128)
    assert len(f) == L // 128 and f.sum() == fc.sum() and (f + p).sum() == (fc + pc).sum()
    s = OccupancyMask(density=0.1, clusters=1_000_000, causal=True)  # scattered: one key per run
    n = 1 << 22
    a = np.arange(1, n + 1)
    assert s.live_pairs(n, n) == int(np.maximum(np.rint(0.1 * a), 1).sum())
    f, p = s.tile_rows(n, n, 128, 64)
    assert len(f) == n // 128 and (f + p).sum() > 0
    dense = OccupancyMask(density=0.1, clusters=1)  # non-causal: every row alike at any length
    f, p = dense.tile_rows(L, L, 64, 32)
    fc, pc = dense.tile_cols(L, L, 64, 32)
    # 1.3e11 tiles summed in floating point two ways: alike to rounding
    assert (f + p).sum() == pytest.approx((fc + pc).sum(), rel=1e-9) and dense.live_pairs(L, L) == L * round(0.1 * L)


def test_a_causal_occupancy_grid_past_its_limit_is_refused_with_the_length_that_fits():
    m = OccupancyMask(density=0.1, clusters=1, causal=True)
    with pytest.raises(AttnsimError) as e:
        m.tile_rows(262144, 262144, 64, 32)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("the occupancy model of sparse (density 0.1 in 1 run(s), causal)")
    assert "on 64x32 tiles" in msg and "at most 1,500,000" in msg and msg.endswith("got 262144")
    fits = int(re.search(r"prices sequences up to (\d+) tokens", msg).group(1))
    assert 100_000 < fits < 262144
    OccupancyMask(density=0.1, clusters=1, causal=True).tile_rows(fits, fits, 64, 32)  # answers
    r = CliRunner().invoke(cli, ["predict", "--variant", "sparse", "--causal", "--seqlen", "16777216",
                                 "--kernel", "triton", "--phase", "train", "--heads", "8"])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "prices sequences up to" in r.stderr and "got 16777216" in r.stderr


# -- block selection (MoBA) -----------------------------------------------------------------------------
def old_holders(m, kb, n_blocks, k):
    """The transposed view's holders as they were found: searchsorted over every query block."""
    starts = m._first_block(np.arange(n_blocks), n_blocks, k)
    return (np.searchsorted(starts + k - 1, kb, side="left"), np.searchsorted(starts, kb, side="right") - 1)


def moba_masks():
    return st.builds(lambda block, k, causal, density: BlockSelectMask(block, k, causal, density),
                     st.sampled_from([1, 2, 3, 4, 5, 8, 16, 64, 100, 128]), st.integers(1, 8), st.booleans(),
                     st.none() | st.sampled_from([0.1, 0.3, 0.5, 1.0]))


@SETTINGS
@given(m=moba_masks(), lq=st.integers(1, 160), lk=st.integers(1, 160), bm=st.sampled_from([1, 2, 4, 16, 32]),
       bn=st.sampled_from([1, 2, 4, 16, 32]))
def test_moba_closed_forms_match_brute_force(m, lq, lk, bm, bn):
    live = m.mask_mod(np.arange(lq)[:, None], np.arange(lk)[None, :], lq, lk)
    assert m.live_pairs(lq, lk) == live.sum()
    assert m.live_keys(lq, lk) == live.any(axis=0).sum()
    full, ne = full_nonempty(live, lq, lk, bm, bn)
    f, p = m.tile_rows(lq, lk, bm, bn)
    assert (f == full.sum(1)).all() and (f + p == ne.sum(1)).all()
    f, p = m.tile_cols(lq, lk, bm, bn)
    assert (f == full.sum(0)).all() and (f + p == ne.sum(0)).all()


@SETTINGS
@given(m=moba_masks(), lq=st.integers(1, 3000), lk=st.integers(1, 3000), bm=st.sampled_from([1, 16, 64, 128]),
       bn=st.sampled_from([1, 16, 64, 128]), data=st.data())
def test_moba_range_ends_match_the_per_row_intervals(m, lq, lk, bm, bn, data):
    """_tiles reads a range from its end rows; LocalMask._tiles evaluates every row's interval."""
    for transposed, (n_rows, n_keys, block) in ((False, (lq, lk, bn)), (True, (lk, lq, bm))):
        lo = np.array(data.draw(st.lists(st.integers(0, n_rows - 1), min_size=1, max_size=6)))
        hi = np.minimum(lo + np.array(data.draw(st.lists(st.integers(0, 300), min_size=len(lo), max_size=len(lo)))),
                        n_rows - 1)
        comp = np.array(data.draw(st.lists(st.booleans(), min_size=len(lo), max_size=len(lo))))
        got = m._tiles(lo, hi, comp, n_rows, n_keys, block, transposed)
        want = LocalMask._tiles(m, lo, hi, comp, n_rows, n_keys, block, transposed)
        assert all((np.asarray(g) == np.asarray(w)).all() for g, w in zip(got, want))
    assert m.live_pairs(lq, lk) == LocalMask.live_pairs(m, lq, lk)
    lo_k, hi_k, _ = m._intervals(np.arange(lk), lk, lq, transposed=True)
    assert m.live_keys(lq, lk) == (hi_k >= lo_k).sum()
    k = m._blocks_kept(lk)
    n_blocks = -(-lk // m.block)
    kb = np.arange(n_blocks)
    assert all((g == w).all() for g, w in zip(m._holders(kb, n_blocks, k), old_holders(m, kb, n_blocks, k)))


def test_moba_at_the_token_cap():
    """2^24 tokens: pairs against hand arithmetic, tiles totals alike both ways (no row-sized arrays)."""
    L, B, k = MAX_TOKENS, 512, 3
    m = BlockSelectMask(B, k, causal=True)
    nb = L // B
    assert m.live_pairs(L, L) == nb * B * (B + 1) // 2 + B * B * (1 + 2 * (nb - 2))  # own block + k - 1 before
    assert m.live_keys(L, L) == L
    f, p = m.tile_rows(L, L, 128, 128)
    fc, pc = m.tile_cols(L, L, 128, 128)
    assert f.sum() == fc.sum() and (f + p).sum() == (fc + pc).sum() == nb * 4 * (4 + 1) // 2 + 16 * (1 + 2 * (nb - 2))
    n = BlockSelectMask(B, k, causal=False)
    assert n.live_pairs(L, L) == L * k * B and n.live_keys(L // 2, L) == L - (L // 2 // B - 1) * B
    v = BoxBlockSelectMask((256, 256, 256), (8, 8, 8), top_k=4)
    assert v.live_pairs(L, L) == L * 4 * 512


def test_moba_prediction_at_the_token_cap_answers():
    r = CliRunner().invoke(cli, ["predict", "--variant", "moba", "--seqlen", str(MAX_TOKENS), "--causal",
                                 "--heads", "8", "--json"])
    assert r.exit_code == 0, r.output
