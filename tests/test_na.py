"""Neighborhood attention (na/gna): the mask against a reference written from NATTEN's reference
mask, tile classification against brute-force enumeration of box pairs, the GNA paper's figure,
bad parameters, and the model/CLI on top."""
import itertools
import json

import numpy as np
import pytest
from click.testing import CliRunner

from attnsim.cli import cli
from tile_oracle import full_nonempty

from attnsim.simulator.errors import AttnsimError
from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.model import predict
from attnsim.simulator.na import NAMask, _rowmajor_box
from attnsim.simulator.workload import Workload


def ref_live_1d(x, y, n, k, s, d, causal):
    """One dimension of NATTEN's get_na_flex_mask (src/natten/backends/flex.py), written out."""
    if x % d != y % d:
        return False
    g, xi, yi = x % d, x // d, y // d
    n_g = (n // d) + 1 - ((g + (d - (n % d))) // d)  # NATTEN's 'qkv_shape_corrected'
    if causal:
        leader = min((xi // s) * s + s - 1, n_g - 1)  # the last query of the stride group
        return xi - yi >= 0 and leader - yi < k
    leader = min((xi // s) * s + s // 2, n_g - 1)  # the centre-most query of the stride group
    left, right = k // 2, k // 2 + (k % 2 - 1)
    centre = min(max(leader, left), n_g - 1 - right)
    return 0 <= centre - yi <= left or 0 <= yi - centre <= right


def dense_reference(shape, ks, ss, ds, cs):
    coords = list(itertools.product(*[range(n) for n in shape]))
    live = np.array([[all(ref_live_1d(x, y, n, k, s, d, c) for x, y, n, k, s, d, c in zip(xa, yb, shape, ks, ss, ds, cs))
                      for yb in coords] for xa in coords])
    return coords, live


def tiled_boxes(shape, ds, tile):
    """NATTEN's token permutation: per dimension and dilation group, runs of `tile` in-group tokens."""
    per_dim = []
    for n, d, t in zip(shape, ds, tile):
        runs = []
        for g in range(d):
            toks = list(range(g, n, d))
            runs += [(toks[a:a + t], len(toks[a:a + t]) == t) for a in range(0, len(toks), t)]
        per_dim.append(runs)
    return per_dim


def brute_rows(live, coords, qboxes, kboxes):
    """(full, non-empty) kv boxes per q box, by counting the live pairs of every box pair."""
    index = {c: i for i, c in enumerate(coords)}
    full, nonempty = [], []
    for qb in itertools.product(*qboxes):
        qt = [index[c] for c in itertools.product(*[run for run, _ in qb])]
        f = ne = 0
        for kb in itertools.product(*kboxes):
            kt = [index[c] for c in itertools.product(*[run for run, _ in kb])]
            cnt = live[np.ix_(qt, kt)].sum()
            ne += cnt > 0
            # full: the kv box whole (no padding keys) and every real query of the q box sees all of
            # it (a q box's padding rows need no mask: tests/tile_oracle.py's rule)
            f += cnt == len(qt) * len(kt) and all(c for _, c in kb)
        full.append(f)
        nonempty.append(ne)
    return full, nonempty


def random_problems(seed, n):
    rng = np.random.default_rng(seed)
    out = [((13,), (5,), (3,), (1,), (False,)), ((13,), (4,), (2,), (2,), (False,)), ((17,), (5,), (5,), (1,), (True,)),
           ((7, 9), (3, 5), (1, 2), (1, 1), (False, True)), ((9, 7), (3, 3), (3, 2), (2, 1), (True, False)),
           ((5, 6, 7), (3, 3, 5), (1, 2, 3), (1, 2, 1), (False, True, False))]
    for _ in range(n):
        nd = int(rng.integers(1, 4))
        shape = tuple(int(rng.integers(3, 12 if nd < 3 else 7)) for _ in range(nd))
        ks, ss, ds, cs = [], [], [], []
        for e in shape:
            d = int(rng.integers(1, 3))
            k = int(rng.integers(1, e // d + 1))
            ks.append(k), ss.append(int(rng.integers(1, k + 1))), ds.append(d), cs.append(bool(rng.integers(0, 2)))
        out.append((shape, tuple(ks), tuple(ss), tuple(ds), tuple(cs)))
    return out


@pytest.mark.parametrize("problem", random_problems(0, 24), ids=str)
def test_mask_pairs_and_tiled_boxes_match_brute_force(problem):
    shape, ks, ss, ds, cs = problem
    coords, live = dense_reference(*problem)
    L = len(coords)
    m = NAMask(shape, ks, ss, ds, cs)
    q, k = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
    assert (m.mask_mod(q, k, L, L) == live).all()
    assert m.live_pairs(L, L) == live.sum()
    rng = np.random.default_rng(L)
    qt = tuple(int(rng.choice([1, 2, 4])) for _ in shape)
    kt = tuple(int(rng.choice([1, 2, 4])) for _ in shape)
    m = NAMask(shape, ks, ss, ds, cs, q_tile=qt, kv_tile=kt)
    full, part = m.tile_rows(L, L, int(np.prod(qt)), int(np.prod(kt)))
    want_full, want_ne = brute_rows(live, coords, tiled_boxes(shape, ds, qt), tiled_boxes(shape, ds, kt))
    assert full.tolist() == want_full and (full + part).tolist() == want_ne
    f, p = m.tile_cols(L, L, int(np.prod(qt)), int(np.prod(kt)))
    assert int(f.sum()) == sum(want_full) and int((f + p).sum()) == sum(want_ne)


@pytest.mark.parametrize("problem", random_problems(1, 16), ids=str)
def test_rowmajor_box_tiles_match_brute_force(problem):
    shape, ks, ss, ds, cs = problem
    coords, live = dense_reference(*problem)
    L = len(coords)
    sizes = [b for b in range(1, L + 1) if _rowmajor_box(shape, b) is not None]
    bm, bn = sizes[len(sizes) // 2], sizes[-1 if len(sizes) < 3 else len(sizes) // 3]
    m = NAMask(shape, ks, ss, ds, cs, token_order="rowmajor")
    want_full, want_ne = full_nonempty(live, L, L, bm, bn)
    full, part = m.tile_rows(L, L, bm, bn)
    assert full.tolist() == want_full.sum(1).tolist()
    assert (full + part).tolist() == want_ne.sum(1).tolist()
    f, p = m.tile_cols(L, L, bm, bn)
    assert f.tolist() == want_full.sum(0).tolist() and (f + p).tolist() == want_ne.sum(0).tolist()


def test_gna_paper_flux_example():
    """GNA paper (Hassani et al. 2025): FLUX 256x256, window 80x80, q tiles 16x16, kv tiles 16x8: NATTEN
    iterates 256 q tiles x a 7 x 12 box = 6.1x over dense, while the live tiles alone promise 7.06x."""
    m = NAMask((256, 256), (80, 80), q_tile=(16, 16), kv_tile=(16, 8))
    L = 256 * 256
    f, p = m.tile_rows(L, L, 256, 128)
    fi, pi = m.iterated_rows(L, L, 256, 128)
    assert m.n_tiles(256, 128) == (256, 512)
    assert int((fi + pi).sum()) == 256 * 7 * 12
    assert 256 * 512 / (256 * 7 * 12) == pytest.approx(6.1, abs=0.01)
    assert 256 * 512 / int((f + p).sum()) == pytest.approx(7.06, abs=0.005)
    assert m.live_pairs(L, L) == (256 * 80) ** 2  # every query sees exactly 80 x 80 keys


def test_kernel_as_large_as_the_grid_is_dense():
    m = NAMask((12, 10), (12, 10))
    assert m.live_pairs(120, 120) == 120 * 120


def test_blocked_attention_is_block_diagonal():
    # stride = kernel_size: blocks of 4 tokens attend within the block; 4-token tiles are all full or empty
    m = NAMask((16,), (4,), (4,), q_tile=(4,), kv_tile=(4,))
    full, part = m.tile_rows(16, 16, 4, 4)
    assert full.tolist() == [1, 1, 1, 1] and part.tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("kwargs,needle", [
    (dict(token_shape=(10,), kernel_size=(11,)), "exceeds the extent"),
    (dict(token_shape=(10,), kernel_size=(3,), stride=(4,)), "stride=4 > kernel_size=3"),
    (dict(token_shape=(10,), kernel_size=(4,), dilation=(3,)), "kernel_size=4 x dilation=3 exceeds"),
    (dict(token_shape=(8, 8), kernel_size=(3, 3, 3)), "3 values"),
    (dict(token_shape=(2, 2, 2, 2), kernel_size=(1,)), "allowed: 1, 2 or 3"),
])
def test_bad_parameters(kwargs, needle):
    with pytest.raises(AttnsimError, match=needle):
        NAMask(**kwargs)


def test_model_prices_iterated_tiles_and_reports_speedups():
    hw = load_hardware("h100")
    m = NAMask((64, 64), (16, 16))
    w = Workload(batch=1, seqlen_q=4096, heads_q=8, head_dim_qk=128, phase="train")
    p = predict(w, hw, "fa3", mask=m, compare=True)
    assert [k.name for k in p.kernels][:2] == ["token_permute", "token_unpermute"]  # 2D: tokens permuted to boxes
    fwd = next(k for k in p.kernels if k.name == "attn_fwd")
    assert p.tiles_iterated >= p.tiles["full"] + p.tiles["partial"]
    assert fwd.flops == p.tiles_iterated * 2 * 128 * 128 * 256  # fa3's 128 x 176 tile runs as 128 x 128 boxes
    assert p.useful_flops == 14 * 128 * 8 * (64 * 16) ** 2 // 2 * 2  # 2(d+dv) + 2(3d+2dv) = 14d per live pair
    assert p.time_s >= p.bound.time_s
    assert p.speedup["useful_flops"] == pytest.approx(4096 ** 2 / (64 * 16) ** 2)
    assert p.speedup["live_tiles"] >= p.speedup["iterated_tiles"] > 1


def test_cli_gna():
    run = lambda *a: CliRunner().invoke(cli, ["predict", "--variant", "gna", "--hw", "b200", *a])  # noqa: E731
    r = run("--token-shape", "256x256", "-p", "kernel_size=80x80", "-p", "q_tile=16x16", "-p", "kv_tile=16x8", "--json")
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    assert j["workload"]["seqlen_q"] == 65536 and j["params"]["kernel_size"] == [80, 80]
    assert j["speedup"]["iterated_tiles"] == pytest.approx(6.095, abs=0.005)
    assert j["speedup"]["live_tiles"] == pytest.approx(7.06, abs=0.005)
    for args, needle in [(("--token-shape", "256x256", "--seqlen", "1000"), "differs from the 65536 tokens"),
                         (("-p", "kernel_size=3"), "--token-shape"),
                         (("--token-shape", "16x16", "-p", "kernel_size=20x3"), "exceeds the extent"),
                         (("--token-shape", "16x16", "-p", "kernel_size=4", "-p", "stride=5"), "stride=5"),
                         (("--token-shape", "16x16", "-p", "kernel_size=4", "--phase", "decode"), "prefill and train"),
                         (("--token-shape", "48x80", "-p", "kernel_size=3", "-p", "token_order=rowmajor", "-p", "q_tile=3x16"),
                          "not boxes"),
                         (("--token-shape", "axb",), "--token-shape")]:
        r = run(*args)
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    r = CliRunner().invoke(cli, ["predict", "--variant", "mha", "--token-shape", "8x8"])
    assert r.exit_code == 2 and "na, gna" in r.stderr


# -- found by a reviewer ------------------------------------------------------------------------------
def test_causal_dimensions_iterate_their_own_range():
    """1D causal NA with a kernel as long as the sequence is causal attention: NATTEN visits each query
    box's own kv range in a causal dimension (it grows at the start), not the largest box."""
    hw = load_hardware("h100")
    w = Workload(seqlen_q=8192, heads_q=8, head_dim_qk=128)
    na = predict(w, hw, "fa3", mask=NAMask((8192,), (8192,), is_causal=True), compare=True)
    assert na.tiles_iterated == na.tiles["full"] + na.tiles["partial"]
    assert na.speedup["iterated_tiles"] == pytest.approx(na.speedup["live_tiles"])
    assert na.useful_flops == 4 * 128 * 8 * 8192 * 8193 // 2


def test_tile_shapes_no_mma_can_run_are_refused():
    m = NAMask((256, 256), (9, 9), q_tile=(1, 1), kv_tile=(1, 1))
    with pytest.raises(AttnsimError, match="not a multiple of the 64x16 MMA shape"):
        predict(Workload(seqlen_q=65536, heads_q=8, head_dim_qk=128), load_hardware("h100"), "fa3", mask=m)


def test_small_grids_and_rowmajor_with_fa3():
    hw = load_hardware("h100")
    tiny = predict(Workload(seqlen_q=64, heads_q=8, head_dim_qk=128), hw, "fa3", mask=NAMask((8, 8), (3, 3)))
    assert tiny.useful_flops == 4 * 128 * 8 * 64 * 9 and tiny.time_s >= tiny.bound.time_s
    rm = predict(Workload(seqlen_q=65536, heads_q=8, head_dim_qk=128), hw, "fa3",
                 mask=NAMask((256, 256), (9, 9), token_order="rowmajor"))
    assert rm.kernels[0].tile.startswith("128x128")  # fa3's 128 x 176 as row-major box runs
    grid = NAMask((30, 48, 80), (30, 48, 80))  # a kernel as large as the grid is dense: the box divides the grid
    p = predict(Workload(seqlen_q=30 * 48 * 80, heads_q=8, head_dim_qk=128), hw, "fa3", mask=grid, compare=True)
    assert p.tiles["partial"] == 0 and p.speedup["time"] == pytest.approx(1.0, abs=0.01)


def test_json_params_are_resolved():
    r = CliRunner().invoke(cli, ["predict", "--variant", "gna", "--token-shape", "16x32x32", "-p", "kernel_size=5",
                                 "--json"])
    j = json.loads(r.stdout)["params"]
    assert j["kernel_size"] == [5, 5, 5] and j["dilation"] == [1, 1, 1] and j["is_causal"] == [False] * 3
    assert int(np.prod(j["q_tile"])) == 128 and j["iteration"] == "box"


def test_tile_search_finds_the_fewest_iterated_tiles():
    """The search's pick needs no more iterated tiles than any other box pair of the same sizes,
    and on the GNA paper's FLUX example it ties the paper's 16x16 / 16x8 tiles (6.1x)."""
    from attnsim.simulator.na import _pow2_boxes
    m = NAMask((64, 32), (9, 5), (2, 1))
    L = 64 * 32
    q, k = m.search_boxes(64, 64)
    chosen = int(sum(sum(x) for x in m.iterated_rows(L, L, 64, 64)))
    for qb in _pow2_boxes(m.dims, 64):
        for kb in _pow2_boxes(m.dims, 64):
            other = NAMask((64, 32), (9, 5), (2, 1), q_tile=qb, kv_tile=kb)
            assert chosen <= int(sum(sum(x) for x in other.iterated_rows(L, L, 64, 64))), (qb, kb)
    flux = NAMask((256, 256), (80, 80))
    fi, pi = flux.iterated_rows(65536, 65536, 256, 128)
    assert 256 * 512 / int((fi + pi).sum()) == pytest.approx(6.095, abs=0.001)


def test_token_permutation_memory_is_reported():
    hw = load_hardware("h100")
    w = Workload(seqlen_q=4096, heads_q=8, head_dim_qk=128)
    plain = predict(w, hw, "fa3")
    na2d = predict(w, hw, "fa3", mask=NAMask((64, 64), (9, 9)))
    na1d = predict(w, hw, "fa3", mask=NAMask((4096,), (9,)))
    copies = 2 * 8 * 4096 * 256 * 2  # Q, O and K, V in box-major order
    assert na2d.memory_bytes == plain.memory_bytes + copies
    assert na1d.memory_bytes == plain.memory_bytes  # 1D without dilation needs no permutation
