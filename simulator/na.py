"""Neighborhood attention (NATTEN / GNA): 1D, 2D and 3D windows with stride, dilation and causality.

Semantics per dimension follow NATTEN's reference mask (src/natten/backends/flex.py,
get_na_flex_mask), for extent n, kernel k, stride s, dilation d:
* token x is in dilation group g = x mod d at in-group coordinate xi = x div d; only tokens of the
  same group attend to each other; the group's extent is n_g = ceil((n - g) / d);
* non-causal: the stride group's leader is l = min(floor(xi/s)*s + floor(s/2), n_g - 1); the window
  centre is l clamped to [floor(k/2), n_g - 1 - r], r = floor(k/2) + (k mod 2) - 1; key yi is live
  when centre - floor(k/2) <= yi <= centre + r (exactly k keys: windows shift at borders);
* causal: l = min(floor(xi/s)*s + s - 1, n_g - 1); key yi is live when yi <= xi and l - yi < k.
A multi-dimensional mask is the AND over dimensions; tokens are laid out row-major (last axis fastest).

Because the mask is a product over dimensions, so is everything derived from it: live pairs, and
for box-shaped tiles (a tile is a box of tokens) the live-pair count of a (q box, kv box) pair is
the product over dimensions of the live pairs of its per-dimension intervals. A pair is full when
every dimension's intervals are full, empty when any dimension's are. Each dimension needs only
(#q intervals x #kv intervals) O(1) tests, from two facts: a query's window [lo(x), hi(x)] is
monotone in x, and consecutive windows touch (s <= k), so the union of the windows of an interval
[x0, x1] is [lo(x0), hi(x1)] and their intersection [lo(x1), hi(x0)].

Token orders:
* "tiled" (NATTEN's token permutation, as its Hopper/Blackwell kernels run it): tokens are grouped by
  dilation group and then by box, so a tile is a box in group coordinates (`q_tile`, `kv_tile`);
* "rowmajor": tiles are runs of consecutive row-major tokens, modeled here when such a run is a box
  (the tile length divides the last extent, or is a multiple of the trailing extents dividing the next).

Live tiles are not iterated tiles: NATTEN's kernels iterate, for each query box, a fixed box of KV
tiles — per dimension the largest count any query interval needs (the interior box, not shrunk at
borders). `iteration="box"` prices that; `iteration="live"` (a block-sparse list, FlexAttention
style) prices the live tiles only.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import reduce

import numpy as np

from .errors import AttnsimError
from .masks import Mask, permutation_ops
from .ops import Tile

MAX_BOX_TOKENS = 1 << 16  # tokens in one explicit q_tile/kv_tile box (a tile, not the grid)
# Per dimension the tiles are classified as a (#q intervals x #kv intervals) table: past this many
# cells (a 1D grid of ~260k tokens at 128-token tiles) the problem is refused, not left to run out of memory.
MAX_DIM_CELLS = 1 << 22


def _check_cells(n_q: int, n_k: int, axis_extent: int, t: int, u: int):
    if n_q * n_k > MAX_DIM_CELLS:
        raise AttnsimError(f"neighborhood attention classifies each dimension's tiles as a table of q x kv "
                           f"intervals: extent {axis_extent} with {t}/{u}-token boxes makes {n_q} x {n_k}, past "
                           f"attnsim's limit of {MAX_DIM_CELLS:,} cells; use larger boxes (-p q_tile/kv_tile), a "
                           f"smaller extent, or more dimensions (about 2,000 intervals per dimension fit)")


@dataclass(frozen=True)
class NADim:
    n: int  # extent
    k: int  # kernel size
    s: int = 1  # stride
    d: int = 1  # dilation
    causal: bool = False

    def check(self, axis: int):
        n, k, s, d = self.n, self.k, self.s, self.d
        for name, v in (("extent", n), ("kernel_size", k), ("stride", s), ("dilation", d)):
            if v < 1:
                raise AttnsimError(f"{name}={v} (dimension {axis}) must be a positive integer")
        if k * d > n:
            raise AttnsimError(f"kernel_size={k} x dilation={d} exceeds the extent {n} of dimension {axis}; "
                               f"allowed: kernel_size * dilation <= extent")
        if s > k:
            raise AttnsimError(f"stride={s} > kernel_size={k} in dimension {axis}; allowed: stride <= kernel_size")

    def group_extent(self, g):
        return -(-(self.n - np.asarray(g)) // self.d)

    def window(self, xi, n_g):
        """(lo, hi) in-group key coordinates, inclusive, of in-group queries xi (arrays)."""
        xi = np.asarray(xi)
        k, s = self.k, self.s
        if self.causal:
            lead = np.minimum(xi // s * s + s - 1, n_g - 1)
            return np.maximum(lead - k + 1, 0), xi
        lead = np.minimum(xi // s * s + s // 2, n_g - 1)
        h, r = k // 2, k // 2 + k % 2 - 1
        centre = np.clip(lead, h, n_g - 1 - r)
        return centre - h, centre + r

    def live(self, x, y):
        """Elementwise: does token x see token y in this dimension?"""
        x, y = np.asarray(x), np.asarray(y)
        g = x % self.d
        lo, hi = self.window(x // self.d, self.group_extent(g))
        yi = y // self.d
        return (y % self.d == g) & (yi >= lo) & (yi <= hi)

    def live_pairs(self) -> int:
        """Sum over queries of their window sizes in this dimension. Non-causal: every query sees exactly k
        keys (the window shifts at the borders; kernel_size x dilation <= extent keeps k <= every group's
        extent), n k in all."""
        if not self.causal:
            return self.n * self.k
        total = 0
        for g in range(self.d):
            n_g = int(self.group_extent(g))
            lo, hi = self.window(np.arange(n_g), n_g)
            total += int((hi - lo + 1).sum())
        return total

    # -- intervals -------------------------------------------------------------------------
    def tiled_intervals(self, t: int):
        """NATTEN's token permutation: per dilation group, boxes of t in-group coordinates.
        Returns arrays (group, lo, hi, complete) in group coordinates."""
        gs, los, his, comp = [], [], [], []
        for g in range(self.d):
            n_g = int(self.group_extent(g))
            a = np.arange(-(-n_g // t))
            gs.append(np.full(len(a), g))
            los.append(a * t)
            his.append(np.minimum(a * t + t, n_g) - 1)
            comp.append(a * t + t <= n_g)
        return tuple(np.concatenate(x) for x in (gs, los, his, comp))

    def classify(self, q_iv, k_iv):
        """(full, nonempty) boolean matrices (#q intervals x #kv intervals) for intervals in group
        coordinates (group, lo, hi, complete) — see the module docstring for the two facts used."""
        _check_cells(len(q_iv[0]), len(k_iv[0]), self.n, int(q_iv[2][0] - q_iv[1][0] + 1),
                     int(k_iv[2][0] - k_iv[1][0] + 1))
        qg, q0, q1, qc = (x[:, None] for x in q_iv)
        kg, k0, k1, kc = (x[None, :] for x in k_iv)
        n_g = self.group_extent(qg)
        lo0, hi0 = self.window(q0, n_g)
        lo1, hi1 = self.window(q1, n_g)
        same = qg == kg
        nonempty = same & (lo0 <= k1) & (k0 <= hi1)
        full = same & kc & (lo1 <= k0) & (k1 <= hi0)  # a ragged q box's padding rows need no mask
        return full, nonempty

    def classify_rowmajor(self, t: int, u: int):
        """(full, nonempty) matrices for token-coordinate intervals of lengths t (queries) and u (keys):
        each interval splits into its dilation groups' in-group runs, tested group by group."""
        nq, nk = -(-self.n // t), -(-self.n // u)
        _check_cells(nq, nk, self.n, t, u)
        qa, ka = np.arange(nq)[:, None], np.arange(nk)[None, :]
        x0, x1 = qa * t, np.minimum(qa * t + t, self.n) - 1
        y0, y1 = ka * u, np.minimum(ka * u + u, self.n) - 1
        nonempty = np.zeros((nq, nk), dtype=bool)
        for g in range(self.d):
            n_g = int(self.group_extent(g))
            xi0, xi1 = -(-(x0 - g) // self.d), (x1 - g) // self.d  # in-group runs of the intervals
            yi0, yi1 = -(-(y0 - g) // self.d), (y1 - g) // self.d
            has = (xi0 <= xi1) & (yi0 <= yi1)
            lo0, _ = self.window(np.clip(xi0, 0, n_g - 1), n_g)
            _, hi1 = self.window(np.clip(xi1, 0, n_g - 1), n_g)
            nonempty |= has & (lo0 <= yi1) & (yi0 <= hi1)
        # full needs every query to see every key of the tile: with d > 1 only 1 x 1 intervals can be
        full = np.zeros((nq, nk), dtype=bool)
        kc = ka * u + u <= self.n
        if self.d == 1:
            lo1, _ = self.window(x1, self.n)
            _, hi0 = self.window(x0, self.n)
            full = kc & (lo1 <= y0) & (y1 <= hi0)  # rows past the extent need no mask; keys do
        elif t == 1 and u == 1:
            full = kc & self.live(x0, y0)
        return full, nonempty


def _rowmajor_box(shape, length):
    """The box a run of `length` consecutive row-major tokens forms, or None when it is no box."""
    box, rest = [], length
    for n in reversed(shape):
        if rest >= n:
            if rest % n:
                return None
            box.append(n)
            rest //= n
        else:
            if n % rest:
                return None
            box.append(rest)
            rest = 1
    if rest != 1:
        return None
    return tuple(reversed(box))


def _as_tuple(v, nd, name):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return (int(v),) * nd
    if isinstance(v, bool):
        return (v,) * nd
    v = tuple(v)
    if len(v) == 1:
        return v * nd
    if len(v) != nd:
        raise AttnsimError(f"{name}={'x'.join(map(str, v))} has {len(v)} values; the token shape has {nd} dimensions")
    return v


class NAMask(Mask):
    """Neighborhood attention over a token grid `token_shape` (seqlen = product), per-dimension
    kernel_size, stride, dilation, is_causal; token order "tiled" (boxes `q_tile`/`kv_tile`) or
    "rowmajor"; iteration "box" (NATTEN; the default for tiled) or "live" (a block-sparse list, the
    default for rowmajor)."""

    def __init__(self, token_shape, kernel_size, stride=1, dilation=1, is_causal=False,
                 token_order="tiled", q_tile=None, kv_tile=None, iteration=None):
        shape = tuple(int(x) for x in (token_shape if not isinstance(token_shape, int) else (token_shape,)))
        nd = len(shape)
        if not 1 <= nd <= 3:
            raise AttnsimError(f"token_shape has {nd} dimensions; allowed: 1, 2 or 3")
        ks, ss, ds = (_as_tuple(v, nd, name) for v, name in ((kernel_size, "kernel_size"), (stride, "stride"),
                                                             (dilation, "dilation")))
        cs = _as_tuple(is_causal, nd, "is_causal")
        if not all(isinstance(c, bool) for c in cs):
            raise AttnsimError(f"is_causal={cs!r}: expected true/false per dimension")
        self.dims = tuple(NADim(n, int(k), int(s), int(d), bool(c)) for n, k, s, d, c in zip(shape, ks, ss, ds, cs))
        for i, dim in enumerate(self.dims):
            dim.check(i)
        if token_order not in ("tiled", "rowmajor"):
            raise AttnsimError(f"token_order={token_order!r}; allowed: tiled, rowmajor")
        if iteration is None:  # NATTEN's tiled kernels iterate a box; row-major ones a block-sparse list
            iteration = "box" if token_order == "tiled" else "live"
        if iteration not in ("box", "live"):
            raise AttnsimError(f"iteration={iteration!r}; allowed: box, live")
        self.shape, self.token_order, self.iteration = shape, token_order, iteration
        self.q_tile = None if q_tile is None else _as_tuple(q_tile, nd, "q_tile")
        self.kv_tile = None if kv_tile is None else _as_tuple(kv_tile, nd, "kv_tile")
        for name, box in (("q_tile", self.q_tile), ("kv_tile", self.kv_tile)):
            if box is not None and not (all(isinstance(b, int) and b >= 1 for b in box)
                                        and math.prod(box) <= MAX_BOX_TOKENS):
                raise AttnsimError(f"{name}={'x'.join(map(str, box))}: a tile box holds 1 to {MAX_BOX_TOKENS:,} "
                                   f"tokens (positive integers per dimension; kernel tiles hold at most a few hundred)")
        fmt = lambda v: "x".join(str(int(x)) for x in v)  # noqa: E731
        self.name = (f"na{nd}d_n{fmt(shape)}_k{fmt(ks)}_s{fmt(ss)}_d{fmt(ds)}"
                     + (f"_c{''.join('1' if c else '0' for c in cs)}" if any(cs) else "")
                     + f"_{token_order}")
        self.description = "neighborhood attention (NATTEN semantics)"
        self._cache = {}

    @property
    def seqlen(self) -> int:
        return math.prod(self.shape)

    def _check_lengths(self, seqlen_q, seqlen_kv):
        if seqlen_q != self.seqlen or seqlen_kv != self.seqlen:
            raise AttnsimError(f"token_shape {'x'.join(map(str, self.shape))} holds {self.seqlen} tokens; "
                               f"got seqlen {seqlen_q} -> {seqlen_kv} (neighborhood attention is self-attention)")

    # -- element predicate ------------------------------------------------------------------
    def coords(self, idx):
        """Row-major flat index -> per-dimension coordinates (last axis fastest)."""
        idx = np.asarray(idx)
        out = []
        for n in reversed(self.shape):
            out.append(idx % n)
            idx = idx // n
        return tuple(reversed(out))

    def mask_mod(self, q_idx, kv_idx, seqlen_q, seqlen_kv):
        qc, kc = self.coords(q_idx), self.coords(kv_idx)
        return reduce(np.logical_and, (dim.live(x, y) for dim, x, y in zip(self.dims, qc, kc)))

    def live_pairs(self, seqlen_q, seqlen_kv):
        self._check_lengths(seqlen_q, seqlen_kv)
        return math.prod(_dim_memo((dim, "pairs"), lambda dim=dim: int(dim.live_pairs())) for dim in self.dims)

    def resolved(self, tile=None) -> dict:
        """The parameters as the model uses them: per-dimension tuples, order, iteration, and the
        boxes of `tile` (the forward kernel's)."""
        out = {"token_shape": list(self.shape), "kernel_size": [d.k for d in self.dims],
               "stride": [d.s for d in self.dims], "dilation": [d.d for d in self.dims],
               "is_causal": [d.causal for d in self.dims], "token_order": self.token_order,
               "iteration": self.iteration}
        if tile is not None:
            out["q_tile"], out["kv_tile"] = (list(b) for b in self.boxes(tile.block_m, tile.block_n))
        return out

    def live_keys(self, seqlen_q, seqlen_kv):
        return seqlen_kv  # every token is some query's neighbour

    def extra_ops(self, w):
        """The token permutation of the tiled order (`masks.permutation_ops`); a 1D grid with no
        dilation needs none."""
        if self.token_order != "tiled" or (len(self.dims) == 1 and self.dims[0].d == 1):
            return [], None
        return permutation_ops(w), None

    def extra_memory(self, w) -> int:
        """The permuted copies the tiled order keeps beside the originals (Q, K, V, O; train: and
        dO, dQ, dK, dV)."""
        if self.token_order != "tiled" or (len(self.dims) == 1 and self.dims[0].d == 1):
            return 0
        s = w.dtype_bytes
        copies = (w.batch * w.heads_q * w.seqlen_q * (w.head_dim_qk + w.head_dim_v)
                  + w.batch * w.heads_kv * w.seqlen_kv * (w.head_dim_qk + w.head_dim_v)) * s
        return copies * (2 if w.phase == "train" else 1)

    def row_tiles(self, *args):
        """Query-row ranges are not this mask's tiles (boxes of the grid are: `tile_rows`); decode, the
        only caller of ranges, is refused here."""
        raise AttnsimError("neighborhood attention is priced for --phase prefill and train (its tiles are boxes "
                           "of the token grid, not query-row ranges)")

    def col_tiles(self, *args):
        """Key ranges are not this mask's tiles either (`tile_cols` gives the boxes)."""
        return self.row_tiles(*args)

    # -- tiles -------------------------------------------------------------------------------
    def boxes(self, block_m, block_n):
        """The q and kv box shapes for tiles of block_m / block_n tokens."""
        if self.token_order == "rowmajor":
            q, k = _rowmajor_box(self.shape, block_m), _rowmajor_box(self.shape, block_n)
            if q is None or k is None:
                raise AttnsimError(f"row-major tiles of {block_m}/{block_n} tokens are not boxes of token shape "
                                   f"{'x'.join(map(str, self.shape))}; allowed: tile lengths that divide the last "
                                   f"extent (or multiples of the trailing extents), or -p token_order=tiled")
            return q, k
        # explicit boxes where they hold the tile's tokens (the forward), else the tile search
        q_fixed = self.q_tile if self.q_tile and math.prod(self.q_tile) == block_m else None
        k_fixed = self.kv_tile if self.kv_tile and math.prod(self.kv_tile) == block_n else None
        if q_fixed and k_fixed:
            return q_fixed, k_fixed
        return self.search_boxes(block_m, block_n, q_fixed, k_fixed)

    def search_boxes(self, block_m, block_n, q_fixed=None, k_fixed=None):
        """The tile search: over the boxes of block_m (block_n) tokens — powers of two per
        dimension — the pair whose iterated tiles are fewest (the product over dimensions of each
        dimension's iterated count, which separates), preferring boxes that divide the grid.
        Per-dimension counts are cached, so hundreds of pairs cost milliseconds."""
        key = ("search", block_m, block_n, q_fixed, k_fixed)
        if key in self._cache:
            return self._cache[key]
        qs = [q_fixed] if q_fixed else _pow2_boxes(self.dims, block_m)
        ks = [k_fixed] if k_fixed else _pow2_boxes(self.dims, block_n)
        if not qs or not ks:
            q, k = q_fixed or auto_box(self.dims, block_m), k_fixed or auto_box(self.dims, block_n)
            self._cache[key] = (q, k)
            return q, k
        live = self.iteration == "live"
        # per dimension, the iterated count of each (q side, kv side) the boxes use (a pure function of the
        # dimension: shared by every mask with the same dimension, so a parameter search classifies it once)
        extents = [int(dim.group_extent(0)) for dim in self.dims]
        qa, ka = np.array(qs), np.array(ks)  # (boxes, dims)
        total = None
        for i, dim in enumerate(self.dims):  # the product over dimensions, in dimension order, per (q, kv) pair
            tq, iq = np.unique(qa[:, i], return_inverse=True)
            tk, ik = np.unique(ka[:, i], return_inverse=True)
            c = np.array([[_dim_cost(dim, int(t), int(u), live) for u in tk] for t in tq])[iq.ravel()][:, ik.ravel()]
            total = c if total is None else total * c
        ext = np.array(extents)
        ragged = (ext % qa != 0).sum(1)[:, None] + (ext % ka != 0).sum(1)[None, :]
        # the fewest iterated tiles, then the fewest ragged boxes, then the first pair (q boxes outer)
        on = total == total.min()
        on &= ragged == ragged[on].min()
        iq, ik = np.unravel_index(int(np.flatnonzero(on.ravel())[0]), on.shape)
        best = (qs[iq], ks[ik])
        self._cache[key] = best
        return best

    def per_dim(self, block_m, block_n):
        """Per dimension: (full, nonempty) matrices of its q x kv intervals."""
        key = (block_m, block_n)
        if key not in self._cache:
            qb, kb = self.boxes(block_m, block_n)
            mats = []
            for dim, t, u in zip(self.dims, qb, kb):
                if self.token_order == "rowmajor":
                    mats.append(dim.classify_rowmajor(t, u))
                else:
                    mats.append(_dim_classes(dim, t, u))
            self._cache[key] = mats
        return self._cache[key]

    def _outer(self, vectors):
        return reduce(lambda a, b: np.multiply.outer(a, b), vectors).ravel().astype(np.int64)

    def _live(self, axis, seqlen_q, seqlen_kv, block_m, block_n):
        """Per q box (axis 1) or per kv box (axis 0): (full, partial) live boxes on the other side."""
        self._check_lengths(seqlen_q, seqlen_kv)
        mats = self.per_dim(block_m, block_n)
        full = self._outer([f.sum(axis) for f, _ in mats])
        return full, self._outer([n.sum(axis) for _, n in mats]) - full

    def _iterated(self, axis, seqlen_q, seqlen_kv, block_m, block_n):
        """Box iteration: every box visits, per non-causal dimension, the interior box of the other
        side (the largest non-empty count: windows shift at borders, the box does not shrink) and,
        per causal dimension, its own range of the other side (its windows' span, which grows at the
        start); non-live tiles of that range are visited with masking (partial)."""
        full, partial = self._live(axis, seqlen_q, seqlen_kv, block_m, block_n)
        if self.iteration == "live":
            return full, partial
        per_dim = [n.sum(axis) if dim.causal else np.full(n.shape[1 - axis], n.sum(axis).max())
                   for dim, (_, n) in zip(self.dims, self.per_dim(block_m, block_n))]
        return full, self._outer(per_dim) - full

    def tile_rows(self, seqlen_q, seqlen_kv, block_m, block_n):
        return self._live(1, seqlen_q, seqlen_kv, block_m, block_n)

    def tile_cols(self, seqlen_q, seqlen_kv, block_m, block_n):
        return self._live(0, seqlen_q, seqlen_kv, block_m, block_n)

    def iterated_rows(self, seqlen_q, seqlen_kv, block_m, block_n):
        return self._iterated(1, seqlen_q, seqlen_kv, block_m, block_n)

    def iterated_cols(self, seqlen_q, seqlen_kv, block_m, block_n):
        return self._iterated(0, seqlen_q, seqlen_kv, block_m, block_n)

    def n_tiles(self, block_m, block_n, seqlen_q=None, seqlen_kv=None):
        """(#q boxes, #kv boxes)."""
        mats = self.per_dim(block_m, block_n)
        return math.prod(f.shape[0] for f, _ in mats), math.prod(f.shape[1] for f, _ in mats)

    def adjust_tile(self, tile, backward=False):
        """Box tiles: the forward runs the explicit q_tile/kv_tile when given; otherwise each side of
        the family's tile is rounded down to a power of two (tiled order, as NATTEN's tiles are) or to
        the longest row-major run that is a box, a multiple of 16 where one exists (rowmajor)."""

        def fit(size, box):
            if box is not None and not backward:
                return math.prod(box)
            if self.token_order == "rowmajor":  # the longest row-major run <= size that is a box
                runs = [b for b in range(size, 0, -1) if _rowmajor_box(self.shape, b) is not None]
                aligned = [b for b in runs if b % 16 == 0]
                return (aligned or runs or [size])[0]
            return 1 << (int(size).bit_length() - 1)
        return Tile(fit(tile.block_m, self.q_tile), fit(tile.block_n, self.kv_tile), tile.num_warps, tile.stages)


_DIM_MEMO: dict = {}  # (NADim, t, u[, iteration]) -> a dimension's classification or iterated count
_DIM_MEMO_MAX = 1 << 15  # entries: a dimension's classification is a few thousand booleans


def _dim_memo(key, compute):
    got = _DIM_MEMO.get(key)
    if got is None:
        if len(_DIM_MEMO) >= _DIM_MEMO_MAX:
            _DIM_MEMO.clear()
        got = _DIM_MEMO[key] = compute()
    return got


def dim_fits(dim: NADim, t: int, u: int) -> bool:
    """Whether a dimension's q boxes of t and kv boxes of u make a classification table within MAX_DIM_CELLS."""
    n_q, n_k = (sum(-(-int(dim.group_extent(g)) // x) for g in range(dim.d)) for x in (t, u))
    return n_q * n_k <= MAX_DIM_CELLS


def _dim_classes(dim: NADim, t: int, u: int):
    """(full, nonempty) of one dimension's tiled q boxes of t and kv boxes of u (memoized: read-only)."""
    def compute():
        full, ne = dim.classify(dim.tiled_intervals(t), dim.tiled_intervals(u))
        full.flags.writeable = ne.flags.writeable = False
        return full, ne
    return _dim_memo((dim, t, u), compute)


def _dim_cost(dim: NADim, t: int, u: int, live: bool) -> float:
    """The tile search's cost of one dimension: the kv boxes its q boxes iterate (all of their non-empty
    ones for a causal dimension or live iteration, else the interior count for every q box); inf when the
    boxes are too small for the extent."""
    def compute():
        if not dim_fits(dim, t, u):  # a box too small for this extent: not a candidate
            return math.inf
        rows = _dim_classes(dim, t, u)[1].sum(1)
        return float(rows.sum() if dim.causal or live else len(rows) * rows.max())
    return _dim_memo((dim, t, u, live), compute)


def _pow2_boxes(dims, tokens: int, limit: int = 64):
    """Boxes of `tokens` tokens, powers of two per dimension, none wider than twice its extent
    (at most `limit`, the most cubic first); [] when `tokens` is no power of two."""
    if tokens & (tokens - 1):
        return []
    bits = tokens.bit_length() - 1
    caps = [max(int(dim.group_extent(0)), 1) * 2 for dim in dims]
    out = []
    for split in itertools.product(range(bits + 1), repeat=len(dims)):
        if sum(split) == bits and all((1 << b) <= c for b, c in zip(split, caps)):
            out.append(tuple(1 << b for b in split))
    out.sort(key=lambda b: max(b) / min(b))
    return out[:limit]


def auto_box(dims, tokens: int):
    """A box of `tokens` tokens for the tiled order: powers of two dealt to the dimensions in
    proportion to their window (the tile search's starting point; -p q_tile/kv_tile override)."""
    if tokens & (tokens - 1):
        raise AttnsimError(f"tile of {tokens} tokens: automatic boxes need a power of two; set -p q_tile/kv_tile")
    box = [1] * len(dims)
    while math.prod(box) < tokens:
        # grow the dimension whose box is smallest relative to its kernel size: first among those the
        # doubled box still divides (no ragged boxes), then within the extent, then past it (a grid
        # smaller than the tile: ragged, partial boxes)
        extents = [max(int(dim.group_extent(0)), 1) for dim in dims]
        for fits in (lambda j: extents[j] % (box[j] * 2) == 0, lambda j: box[j] * 2 <= extents[j], lambda j: True):
            cand = [j for j in range(len(dims)) if fits(j)]
            if cand:
                break
        i = min(cand, key=lambda j: (box[j] / dims[j].k, -j))
        box[i] *= 2
    return tuple(box)
