"""Masks and their tile counts against a brute-force oracle written here.

The oracle builds the dense boolean mask with a plain Python double loop (causal: bottom-right
aligned, query i sees key j iff j <= i + (seqlen_kv - seqlen_q)), pads it with False to the tile
grid, and classifies every BLOCK_M x BLOCK_N box as full (every pair live), empty (none) or
partial (otherwise). Nothing here is compared against output the code produced earlier.
"""
from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import pytest

from tile_oracle import classify

from attnsim.simulator.masks import CausalMask, DenseMask, enumerate_tiles, mask_for, tile_cols, tile_rows
from attnsim.simulator.vectorized import causal_row_totals, dense_row_totals, floor_sum

TILES = [(16, 16), (16, 32), (64, 48), (7, 5)]
# lengths 1..70: every small size for the tiny tile, a spread (incl. tile multiples +-1) otherwise
LENGTHS = sorted({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 16, 17, 23, 31, 32, 33, 35, 47, 48, 49,
                  50, 63, 64, 65, 66, 69, 70})
# a sparser grid of (seqlen_q, seqlen_kv) pairs: all combinations of a subset, covering lq < lk,
# lq > lk, lq == lk and sizes below one tile
PAIR_LENGTHS = [1, 2, 5, 7, 11, 16, 17, 31, 33, 48, 49, 64, 65, 70]
PAIRS = list(itertools.product(PAIR_LENGTHS, PAIR_LENGTHS))


def _cdiv(a, b):
    return -(-a // b)


@lru_cache(maxsize=None)
def brute_live(causal: bool, lq: int, lk: int) -> np.ndarray:
    """Dense boolean mask by a plain double loop over every (query, key) pair."""
    live = np.zeros((lq, lk), dtype=bool)
    for i in range(lq):
        for j in range(lk):
            live[i, j] = (j <= i + (lk - lq)) if causal else True
    return live


@lru_cache(maxsize=None)
def brute_classes(causal: bool, lq: int, lk: int, bm: int, bn: int) -> np.ndarray:
    """(n_q_tiles, n_kv_tiles) array: 2 = full, 1 = partial, 0 = empty (tests/tile_oracle.py's rule)."""
    return classify(brute_live(causal, lq, lk), lq, lk, bm, bn)


MASKS = [pytest.param(False, id="dense"), pytest.param(True, id="causal")]


# -- per-tile counts -----------------------------------------------------------------------
# tile_rows counts kv tiles per query tile (oracle summed over axis 1), tile_cols q tiles per kv tile (axis 0)
AXES = [pytest.param(tile_rows, 1, id="rows"), pytest.param(tile_cols, 0, id="cols")]


@pytest.mark.parametrize("causal", MASKS)
@pytest.mark.parametrize("bm,bn", TILES)
@pytest.mark.parametrize("per_tile,axis", AXES)
def test_tile_rows_and_cols_match_brute_force(causal, bm, bn, per_tile, axis):
    mask = mask_for(causal)
    for lq, lk in PAIRS:
        cls = brute_classes(causal, lq, lk, bm, bn)
        full, partial = per_tile(mask, lq, lk, bm, bn)
        assert len(full) == len(partial) == (_cdiv(lq, bm) if axis == 1 else _cdiv(lk, bn))
        np.testing.assert_array_equal(full, (cls == 2).sum(axis=axis), err_msg=f"full lq={lq} lk={lk}")
        np.testing.assert_array_equal(partial, (cls == 1).sum(axis=axis), err_msg=f"partial lq={lq} lk={lk}")


@pytest.mark.parametrize("causal", MASKS)
def test_tile_rows_cols_every_small_size_tiny_tile(causal):
    """Every (lq, lk) in the length list with the odd 7 x 5 tile: rows and cols agree with the oracle."""
    mask = mask_for(causal)
    for lq in LENGTHS:
        for lk in LENGTHS:
            cls = brute_classes(causal, lq, lk, 7, 5)
            f, p = tile_rows(mask, lq, lk, 7, 5)
            assert (f.tolist(), p.tolist()) == ((cls == 2).sum(1).tolist(), (cls == 1).sum(1).tolist()), (lq, lk)
            f, p = tile_cols(mask, lq, lk, 7, 5)
            assert (f.tolist(), p.tolist()) == ((cls == 2).sum(0).tolist(), (cls == 1).sum(0).tolist()), (lq, lk)


@pytest.mark.parametrize("causal", MASKS)
@pytest.mark.parametrize("bm,bn", TILES)
def test_enumerate_tiles_totals(causal, bm, bn):
    mask = mask_for(causal)
    for lq, lk in PAIRS:
        cls = brute_classes(causal, lq, lk, bm, bn)
        expected = (int((cls == 2).sum()), int((cls == 1).sum()), int((cls == 0).sum()))
        assert enumerate_tiles(mask, lq, lk, bm, bn) == expected, (lq, lk)
        # the row view, the column view and the enumeration all count the same tiles
        fr, pr = tile_rows(mask, lq, lk, bm, bn)
        fc, pc = tile_cols(mask, lq, lk, bm, bn)
        assert int(fr.sum()) == int(fc.sum()) == expected[0]
        assert int(pr.sum()) == int(pc.sum()) == expected[1]


def test_hand_worked_causal_example():
    """lq = lk = 4, tile 2 x 2: the lower-triangular mask gives, per query tile,
    row 0: [partial, empty]; row 1: [full, partial]."""
    f, p = tile_rows(CausalMask(), 4, 4, 2, 2)
    assert f.tolist() == [0, 1] and p.tolist() == [1, 1]
    f, p = tile_cols(CausalMask(), 4, 4, 2, 2)
    assert f.tolist() == [1, 0] and p.tolist() == [1, 1]
    assert enumerate_tiles(CausalMask(), 4, 4, 2, 2) == (1, 2, 1)


def test_hand_worked_bottom_right_alignment():
    """lq = 2, lk = 4 (decode-like, bottom-right): query 0 sees keys 0..2, query 1 sees 0..3.
    Tile 1 x 2: row 0 -> [full, partial], row 1 -> [full, full]. Top-left alignment would differ."""
    f, p = tile_rows(CausalMask(), 2, 4, 1, 2)
    assert f.tolist() == [1, 2] and p.tolist() == [1, 0]
    assert CausalMask().live_pairs(2, 4) == 3 + 4
    # lq = 4 > lk = 2: off = -2, queries 0 and 1 see nothing, query 2 sees key 0, query 3 sees 0..1
    assert CausalMask().live_pairs(4, 2) == 0 + 0 + 1 + 2
    f, p = tile_rows(CausalMask(), 4, 2, 2, 2)
    assert f.tolist() == [0, 0] and p.tolist() == [0, 1]


def test_ragged_keys_make_tiles_partial_ragged_query_rows_do_not():
    """Dense 10 x 10 with 4 x 4 tiles: the last kv tile (keys 8..9, two out of bounds) is partial in
    every query tile, as the softmax must not see keys 10, 11; the last query tile (rows 8..9) is
    full where its keys are: rows 10, 11 are predicated, not masked. So 3 x 2 full, 3 partial."""
    f, p = tile_rows(DenseMask(), 10, 10, 4, 4)
    assert f.tolist() == [2, 2, 2] and p.tolist() == [1, 1, 1]
    f, p = tile_cols(DenseMask(), 10, 10, 4, 4)
    assert f.tolist() == [3, 3, 0] and p.tolist() == [0, 0, 3]
    assert enumerate_tiles(DenseMask(), 10, 10, 4, 4) == (6, 3, 0)
    # the same tiles, and the same masking, as the next multiple of the tile in the query axis
    assert tile_rows(DenseMask(), 12, 10, 4, 4)[0].tolist() == [2, 2, 2]


# -- live pairs and the predicate ------------------------------------------------------------
@pytest.mark.parametrize("causal", MASKS)
def test_live_pairs_brute_force(causal):
    mask = mask_for(causal)
    for lq in LENGTHS:
        for lk in LENGTHS:
            expected = sum(1 for i in range(lq) for j in range(lk) if (not causal or j <= i + lk - lq))
            assert int(mask.live_pairs(lq, lk)) == expected, (lq, lk)


def test_causal_live_pairs_closed_forms():
    # square: L(L+1)/2; lq <= lk: lq*lk - lq(lq-1)/2; lq > lk: lk(lk+1)/2
    for L in (1, 2, 7, 128, 4096, 100_003):
        assert CausalMask().live_pairs(L, L) == L * (L + 1) // 2
    assert CausalMask().live_pairs(3, 10) == 3 * 10 - 3 * 2 // 2
    assert CausalMask().live_pairs(10, 3) == 3 * 4 // 2
    assert CausalMask().live_pairs(1, 32768) == 32768


def test_causal_live_pairs_vectorized_over_arrays():
    lq = np.array([1, 5, 17, 70, 3, 64])
    lk = np.array([70, 5, 3, 1, 64, 3])
    out = CausalMask().live_pairs(lq, lk)
    expected = [int(brute_live(True, int(a), int(b)).sum()) for a, b in zip(lq, lk)]
    assert np.asarray(out).tolist() == expected


@pytest.mark.parametrize("causal", MASKS)
def test_mask_mod_equals_predicate(causal):
    mask = mask_for(causal)
    for lq, lk in PAIRS:
        q = np.arange(lq)[:, None]
        k = np.arange(lk)[None, :]
        got = np.broadcast_to(mask.mask_mod(q, k, lq, lk), (lq, lk))
        np.testing.assert_array_equal(got, brute_live(causal, lq, lk), err_msg=f"lq={lq} lk={lk}")
    # scalar arguments
    assert bool(mask.mask_mod(0, 0, 1, 1))


# -- vectorized closed forms -------------------------------------------------------------------
def test_floor_sum_against_loop():
    rng = np.random.default_rng(1234)
    for _ in range(2000):
        n, m = int(rng.integers(0, 40)), int(rng.integers(1, 25))
        a, b = int(rng.integers(0, 60)), int(rng.integers(0, 90))
        expected = sum((a * i + b) // m for i in range(n))
        assert int(floor_sum(n, m, a, b)) == expected, (n, m, a, b)


def test_floor_sum_elementwise_arrays():
    rng = np.random.default_rng(99)
    n = rng.integers(0, 50, size=200)
    m = rng.integers(1, 30, size=200)
    a = rng.integers(0, 100, size=200)
    b = rng.integers(0, 100, size=200)
    expected = [sum((int(aa) * i + int(bb)) // int(mm) for i in range(int(nn))) for nn, mm, aa, bb in zip(n, m, a, b)]
    assert floor_sum(n, m, a, b).tolist() == expected
    # broadcasting a scalar against an array
    assert floor_sum(np.array([0, 1, 2, 3]), 2, 1, 0).tolist() == [0, 0, 0, 1]


def test_floor_sum_large_values():
    # sum_{i<n} floor((a i + b)/m) for values where a brute loop is still cheap but numbers are big
    n, m, a, b = 5000, 997, 123457, 10**6
    assert int(floor_sum(n, m, a, b)) == sum((a * i + b) // m for i in range(n))


@pytest.mark.parametrize("causal", MASKS)
@pytest.mark.parametrize("bm,bn", TILES + [(128, 176), (192, 128)])
def test_row_totals_closed_forms(causal, bm, bn):
    fn = causal_row_totals if causal else dense_row_totals
    sizes = PAIRS + [(1, 300), (300, 1), (129, 177), (1000, 999), (999, 1000), (4096, 4096), (257, 4097)]
    for lq, lk in sizes:
        full, nonempty = fn(lq, lk, bm, bn)
        f, p = tile_rows(mask_for(causal), lq, lk, bm, bn)
        assert int(full) == int(f.sum()), (lq, lk)
        assert int(nonempty) == int(f.sum() + p.sum()), (lq, lk)
        if lq <= 70 and lk <= 70:  # also straight against the oracle
            cls = brute_classes(causal, lq, lk, bm, bn)
            assert (int(full), int(nonempty)) == (int((cls == 2).sum()), int((cls != 0).sum())), (lq, lk)


def test_causal_row_totals_vectorized_over_arrays():
    rng = np.random.default_rng(7)
    lq = rng.integers(1, 600, size=150)
    lk = rng.integers(1, 600, size=150)
    for bm, bn in ((16, 32), (64, 48), (7, 5)):
        full, nonempty = causal_row_totals(lq, lk, bm, bn)
        for i in range(len(lq)):
            f, p = tile_rows(CausalMask(), int(lq[i]), int(lk[i]), bm, bn)
            assert (int(full[i]), int(nonempty[i])) == (int(f.sum()), int(f.sum() + p.sum())), (lq[i], lk[i], bm, bn)
