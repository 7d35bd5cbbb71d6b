"""Masks: which (query, key) pairs are live, and how a tiling splits them into full/partial/empty tiles.

A mask is read by everyone: the simulator prices its tiles, the kernels (issue 5) iterate them,
the tests brute-force them. Conventions:

* Causal masks align bottom-right when seqlen_q != seqlen_kv (FlashAttention's convention):
  query i sees key j iff j <= i + (seqlen_kv - seqlen_q). torch SDPA's `is_causal` aligns top-left.
* A tile is the nominal BLOCK_M x BLOCK_N box of the tile grid. It is *full* when its keys are all
  in bounds and every in-bounds query row sees all of them (no mask arithmetic needed), *empty*
  when no pair is live (never visited), *partial* otherwise. Out-of-bounds keys (a ragged last kv
  tile) need the mask, as they would enter the softmax; out-of-bounds query rows (a ragged last
  query tile) do not: their loads and stores are predicated and their results discarded, as
  FlashAttention's kernels do (no masking step for them; the backward sets their LSE to +inf).
  So a ragged sequence iterates the same tiles with the same masking as the next multiple of the
  tile, and the time never falls when a sequence grows.

Every mask answers, analytically and vectorized over numpy arrays:
    mask_mod(q_idx, kv_idx, seqlen_q, seqlen_kv)   element predicate (broadcasting)
    live_pairs(seqlen_q, seqlen_kv)                exact count of live pairs in one (batch, head)
    row_tiles(q_lo, q_hi, complete, ...)           kv tiles (full, non-empty) seen by query rows q_lo..q_hi
    col_tiles(k_lo, k_hi, complete, ...)           q tiles (full, non-empty) seen by key rows k_lo..k_hi
`row_tiles` prices forward kernels (a CTA owns a query tile), `col_tiles` backward kernels
(a CTA owns a kv tile).
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from .errors import AttnsimError
from .ops import Gemm, Matmuls, Pointwise, Tile, Work


MEMO_ENTRIES = 512  # per mask and per kind: a sweep over many lengths keeps the most recent ones


def _memo(mask, kind: str, key, compute):
    """A mask's bounded memo (least recently used out): masks are immutable values, so what they
    computed for some lengths holds for the next call with the same lengths."""
    cache = mask.__dict__.get(kind)
    if cache is None:
        cache = mask.__dict__[kind] = OrderedDict()
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = compute()
    if len(cache) > MEMO_ENTRIES:
        cache.popitem(last=False)
    return value


def _cdiv(a, b):
    return -(-a // b)


class Mask:
    """Base class. Subclasses implement the four methods above without O(L^2) loops."""
    name = "mask"
    description = ""

    def mask_mod(self, q_idx, kv_idx, seqlen_q, seqlen_kv):
        raise NotImplementedError

    def live_pairs(self, seqlen_q, seqlen_kv):
        raise NotImplementedError

    def row_tiles(self, q_lo, q_hi, complete, seqlen_q, seqlen_kv, block_n):
        """`complete`: always true for query rows (see the module docstring)."""
        raise NotImplementedError

    def col_tiles(self, k_lo, k_hi, complete, seqlen_q, seqlen_kv, block_m):
        """`complete`: the key range is a whole tile (keys out of bounds need the mask); the last
        query tile may be ragged and still full."""
        raise NotImplementedError

    def live_keys(self, seqlen_q, seqlen_kv):
        """Keys that at least one query sees (the K/V rows an implementation must read)."""
        return seqlen_kv

    # -- the tile grid (masks with their own tiling, e.g. neighborhood boxes, override these) --
    def tile_rows(self, seqlen_q, seqlen_kv, block_m, block_n):
        """Per query tile: (full, partial) live kv tiles."""
        return self._cached(("rows", seqlen_q, seqlen_kv, block_m, block_n), lambda: self._grid(
            self.row_tiles, seqlen_q, block_m, True, seqlen_q, seqlen_kv, block_n))

    def tile_cols(self, seqlen_q, seqlen_kv, block_m, block_n):
        """Per kv tile: (full, partial) live q tiles."""
        return self._cached(("cols", seqlen_q, seqlen_kv, block_m, block_n), lambda: self._grid(
            self.col_tiles, seqlen_kv, block_n, False, seqlen_q, seqlen_kv, block_m))

    def _cached(self, key, compute):
        """Per-mask memo of the tile arrays (a tile search prices many tiles of the same block sizes);
        the arrays are read-only, so no caller can change what the next one reads."""
        def frozen():
            arrays = compute()
            for a in arrays:
                a.flags.writeable = False
            return arrays
        return _memo(self, "_tile_cache", key, frozen)

    @staticmethod
    def _grid(per_range, n, block, ragged_ok, *args):
        """Apply a per-range count (row_tiles or col_tiles) to every tile of an axis of length n.
        The range's `complete` flag: a query range always counts as complete (out-of-bounds query
        rows need no mask), a key range only when it is a whole tile (`ragged_ok` tells which)."""
        r = np.arange(_cdiv(n, block), dtype=np.int64)
        lo = r * block
        full, nonempty = per_range(lo, np.minimum(lo + block, n) - 1, True if ragged_ok else lo + block <= n, *args)
        full = np.broadcast_to(full, r.shape).astype(np.int64)
        return full, np.broadcast_to(nonempty, r.shape).astype(np.int64) - full

    def iterated_rows(self, seqlen_q, seqlen_kv, block_m, block_n):
        """Per query tile: (full, partial) kv tiles a kernel visits; FlashAttention-style kernels
        visit exactly the live ones (their kv-block range is the live range)."""
        return self.tile_rows(seqlen_q, seqlen_kv, block_m, block_n)

    def iterated_cols(self, seqlen_q, seqlen_kv, block_m, block_n):
        return self.tile_cols(seqlen_q, seqlen_kv, block_m, block_n)

    def n_tiles(self, block_m, block_n, seqlen_q, seqlen_kv):
        """(#q tiles, #kv tiles) of the grid."""
        return _cdiv(seqlen_q, block_m), _cdiv(seqlen_kv, block_n)

    def adjust_tile(self, tile, backward=False):
        """The tile a kernel runs this mask with (neighborhood masks need box-shaped tiles)."""
        return tile

    def for_lengths(self, seqlen_q, seqlen_kv) -> "Mask":
        """The same mask in the form a kernel runs it at these lengths: itself, unless a simpler
        mask is the same set of pairs (a window wider than the keys)."""
        return self

    def extra_ops(self, w):
        """Operations the mask itself costs (a gate that picks blocks, a token permutation) and their
        useful work: ([], None). Descriptions only (`ops`); the pricer prices them."""
        return [], None

    def extra_memory(self, w) -> int:
        """Device memory the mask's own buffers take (a permuted copy of the tensors): 0."""
        return 0

    assumption = None  # a sentence the prediction prints when the mask is a model, not a definition
    # tokens per sequence this mask prices within about a second (None: the workload's limit); masks
    # counted row by row (O(L) per call, not closed form) state a lower one
    max_tokens = None
    max_tokens_why = ""

    def check_lengths_limit(self, seqlen_q, seqlen_kv):
        """Refuse lengths past `max_tokens` in one line that states the limit."""
        if self.max_tokens is not None and max(seqlen_q, seqlen_kv) > self.max_tokens:
            raise AttnsimError(f"mask {self.name} prices sequences up to {self.max_tokens:,} tokens "
                               f"({self.max_tokens_why}); got {max(seqlen_q, seqlen_kv):,}")

    def head_groups(self, heads_q: int) -> list:
        """(mask, query heads) pairs: one mask for every head, unless a mixture says otherwise."""
        return [(self, heads_q)]

    def passes(self) -> list:
        """The attention passes this mask takes: one, unless it is split over several (duplex)."""
        return [self]

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"


class DenseMask(Mask):
    """Every query sees every key."""
    name = "dense"
    description = "full attention: every query sees every key"

    def mask_mod(self, q_idx, kv_idx, seqlen_q, seqlen_kv):
        q_idx, kv_idx = np.broadcast_arrays(np.asarray(q_idx), np.asarray(kv_idx))
        return (q_idx >= 0) & (kv_idx >= 0)

    def live_pairs(self, seqlen_q, seqlen_kv):
        return seqlen_q * seqlen_kv

    def row_tiles(self, q_lo, q_hi, complete, seqlen_q, seqlen_kv, block_n):
        n_kv = _cdiv(seqlen_kv, block_n)
        nonempty = np.where(np.asarray(q_hi) >= np.asarray(q_lo), n_kv, 0)
        full = np.where(complete, seqlen_kv // block_n, 0)
        return full, nonempty

    def col_tiles(self, k_lo, k_hi, complete, seqlen_q, seqlen_kv, block_m):
        n_q = _cdiv(seqlen_q, block_m)
        nonempty = np.where(np.asarray(k_hi) >= np.asarray(k_lo), n_q, 0)
        full = np.where(complete, n_q, 0)
        return full, nonempty


class CausalMask(Mask):
    """Query i sees keys j <= i + (seqlen_kv - seqlen_q): bottom-right aligned, as in FlashAttention."""
    name = "causal"
    description = "causal, bottom-right aligned: query i sees keys j <= i + seqlen_kv - seqlen_q"

    def mask_mod(self, q_idx, kv_idx, seqlen_q, seqlen_kv):
        return np.asarray(kv_idx) <= np.asarray(q_idx) + (seqlen_kv - seqlen_q)

    def live_pairs(self, seqlen_q, seqlen_kv):
        # Row i sees clip(i + off + 1, 0, L_kv) keys, off = L_kv - L_q. Rows with i + off + 1 <= 0 see
        # none; rows with i + off + 1 >= L_kv see all. Sum the arithmetic run in between.
        if isinstance(seqlen_q, int) and isinstance(seqlen_kv, int):  # one pair of lengths: Python integers
            off = seqlen_kv - seqlen_q
            first = min(max(-off, 0), seqlen_q)
            sat = max(min(max(seqlen_kv - off - 1, 0), seqlen_q), first)
            n = sat - first
            return ((first + off + 1 + sat + off) * n // 2 if n > 0 else 0) + (seqlen_q - sat) * seqlen_kv
        lq, lk = np.asarray(seqlen_q), np.asarray(seqlen_kv)
        off = lk - lq
        first = np.clip(-off, 0, lq)  # first row that sees >= 1 key: i + off + 1 >= 1
        sat = np.clip(lk - off - 1, 0, lq)  # first row that sees all L_kv keys: i + off + 1 >= L_kv
        sat = np.maximum(sat, first)
        # rows first .. sat-1 see i + off + 1 keys (1 .. ), rows sat .. lq-1 see lk keys
        a = first + off + 1
        b = sat - 1 + off + 1
        n = sat - first
        ramp = np.where(n > 0, (a + b) * n // 2, 0)
        out = ramp + (lq - sat) * lk
        return int(out) if out.ndim == 0 else out

    def row_tiles(self, q_lo, q_hi, complete, seqlen_q, seqlen_kv, block_n):
        off = seqlen_kv - seqlen_q
        q_lo, q_hi = np.asarray(q_lo), np.asarray(q_hi)
        # non-empty: kv tiles whose first key j0 = c*Bc satisfies j0 <= min(q_hi + off, L_kv - 1)
        last = np.minimum(q_hi + off, seqlen_kv - 1)
        nonempty = np.where(last >= 0, last // block_n + 1, 0)
        # full: complete query tile, kv tile in bounds (c*Bc + Bc <= L_kv), and its last key
        # c*Bc + Bc - 1 <= q_lo + off (the tile's first row already sees it)
        m = np.minimum(q_lo + off + 1, seqlen_kv)
        full = np.where(complete & (m > 0), np.maximum(m, 0) // block_n, 0)
        return full, nonempty

    def col_tiles(self, k_lo, k_hi, complete, seqlen_q, seqlen_kv, block_m):
        off = seqlen_kv - seqlen_q
        k_lo, k_hi = np.asarray(k_lo), np.asarray(k_hi)
        n_q = _cdiv(seqlen_q, block_m)
        # key j is seen by rows i >= j - off; the tile's first key k_lo needs some row i >= k_lo - off
        t = k_lo - off
        nonempty = np.where(t <= seqlen_q - 1, n_q - np.maximum(t, 0) // block_m, 0)
        # full: complete kv tile, q tile r whose first row r*Br sees the tile's last key:
        # r*Br >= k_hi - off (a ragged last q tile included: its rows past L_q need no mask)
        r0 = np.maximum(_cdiv(k_hi - off, block_m), 0)
        full = np.where(complete, np.maximum(n_q - r0, 0), 0)
        return full, nonempty


class SpreadCausalMask(Mask):
    """Causal attention of gathered query rows: n rows spread evenly over `positions` query
    positions (MoH's ideal implementation, a head's routed tokens gathered in order). Row i sits
    at position pos(i) = (i + 1) * positions // n - 1 and sees keys j <= pos(i) + seqlen_kv -
    positions (bottom-right aligned like CausalMask; n = positions is CausalMask itself)."""
    name = "spread_causal"
    description = "causal over gathered query rows spread evenly over the positions"

    def __init__(self, positions: int):
        self.positions = int(positions)

    def _pos(self, i, n):
        return (np.asarray(i) + 1) * self.positions // n - 1

    def mask_mod(self, q_idx, kv_idx, seqlen_q, seqlen_kv):
        return np.asarray(kv_idx) <= self._pos(q_idx, seqlen_q) + (seqlen_kv - self.positions)

    def live_pairs(self, seqlen_q, seqlen_kv):
        off = seqlen_kv - self.positions
        seen = np.clip(self._pos(np.arange(seqlen_q, dtype=np.int64), seqlen_q) + off + 1, 0, seqlen_kv)
        return int(seen.sum())

    def row_tiles(self, q_lo, q_hi, complete, seqlen_q, seqlen_kv, block_n):
        off = seqlen_kv - self.positions
        last = np.minimum(self._pos(q_hi, seqlen_q) + off, seqlen_kv - 1)
        nonempty = np.where(last >= 0, last // block_n + 1, 0)
        m = np.minimum(self._pos(q_lo, seqlen_q) + off + 1, seqlen_kv)
        full = np.where(complete & (m > 0), np.maximum(m, 0) // block_n, 0)
        return full, nonempty

    def _first_row(self, j, seqlen_q, seqlen_kv):
        """The first row that sees key j: the smallest i with pos(i) >= j - off."""
        need = np.asarray(j) - (seqlen_kv - self.positions) + 1
        return np.maximum(-(-need * seqlen_q // self.positions) - 1, 0)

    def col_tiles(self, k_lo, k_hi, complete, seqlen_q, seqlen_kv, block_m):
        n_q = _cdiv(seqlen_q, block_m)
        first = self._first_row(k_lo, seqlen_q, seqlen_kv)
        nonempty = np.where(first <= seqlen_q - 1, n_q - first // block_m, 0)
        r0 = _cdiv(self._first_row(k_hi, seqlen_q, seqlen_kv), block_m)
        full = np.where(complete, np.maximum(n_q - r0, 0), 0)
        return full, nonempty


def _sum_min(a, b, c, cap):
    """sum_{i=a}^{b} min(cap, i + c) for integer arrays (0 when b < a)."""
    a, b = np.asarray(a), np.asarray(b)
    n = np.maximum(b - a + 1, 0)
    t = np.clip(cap - c, a - 1, b)  # last i with i + c <= cap
    m = np.maximum(t - a + 1, 0)  # terms below the cap: i + c for i = a .. t
    return np.where(n > 0, (a + c + t + c) * m // 2 + (n - m) * cap, 0)


def _sum_max0(a, b, c):
    """sum_{i=a}^{b} max(0, i + c) for integer arrays (0 when b < a)."""
    a, b = np.asarray(a), np.asarray(b)
    lo = np.maximum(a, -c)  # first i with i + c >= 0
    m = np.maximum(b - lo + 1, 0)
    return np.where(m > 0, (lo + c + b + c) * m // 2, 0)


class WindowMask(Mask):
    """Sliding window, FlashAttention's `window_size=(left, right)`: query i sees key j iff
    i' - left <= j <= i' + right with i' = i + seqlen_kv - seqlen_q (bottom-right aligned);
    -1 leaves a side unbounded. (-1, 0) is causal, (-1, -1) dense."""

    def __init__(self, left: int = -1, right: int = -1):
        if left < -1 or right < -1:
            raise ValueError(f"{left=}, {right=}: a side is -1 (unbounded) or >= 0")
        self.left, self.right = int(left), int(right)
        self.name = f"swa_l{left}_r{right}"
        self.description = f"sliding window: keys i-{left}..i+{right} (-1 = unbounded)"

    def _bounds(self, n_keys, n_rows):
        big = n_keys + n_rows + 1  # 'unbounded' as a window wider than the problem
        return (self.left if self.left >= 0 else big), (self.right if self.right >= 0 else big)

    def for_lengths(self, seqlen_q, seqlen_kv) -> Mask:
        """FlashAttention's normalization (FA3's flash_api.cpp; FA2's uses seqlen_k for both): a left
        side >= seqlen_kv - 1 or a right side >= seqlen_q - 1 already reaches every key, so it is
        unbounded (-1); then (-1, -1) is dense and (-1, 0) causal, and the kernel runs that mask with
        its own tiles. The same pairs get the same price whatever the mask is called."""
        if type(self) not in (WindowMask, ElasticWindowMask):
            return self
        left, right = self._bounds(seqlen_kv, seqlen_q)  # an elastic span at these lengths; -1 as 'wider'
        left = -1 if left >= seqlen_kv - 1 else left
        right = -1 if right >= seqlen_q - 1 else right
        if (left, right) in ((-1, -1), (-1, 0)) or type(self) is WindowMask and (left, right) != (self.left, self.right):
            return window_mask((left, right), False)
        return self

    def mask_mod(self, q_idx, kv_idx, seqlen_q, seqlen_kv):
        left, right = self._bounds(seqlen_kv, seqlen_q)
        i = np.asarray(q_idx) + (seqlen_kv - seqlen_q)
        kv = np.asarray(kv_idx)
        return (kv >= i - left) & (kv <= i + right)

    def live_pairs(self, seqlen_q, seqlen_kv):
        left, right = self._bounds(seqlen_kv, seqlen_q)
        off = np.asarray(seqlen_kv) - np.asarray(seqlen_q)
        # rows with a non-empty window: i + off + right >= 0 and i + off - left <= L_kv - 1
        a = np.maximum(0, -off - right)
        b = np.minimum(np.asarray(seqlen_q) - 1, np.asarray(seqlen_kv) - 1 - off + left)
        hi = _sum_min(a, b, off + right, np.asarray(seqlen_kv) - 1)
        lo = _sum_max0(a, b, off - left)
        out = np.where(b >= a, hi - lo + (b - a + 1), 0)
        return int(out) if out.ndim == 0 else out

    @staticmethod
    def _rows(lo_row, hi_row, complete, n_rows, n_keys, left, right, block, ragged_ok=False):
        """(full, non-empty) key tiles of rows lo_row..hi_row of a window mask (rows n_rows, keys n_keys).
        `ragged_ok`: the 'keys' are query rows (the transposed view), so a ragged last tile of them
        is full when its in-bounds entries are all seen."""
        off = n_keys - n_rows
        lo_row, hi_row = np.asarray(lo_row), np.asarray(hi_row)
        a = np.maximum(lo_row, -off - right)  # first row with a non-empty window
        b = np.minimum(hi_row, n_keys - 1 - off + left)  # last one
        lo_u = np.maximum(0, a + off - left)
        hi_u = np.minimum(n_keys - 1, b + off + right)
        nonempty = np.where((a <= b) & (hi_u >= lo_u), hi_u // block - lo_u // block + 1, 0)
        # full: every row sees the whole tile c: c*B >= hi_row + off - left and
        # c*B + B - 1 <= min(lo_row + off + right, n_keys - 1)
        c_lo = np.maximum(0, -(-(hi_row + off - left) // block))
        reach = lo_row + off + right  # the first row's last key
        c_hi = (np.minimum(reach, n_keys - 1) + 1) // block - 1
        if ragged_ok:  # reaching the last entry covers the ragged last tile too
            c_hi = np.where(reach >= n_keys - 1, _cdiv(n_keys, block) - 1, c_hi)
        full = np.where(complete, np.maximum(c_hi - c_lo + 1, 0), 0)
        return full, nonempty

    def row_tiles(self, q_lo, q_hi, complete, seqlen_q, seqlen_kv, block_n):
        left, right = self._bounds(seqlen_kv, seqlen_q)
        return self._rows(q_lo, q_hi, complete, seqlen_q, seqlen_kv, left, right, block_n)

    def live_keys(self, seqlen_q, seqlen_kv):
        # the union of the windows of all rows is one interval (windows slide by one key per row)
        left, right = self._bounds(seqlen_kv, seqlen_q)
        off = seqlen_kv - seqlen_q
        a, b = max(0, -off - right), min(seqlen_q - 1, seqlen_kv - 1 - off + left)
        return max(0, min(seqlen_kv - 1, b + off + right) - max(0, a + off - left) + 1) if a <= b else 0

    def col_tiles(self, k_lo, k_hi, complete, seqlen_q, seqlen_kv, block_m):
        # the transposed mask is a window mask too: key j sees queries i with
        # j - off - right <= i <= j - off + left (rows and keys swap, so do left and right)
        left, right = self._bounds(seqlen_kv, seqlen_q)
        return self._rows(k_lo, k_hi, complete, seqlen_kv, seqlen_q, right, left, block_m, ragged_ok=True)


class IntervalMask(WindowMask):
    """A sliding window whose rows' keys are intervals (and, with sink tokens, a second interval
    [0, sink)), optionally cut by a grouping of the keys (`grouped`: a query sees only keys of its own
    group, `_group(x)` -> (start, end)). The tile counts of every such mask come from the per-row
    intervals (`_intervals`, `_tiles`): LocalMask (FlashAttention's sinks and chunks) and SegmentMask
    (segments of any lengths) are the two groupings.

    With a grouping a row's keys are one interval whose ends are monotone in the row (the union of a
    tile's rows is [lo(first), hi(last)], the intersection [lo(last), hi(first)]); rows with no key are
    found by evaluating every row (O(L), never O(L^2))."""
    sink = 0  # keys 0 .. sink - 1 every query also sees
    grouped = False  # keys grouped (chunks, segments): `_group` says each key's group
    max_tokens = 1 << 21  # sinks, chunks and segments are counted per row: about a second at 2^21 tokens
    max_tokens_why = "sink tokens, chunks and segments are counted row by row; 2^21"

    def _group(self, x):
        """(start, end) key coordinates of the group holding key coordinate x (arrays)."""
        raise NotImplementedError

    # -- per-row key intervals (rows: queries, or keys for the transposed view) -------------
    def _intervals(self, rows, n_rows, n_keys, transposed):
        """(lo, hi) of each row's window part (empty when lo > hi), and the end of its sink part
        [0, sink_hi] (empty when sink_hi < 0), in the other side's coordinates."""
        left, right = self._bounds(max(n_keys, n_rows), min(n_keys, n_rows))
        rows = np.asarray(rows)
        if not transposed:  # row = query i, keys j: i' - left <= j <= i' + right
            off = n_keys - n_rows
            c = rows + off
            lo, hi = c - left, c + right
            if self.grouped:
                start, end = self._group(c)
                lo, hi = np.maximum(lo, start), np.minimum(hi, end)
            sink_hi = np.where(self.sink > 0, np.minimum(self.sink - 1, c + right), -1)
        else:  # row = key j, 'keys' = queries i with i' = i + off: j - right <= i' <= j + left
            off = n_rows - n_keys  # the forward's seqlen_kv - seqlen_q
            lo, hi = rows - right - off, rows + left - off
            if self.grouped:
                start, end = self._group(rows)
                lo, hi = np.maximum(lo, start - off), np.minimum(hi, end - off)
            # a sink key j < sink is seen by every query with i' >= j - right
            hi = np.where(rows < self.sink, n_keys - 1, hi)
            sink_hi = np.full(rows.shape, -1)
        return np.maximum(lo, 0), np.minimum(hi, n_keys - 1), np.minimum(sink_hi, n_keys - 1)

    def _tiles(self, r_lo, r_hi, complete, n_rows, n_keys, block, transposed):
        r_lo, r_hi = np.broadcast_arrays(np.asarray(r_lo), np.asarray(r_hi))
        cache = self.__dict__.setdefault("_row_intervals", {})  # every tile shape reads the same rows
        if (n_rows, n_keys, transposed) not in cache:
            lo_all, hi_all, sink_all = self._intervals(np.arange(n_rows), n_rows, n_keys, transposed)
            cache[n_rows, n_keys, transposed] = lo_all, hi_all, sink_all, np.flatnonzero(hi_all >= lo_all)
        lo_all, hi_all, sink_all, nz = cache[n_rows, n_keys, transposed]

        def span(lo_r, hi_r):
            """Rows lo_r..hi_r whose intervals have monotone ends: (any non-empty row, first tile,
            last tile of their union, all rows non-empty)."""
            i0 = np.searchsorted(nz, lo_r, side="left")
            i1 = np.searchsorted(nz, hi_r, side="right") - 1
            any_ = (i0 <= i1) & (i0 < len(nz)) & (lo_r <= hi_r)
            last = max(len(nz) - 1, 0)
            a = nz[np.clip(i0, 0, last)] if len(nz) else lo_r
            b = nz[np.clip(i1, 0, last)] if len(nz) else hi_r
            return any_, lo_all[a] // block, hi_all[b] // block, any_ & (i1 - i0 == hi_r - lo_r)

        # transposed with sinks: sink keys see every later query, so their intervals end at the last
        # query: the ends are monotone within the sink keys and within the others, not across
        split = np.clip(r_lo, self.sink, None) if (transposed and self.sink) else r_lo
        any_w, t0, t1, all_w = span(split, r_hi)
        nonempty = np.where(any_w, t1 - t0 + 1, 0)
        if transposed and self.sink:
            any_s, s0, s1, all_s = span(r_lo, np.minimum(r_hi, self.sink - 1))
            both = any_w & any_s
            overlap = np.where(both, np.maximum(np.minimum(t1, s1) - np.maximum(t0, s0) + 1, 0), 0)
            nonempty = nonempty + np.where(any_s, s1 - s0 + 1, 0) - overlap
            all_w = np.where(split > r_hi, all_s, np.where(split > r_lo, all_s & all_w, all_w))
        # full: all rows' intervals cover the tile: [lo(last row), min over rows of hi]
        f_lo = -(-lo_all[r_hi] // block)
        reach = np.minimum(hi_all[r_lo], hi_all[np.minimum(split, r_hi)])  # capped at n_keys - 1
        f_hi = (reach + 1) // block - 1
        if transposed:  # the 'keys' are query rows: reaching the last one covers a ragged last tile
            f_hi = np.where(reach >= n_keys - 1, _cdiv(n_keys, block) - 1, f_hi)
        full = np.where(complete & all_w, np.maximum(f_hi - f_lo + 1, 0), 0)
        if self.sink and not transposed:
            s_hi = sink_all[r_hi]  # the sink part grows with the row: the last row's is the union
            s_t = np.where(s_hi >= 0, s_hi // block + 1, 0)  # sink tiles 0 .. s_hi // block
            overlap = np.where(any_w & (s_t > 0), np.maximum(np.minimum(t1, s_t - 1) - t0 + 1, 0), 0)
            nonempty = nonempty + s_t - overlap
            # a complete tile c is full when every row sees all its keys: c1 <= i'+right for the first
            # row, and (c1 < sink, or the window reaches down to the tile or to the sink) for the last
            left, right = self._bounds(n_keys, n_rows)
            off = n_keys - n_rows
            c_max = (np.minimum(r_lo + off + right, n_keys - 1) + 1) // block - 1
            reach = r_hi + off - left  # the last row's window starts here
            prefix = np.minimum(self.sink // block - 1, c_max)  # tiles wholly inside the sink
            suffix_lo = np.where(reach <= self.sink, 0, np.maximum(-(-reach // block), 0))
            n_full = np.maximum(prefix + 1, 0) + np.maximum(c_max - np.maximum(suffix_lo, prefix + 1) + 1, 0)
            full = np.where(complete, np.minimum(n_full, np.maximum(c_max + 1, 0)), 0)
        return full, nonempty

    def row_tiles(self, q_lo, q_hi, complete, seqlen_q, seqlen_kv, block_n):
        return self._tiles(q_lo, q_hi, complete, seqlen_q, seqlen_kv, block_n, transposed=False)

    def col_tiles(self, k_lo, k_hi, complete, seqlen_q, seqlen_kv, block_m):
        return self._tiles(k_lo, k_hi, complete, seqlen_kv, seqlen_q, block_m, transposed=True)

    def live_pairs(self, seqlen_q, seqlen_kv):
        lo, hi, sink_hi = self._intervals(np.arange(seqlen_q), seqlen_q, seqlen_kv, transposed=False)
        window = np.maximum(hi - lo + 1, 0)
        # sink keys 0 .. sink_hi not already in the window
        extra = np.where(sink_hi >= 0, np.maximum(np.minimum(sink_hi, lo - 1) + 1, 0), 0)
        extra = np.where(hi >= lo, extra, np.maximum(sink_hi + 1, 0))
        return int(window.sum() + extra.sum())

    def live_keys(self, seqlen_q, seqlen_kv):
        lo, hi, _ = self._intervals(np.arange(seqlen_kv), seqlen_kv, seqlen_q, transposed=True)
        return int((hi >= lo).sum())


class LocalMask(IntervalMask):
    """A sliding window with FlashAttention's extras: `sink` tokens every query also sees (keys
    j < sink, still capped by the right side: sink_token_length) or an `attention_chunk` C (a query
    sees only keys of its own chunk, j div C == i' div C, AND the window). Not both at once.

    Tiles come from per-row key intervals: with chunks a row's keys are one interval whose ends are
    monotone in the row (the union of a tile's rows is [lo(first), hi(last)], the intersection
    [lo(last), hi(first)]); rows with no key are found by evaluating every row (O(L), never O(L^2)).
    With sinks a row's keys are two intervals, [0, sink) and the window, counted as two tile ranges.
    """

    def __init__(self, left: int = -1, right: int = -1, sink: int = 0, chunk: int = 0):
        super().__init__(left, right)
        if sink < 0 or chunk < 0:
            raise ValueError(f"{sink=}, {chunk=} must be >= 0")
        if sink and chunk:
            raise ValueError("sink tokens and attention chunks together are not modeled")
        self.sink, self.chunk = int(sink), int(chunk)
        self.grouped = self.chunk > 0
        self.name += (f"_sink{sink}" if sink else "") + (f"_chunk{chunk}" if chunk else "")
        self.description += (f", {sink} sink tokens" if sink else "") + (f", chunks of {chunk}" if chunk else "")

    def for_lengths(self, seqlen_q, seqlen_kv) -> Mask:
        """A chunk holding every key (and every query: seqlen_q <= seqlen_kv) is no chunk: the window."""
        if type(self) is LocalMask and self.chunk >= seqlen_kv and not self.sink and seqlen_q <= seqlen_kv:
            return WindowMask(self.left, self.right).for_lengths(seqlen_q, seqlen_kv)
        return self

    def _group(self, x):
        """(start, end) key coordinates of the chunk holding key coordinate x (arrays)."""
        start = np.asarray(x) // self.chunk * self.chunk
        return start, start + self.chunk - 1

    def mask_mod(self, q_idx, kv_idx, seqlen_q, seqlen_kv):
        left, right = self._bounds(seqlen_kv, seqlen_q)
        i = np.asarray(q_idx) + (seqlen_kv - seqlen_q)
        kv = np.asarray(kv_idx)
        live = (kv <= i + right) & ((kv >= i - left) | (kv < self.sink))
        if self.chunk:
            live &= self._group(kv)[0] == self._group(i)[0]
        return live

class SegmentMask(IntervalMask):
    """Block-diagonal attention over segments of the key axis (region / identity / group attention,
    packed documents): a query sees keys of its own segment only, optionally also within a window
    and causal. `sizes` are the segment lengths (summing to seqlen_kv); query i belongs to the
    segment of its bottom-right aligned position i'."""

    def __init__(self, sizes, left: int = -1, right: int = -1):
        sizes = tuple(int(x) for x in sizes)
        if not sizes or min(sizes) < 1:
            raise ValueError(f"{sizes=}: positive segment lengths")
        super().__init__(left, right)
        self.grouped = True
        self.sizes = sizes
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.ends = np.cumsum(sizes) - 1
        n = len(sizes)
        self.name = (f"segment_{n}x{sizes[0]}" if len(set(sizes)) == 1 else f"segment_{n}_{min(sizes)}-{max(sizes)}") \
            + (f"_l{left}_r{right}" if (left, right) != (-1, -1) else "")
        self.description = f"block-diagonal over {n} segments" + ("" if (left, right) == (-1, -1) else ", windowed")

    def _group(self, x):
        x = np.asarray(x)
        idx = np.clip(np.searchsorted(self.starts, x, side="right") - 1, 0, len(self.sizes) - 1)
        start, end = self.starts[idx], self.ends[idx]
        outside = (x < 0) | (x > self.ends[-1])  # no segment: an empty group
        return np.where(outside, x + 1, start), np.where(outside, x, end)

    def mask_mod(self, q_idx, kv_idx, seqlen_q, seqlen_kv):
        left, right = self._bounds(seqlen_kv, seqlen_q)
        i = np.asarray(q_idx) + (seqlen_kv - seqlen_q)
        kv = np.asarray(kv_idx)
        inside = (i >= 0) & (i <= self.ends[-1])  # a query position outside every segment sees nothing
        return inside & (kv <= i + right) & (kv >= i - left) & (self._group(kv)[0] == self._group(i)[0])

    def for_lengths(self, seqlen_q, seqlen_kv) -> Mask:
        """One segment spanning the keys (every query inside it: seqlen_q <= seqlen_kv) is the window."""
        if self.sizes == (seqlen_kv,) and seqlen_q <= seqlen_kv:
            return WindowMask(self.left, self.right).for_lengths(seqlen_q, seqlen_kv)
        return self

    def _check(self, seqlen_kv):
        if int(self.ends[-1]) + 1 != seqlen_kv:
            raise AttnsimError(f"segments sum to {int(self.ends[-1]) + 1} tokens; seqlen_kv is {seqlen_kv}: "
                               f"allowed: segment lengths that add up to the sequence")

    def live_pairs(self, seqlen_q, seqlen_kv):
        self._check(seqlen_kv)
        return super().live_pairs(seqlen_q, seqlen_kv)

    def row_tiles(self, q_lo, q_hi, complete, seqlen_q, seqlen_kv, block_n):
        self._check(seqlen_kv)
        return super().row_tiles(q_lo, q_hi, complete, seqlen_q, seqlen_kv, block_n)

    def col_tiles(self, k_lo, k_hi, complete, seqlen_q, seqlen_kv, block_m):
        self._check(seqlen_kv)
        return super().col_tiles(k_lo, k_hi, complete, seqlen_q, seqlen_kv, block_m)


class BlockSelectMask(IntervalMask):
    """Mixture of block attention (MoBA, Lu et al. 2025): keys are cut into blocks of `block_size`;
    each query block attends to `top_k` blocks chosen by a gate — with `causal`, its own block
    (causally) and top_k - 1 earlier ones.

    Which blocks the gate picks is data; how many it picks is not, and the forward's cost per query
    tile depends only on how many (with tiles that divide the block). The model takes a fixed,
    representative choice — the most recent blocks (causal) or the nearest ones (non-causal) — so
    tiles, pairs and the mask are exact for that choice; only the backward's spread of work over
    kv tiles depends on it (totals do not).

    Counted in closed form, never row by row: the rows of a query block share their selection (live
    pairs are sums of arithmetic series), a key block's holders are a run of query blocks, and the
    rows with keys are a suffix whose intervals grow with the row, so a range of rows is read from
    its end rows (_tiles).
    """
    max_tokens = None  # counted per block in closed form (no row-by-row pass)

    def __init__(self, block_size: int, top_k: int = 1, causal: bool = True, density: float | None = None):
        if block_size < 1 or top_k < 1:
            raise ValueError(f"{block_size=}, {top_k=} must be >= 1")
        if density is not None and not 0 < density <= 1:
            raise ValueError(f"{density=} must be in (0, 1]")
        super().__init__(-1, 0 if causal else -1)
        self.block, self.k, self.is_causal = int(block_size), int(top_k), bool(causal)
        self.density = density  # threshold selection: the expected fraction of blocks kept, instead of top_k
        keep = f"d{density:g}" if density is not None else f"k{top_k}"
        self.name = f"moba_b{block_size}_{keep}" + ("_causal" if causal else "")
        self.assumption = ("MoBA: the gate's choice is taken as the most recent blocks (causal) or the nearest; "
                           "only the backward's spread over kv tiles depends on which")
        self.description = f"top-{top_k} blocks of {block_size} keys per query block"

    def _blocks_kept(self, n_keys):
        """Blocks each query block keeps over `n_keys` keys: top_k, or under threshold selection the
        expected density x number of blocks (at least 1). A function of the lengths: the mask never changes."""
        if self.density is not None:
            return max(1, int(round(self.density * -(-n_keys // self.block))))
        return self.k

    def _first_block(self, b, n_blocks, k):
        """The first selected block of query block b (the selection is k contiguous blocks)."""
        if self.is_causal:
            return np.maximum(b - k + 1, 0)
        return np.clip(b - (k - 1) // 2, 0, np.maximum(n_blocks - k, 0))

    def mask_mod(self, q_idx, kv_idx, seqlen_q, seqlen_kv):
        i = np.asarray(q_idx) + (seqlen_kv - seqlen_q)
        kv = np.asarray(kv_idx)
        n_blocks, k = -(-seqlen_kv // self.block), self._blocks_kept(seqlen_kv)
        first = self._first_block(i // self.block, n_blocks, k)
        live = (i >= 0) & (kv // self.block >= first) & (kv // self.block < first + k)
        return live & (kv <= i) if self.is_causal else live

    def _intervals(self, rows, n_rows, n_keys, transposed):
        rows, B = np.asarray(rows), self.block
        k = self._blocks_kept(n_rows if transposed else n_keys)  # the key axis' length
        if not transposed:  # query i -> keys of its selected blocks (causally capped)
            c = rows + n_keys - n_rows
            n_blocks = -(-n_keys // B)
            first = self._first_block(np.maximum(c, 0) // B, n_blocks, k)
            lo, hi = first * B, (first + k) * B - 1
            if self.is_causal:
                hi = np.minimum(hi, c)
            hi = np.where(c < 0, -1, hi)
        else:  # key j -> queries (coordinates i = i' - off) whose selection holds j's block
            off = n_rows - n_keys
            b_min, b_max = self._holders(rows // B, -(-n_rows // B), k)
            lo, hi = b_min * B - off, (b_max + 1) * B - 1 - off
            if self.is_causal:
                lo = np.maximum(lo, rows - off)
            hi = np.where(b_max < b_min, lo - 1, hi)
        return np.maximum(lo, 0), np.minimum(hi, n_keys - 1), np.full(rows.shape, -1)

    def _holders(self, kb, n_blocks, k):
        """(first, last) query block whose selection holds key block kb: selections are k contiguous
        blocks from _first_block, which grows by at most one block per query block."""
        if self.is_causal:  # block b selects max(b - k + 1, 0) .. max(b, k - 1)
            return np.where(kb <= k - 1, 0, kb), np.minimum(kb + k - 1, n_blocks - 1)
        h, top = (k - 1) // 2, max(n_blocks - k, 0)  # block b selects from clip(b - h, 0, top)
        return (np.where(kb <= k - 1, 0, kb - k + 1 + h),
                np.where(kb >= top, n_blocks - 1, np.minimum(kb + h, n_blocks - 1)))

    def _first_live(self, n_rows, n_keys, transposed):
        """The first row with a key; every later row has some. Queries: those at coordinate >= 0. Keys:
        those whose last holder block reaches query coordinate 0 (the holders grow with the key)."""
        off, B = n_rows - n_keys, self.block
        if not transposed:  # query i is at coordinate i - off
            return min(max(off, 0), n_rows)
        if off <= 0:
            return 0
        n_blocks, bq, k = -(-n_rows // B), off // B, self._blocks_kept(n_rows)  # bq: query coordinate 0's block
        kb = bq - k + 1 if self.is_causal else min(bq - (k - 1) // 2, max(n_blocks - k, 0))
        return min(max(kb, 0) * B, n_rows)

    def _tiles(self, r_lo, r_hi, complete, n_rows, n_keys, block, transposed):
        """LocalMask._tiles (no sinks) from the rows at a range's ends instead of every row: the rows
        with keys are a suffix (_first_live) and both ends of their intervals grow with the row."""
        r_lo, r_hi = np.broadcast_arrays(np.asarray(r_lo), np.asarray(r_hi))
        z = self._first_live(n_rows, n_keys, transposed)
        n_live = n_rows - z
        i0 = np.clip(r_lo - z, 0, n_live)  # live rows before r_lo
        i1 = np.clip(r_hi - z + 1, 0, n_live) - 1  # the last live row <= r_hi, as a live-row index
        any_ = (i0 <= i1) & (i0 < n_live) & (r_lo <= r_hi)
        a = z + np.clip(i0, 0, max(n_live - 1, 0)) if n_live else r_lo
        b = z + np.clip(i1, 0, max(n_live - 1, 0)) if n_live else r_hi

        def ends(rows):
            lo, hi, _ = self._intervals(rows, n_rows, n_keys, transposed)
            return lo, hi
        nonempty = np.where(any_, ends(b)[1] // block - ends(a)[0] // block + 1, 0)
        # full: every row of the range sees the tile: [lo(last row), hi(first row)]
        all_ = any_ & (i1 - i0 == r_hi - r_lo)
        f_lo = -(-ends(r_hi)[0] // block)
        reach = ends(np.minimum(r_lo, r_hi))[1]
        f_hi = (reach + 1) // block - 1
        if transposed:  # the 'keys' are query rows: reaching the last one covers a ragged last tile
            f_hi = np.where(reach >= n_keys - 1, -(-n_keys // block) - 1, f_hi)
        full = np.where(complete & all_, np.maximum(f_hi - f_lo + 1, 0), 0)
        return full, nonempty

    def live_pairs(self, seqlen_q, seqlen_kv):
        B, k, off = self.block, self._blocks_kept(seqlen_kv), seqlen_kv - seqlen_q
        n_blocks, c0 = -(-seqlen_kv // B), max(off, 0)  # query coordinates c0 .. L_kv - 1 have keys

        def rows_below(x):  # query coordinates with keys below x
            return min(max(x, c0), seqlen_kv) - c0
        if not self.is_causal:  # a row sees k whole blocks, or the last k blocks (L_kv - top * B keys)
            if n_blocks <= k:
                return seqlen_kv * rows_below(seqlen_kv)
            top = n_blocks - k
            edge = (top + (k - 1) // 2) * B  # the query blocks from here on select the last k
            return k * B * rows_below(edge) + (seqlen_kv - top * B) * (rows_below(seqlen_kv) - rows_below(edge))

        def dropped(x):  # sum over c < x of max(c // B - k + 1, 0): whole blocks, then the partial one
            q, rem = divmod(x, B)
            m = max(q - k, 0)
            return B * m * (m + 1) // 2 + rem * max(q - k + 1, 0)
        # causal: coordinate c sees keys max(c // B - k + 1, 0) * B .. c
        return (c0 + 1 + seqlen_kv) * (seqlen_kv - c0) // 2 - B * (dropped(seqlen_kv) - dropped(c0))

    def live_keys(self, seqlen_q, seqlen_kv):
        return seqlen_kv - self._first_live(seqlen_kv, seqlen_q, transposed=True)

    def adjust_tile(self, tile, backward=False):
        """Tiles that divide the block: a selected block is then whole tiles (MoBA runs its blocks
        through FlashAttention's varlen kernel)."""

        def fit(size):
            t = 1 << (int(size).bit_length() - 1)
            while self.block % t:
                t //= 2
            return t
        return Tile(fit(tile.block_m), fit(tile.block_n), tile.num_warps, tile.stages)

    def extra_ops(self, w):
        """The gate: mean-pool K per block, score every query against every block's mean (a GEMM per
        head), pick the top k per query block. Returns (ops, useful Work)."""
        s, d = w.dtype_bytes, w.head_dim_qk
        n_blocks, k = -(-w.seqlen_kv // self.block), self._blocks_kept(w.seqlen_kv)
        # decode keeps the block means with the cache: a step pools only the newest block
        pooled_tokens = min(self.block, w.seqlen_kv) if w.phase == "decode" else w.seqlen_kv
        kv_heads_tokens = w.batch * w.heads_kv * pooled_tokens
        pool = Pointwise("moba_pool", read=kv_heads_tokens * d * s, write=w.batch * w.heads_kv * n_blocks * d * s,
                         fp32_ops=float(kv_heads_tokens * d))
        score = Gemm("moba_gate_gemm", w.seqlen_q, n_blocks, d, w.batch * w.heads_q, weight=False, b_shared=False,
                     out_dtype="fp32")
        scores = w.batch * w.heads_q * w.seqlen_q * n_blocks
        topk = Pointwise("moba_topk", read=scores * 4, write=w.batch * w.heads_q * -(-w.seqlen_q // self.block)
                         * k * 4, fp32_ops=float(scores) * max(1, k.bit_length()))
        work = Work(tensor=[(2.0 * w.batch * w.heads_q * w.seqlen_q * n_blocks * d, w.dtype, "fp32")])
        return [pool, score, topk], work


class BoxBlockSelectMask(BlockSelectMask):
    """VMoBA: MoBA whose blocks are boxes of a token grid. In box-major token order (the blocks'
    tokens made contiguous, as a token permutation does) it is MoBA with blocks of prod(box) tokens;
    the permutation of Q, K, V and O is priced as for tiled neighborhood attention."""

    def __init__(self, token_shape, box, top_k=1, causal=False, density=None):
        shape = tuple(int(x) for x in token_shape)
        box = tuple(int(x) for x in box) * (len(shape) if len(box) == 1 else 1)
        super().__init__(math.prod(box), top_k, causal, density)
        self.shape, self.box = shape, box
        self.name = "vmoba_" + "x".join(map(str, box)) + self.name[len(f"moba_b{self.block}"):]

    def live_pairs(self, seqlen_q, seqlen_kv):
        if seqlen_kv != math.prod(self.shape) or seqlen_q != seqlen_kv:
            raise AttnsimError(f"token_shape {'x'.join(map(str, self.shape))} holds {math.prod(self.shape)} tokens; "
                               f"got seqlen {seqlen_q} -> {seqlen_kv}")
        return super().live_pairs(seqlen_q, seqlen_kv)

    def extra_ops(self, w):
        gate, work = super().extra_ops(w)
        if len(self.shape) == 1:
            return gate, work
        return permutation_ops(w) + gate, work


def permutation_ops(w) -> list:
    """A token permutation into box-major order (NATTEN's token_permute) and back: Q, K, V are copied
    before the kernel and O after it (train: dO in, dQ, dK, dV back too). Memory-bound copies, no
    useful work.

    A copy that gathers (permute: strided reads, contiguous writes) or scatters (unpermute): NATTEN's
    tensors are (batch, *tokens, heads, head_dim), heads last, and its fused kernels permute with
    flip_tiled_dims=True, so the innermost mode of the box-major order is the box's first token axis
    (SHI-Labs/NATTEN src/natten/token_permute/torch_impl.py: `batch, *token_layout, heads, dim =
    tensor.shape`, the flipped permutation; token_permute/frontend.py: flip_tiled_dims defaults to True;
    backends/blackwell_fna.py passes True). Consecutive tokens of a box are then a row or a plane apart
    in the source (with dilation, d tokens apart), and what stays contiguous is one token: a run of
    heads x head_dim x dtype bytes per token and tensor (`Pointwise.runs`; the pricer rounds each run
    to the device's fetch granularity)."""
    s = w.dtype_bytes
    q_tok, kv_tok = w.batch * w.seqlen_q, w.batch * w.seqlen_kv
    q_run, o_run = w.heads_q * w.head_dim_qk * s, w.heads_q * w.head_dim_v * s  # one token of Q (dQ), O (dO)
    k_run, v_run = w.heads_kv * w.head_dim_qk * s, w.heads_kv * w.head_dim_v * s  # one token of K (dK), V (dV)
    qkv = ((q_tok, q_run), (kv_tok, k_run), (kv_tok, v_run))
    runs = (qkv, ((q_tok, o_run),)) if w.phase != "train" else (qkv + ((q_tok, o_run),), ((q_tok, o_run),) + qkv)
    moved = tuple(sum(n * run for n, run in r) for r in runs)  # in: Q, K, V (train: + dO); out: O (+ dQ, dK, dV)
    return [Pointwise("token_permute", read=moved[0], write=moved[0], runs=runs[0]),
            Pointwise("token_unpermute", read=moved[1], write=moved[1], runs=runs[1])]


def segment_mask(sizes, window_size=(-1, -1), causal: bool = False) -> Mask:
    """SegmentMask from the variant's parameters; causal caps the window's right side at 0."""
    left, right = window_size
    if causal:
        right = 0 if right < 0 else min(right, 0)
    return SegmentMask(sizes, left, right)


def window_mask(window_size, causal: bool, sink: int = 0, chunk: int = 0) -> Mask:
    """The mask of FlashAttention's (window_size, causal, sink_token_length, attention_chunk)
    arguments: causal caps the right side at 0."""
    left, right = window_size
    if causal:
        right = 0 if right < 0 else min(right, 0)
    if sink and chunk:
        raise AttnsimError(f"sink={sink} with attention_chunk={chunk}: the two together are not modeled; give one")
    if sink or chunk:
        return LocalMask(left, right, sink, chunk)
    if left < 0 and right < 0:
        return DenseMask()
    if left < 0 and right == 0:
        return CausalMask()
    return WindowMask(left, right)


def mask_for(causal: bool) -> Mask:
    """The plain mask: one shared instance each, so its memo serves every prediction."""
    return _CAUSAL if causal else _DENSE


_DENSE, _CAUSAL = DenseMask(), CausalMask()


def tile_rows(mask: Mask, seqlen_q: int, seqlen_kv: int, block_m: int, block_n: int):
    """Per query tile r: (full, partial) live kv-tile counts (arrays, one entry per query tile)."""
    return mask.tile_rows(seqlen_q, seqlen_kv, block_m, block_n)


def tile_cols(mask: Mask, seqlen_q: int, seqlen_kv: int, block_m: int, block_n: int):
    """Per kv tile c: (full, partial) live q-tile counts (arrays, one entry per kv tile)."""
    return mask.tile_cols(seqlen_q, seqlen_kv, block_m, block_n)


def enumerate_tiles(mask: Mask, seqlen_q: int, seqlen_kv: int, block_m: int, block_n: int):
    """(full, partial, empty) tile counts by evaluating mask_mod on every pair: the fallback for
    small arbitrary masks (O(L_q * L_kv) memory)."""
    n_q, n_k = _cdiv(seqlen_q, block_m), _cdiv(seqlen_kv, block_n)
    live = np.zeros((n_q * block_m, n_k * block_n), dtype=bool)
    q = np.arange(seqlen_q)[:, None]
    k = np.arange(seqlen_kv)[None, :]
    live[:seqlen_q, :seqlen_kv] = mask.mask_mod(q, k, seqlen_q, seqlen_kv)
    boxes = live.reshape(n_q, block_m, n_k, block_n).transpose(0, 2, 1, 3).reshape(n_q, n_k, -1)
    empty = int((boxes.sum(-1) == 0).sum())
    live[seqlen_q:, :seqlen_kv] = True  # out-of-bounds query rows never make a tile partial (keys do)
    boxes = live.reshape(n_q, block_m, n_k, block_n).transpose(0, 2, 1, 3).reshape(n_q, n_k, -1)
    full = int((boxes.sum(-1) == block_m * block_n).sum())
    return full, n_q * n_k - full - empty, empty


class OccupancyMask(Mask):
    """Data-dependent sparsity (top-k keys per query, trainable dynamic masks, Sparsifiner, SPT):
    no fixed mask, an occupancy model instead. Each query keeps a fraction `density` of the keys it
    may see (all of them, or its causal prefix) as `clusters` contiguous runs of equal length placed
    uniformly at random, independently per query. `clusters = 1`: one contiguous run per query (the
    most tile-friendly); `clusters` = kept keys: fully scattered (the least).

    Tiles are expectations, rounded: a run of length r starts uniformly in [0, a - r] of a row's a
    allowed keys; it touches a tile [t0, t1] when it starts in [t0 - r + 1, t1] and covers it when it
    starts in [t1 - r + 1, t0]; c runs touch with 1 - (1 - q)^c. A tile of BLOCK_M rows is non-empty
    unless every row misses it, full when every row covers it (rows are independent; past
    EXACT_ROW_PAIRS a tile's rows are taken at its middle row). Tested against Monte-Carlo samples.
    Counted per class of rows, never as a (query tile x kv tile) table: non-causal rows are alike,
    and a causal row is alike at every kv tile away from its runs' edges (_sums). Long runs have long
    edges: the exact rows' table past ROW_TABLE_PAIRS probabilities takes middle rows instead, and a
    middle-row grid past EDGE_PAIRS is refused with the length that fits. live_pairs and live_keys
    sum over the rows in closed form (top_k; a density's rint has none: one pass over the rows).
    """

    def __init__(self, density: float | None = None, clusters: int = 1, causal: bool = False, label: str = "sparse",
                 top_k: int | None = None, select: str = "none", predictor_flops_per_query: float = 0.0):
        if top_k is None and not (density is not None and 0 < density <= 1):
            raise ValueError(f"{density=} must be in (0, 1]")
        if top_k is not None and top_k < 1:
            raise ValueError(f"{top_k=} must be >= 1")
        if clusters < 1:
            raise ValueError(f"{clusters=} must be >= 1")
        if select not in ("none", "scores"):
            raise ValueError(f"{select=}: none or scores")
        self.density, self.top_k = (float(density) if density is not None else None), top_k
        self.clusters, self.is_causal, self.select = int(clusters), bool(causal), select
        self.predictor_flops_per_query = float(predictor_flops_per_query)
        self.assumption = (f"occupancy model: each query keeps its keys in {clusters} run(s) at independent, uniformly "
                           f"random positions (no correlation between neighbouring queries: the tile-unfriendly case); "
                           f"tiles are expectations")
        keep = f"k{top_k}" if top_k is not None else f"p{density:g}"
        self.name = f"{label}_{keep}_c{clusters}" + ("_causal" if causal else "")
        self.description = (f"data-dependent sparsity: {'top-' + str(top_k) + ' keys' if top_k else f'density {density:g}'}"
                            f" per query in {clusters} run(s) placed at random" + (", causal" if causal else ""))

    def _allowed(self, i, seqlen_q, seqlen_kv):
        """Keys query i may see: all, or its causal prefix (bottom-right aligned)."""
        i = np.asarray(i)
        return np.clip(i + seqlen_kv - seqlen_q + 1, 0, seqlen_kv) if self.is_causal else np.full(i.shape, seqlen_kv)

    def _run(self, a):
        """(runs, run length) of a row with `a` allowed keys: density x a keys in min(clusters, kept) runs."""
        if self.top_k is not None:
            kept = np.minimum(self.top_k, a)
        else:
            kept = np.maximum(np.rint(self.density * a), np.where(a > 0, 1, 0))
        c = np.minimum(self.clusters, np.maximum(kept, 1))
        return c, np.ceil(kept / c)

    def mask_mod(self, q_idx, kv_idx, seqlen_q, seqlen_kv):
        raise AttnsimError(f"mask {self.name} is data-dependent: no element predicate, an occupancy model")

    def _kept(self, a):
        """Keys a row with `a` allowed keys keeps (arrays): its c runs of r keys, capped at a."""
        c, r = self._run(a)
        return np.minimum(c * r, a)

    def _top_k_run_keys(self):
        """c x r of a row keeping top_k keys: a row with a allowed keys keeps min(a, this) (a <= top_k:
        min(clusters, a) runs of ceil(a / runs) keys, at least a)."""
        c, r = self._run(np.array([self.top_k]))
        return int(c[0] * r[0])

    CHUNK = 1 << 16  # rows, or (row, kv tile) probabilities, evaluated at once

    @staticmethod
    def _causal_rows(seqlen_q, seqlen_kv):
        """Causal rows with keys see a0 .. seqlen_kv keys, one row each; the z rows before them see none."""
        return max(seqlen_kv - seqlen_q + 1, 1), max(seqlen_q - seqlen_kv, 0)

    def live_pairs(self, seqlen_q, seqlen_kv):
        # the sum over the rows of min(c x r, a): non-causal rows are alike
        if not self.is_causal:
            return seqlen_q * int(self._kept(np.array([seqlen_kv]))[0])
        a0, _ = self._causal_rows(seqlen_q, seqlen_kv)
        if self.top_k is not None:  # sum over a = a0 .. L_kv of min(a, cr)
            cr = self._top_k_run_keys()
            top = min(seqlen_kv, cr)
            below = (a0 + top) * (top - a0 + 1) // 2 if top >= a0 else 0
            return below + cr * max(seqlen_kv - max(a0, cr + 1) + 1, 0)
        return self._density_rows(seqlen_q, seqlen_kv)[0]

    def _density_rows(self, seqlen_q, seqlen_kv):
        """Causal rows under a density: rint(density x a) has no closed sum nor order, so every row, a
        chunk at a time: (the sum of kept keys, every row's kept / allowed keys). Cached: live_pairs and
        live_keys ask for the same lengths."""
        cache = self.__dict__.setdefault("_density_cache", {})
        if (seqlen_q, seqlen_kv) not in cache:
            a0, z = self._causal_rows(seqlen_q, seqlen_kv)
            total, ratios = 0, np.zeros(seqlen_q)  # rows without keys: 0
            for s in range(a0, seqlen_kv + 1, self.CHUNK):
                a = np.arange(s, min(s + self.CHUNK, seqlen_kv + 1))
                kept = self._kept(a)
                total += int(kept.sum())
                ratios[z + s - a0: z + s - a0 + len(a)] = kept / a
            cache.clear()  # one length at a time: the ratios take 8 bytes a row
            cache[seqlen_q, seqlen_kv] = total, ratios
        return cache[seqlen_q, seqlen_kv]

    def _median_fraction(self, seqlen_q, seqlen_kv):
        """The median over the query rows of kept / allowed keys (numpy's: the mean of the two middle
        values when the count is even)."""
        def ratio(a):
            a = np.asarray(a)
            return self._kept(a) / np.maximum(a, 1)
        if not self.is_causal:
            return float(ratio([seqlen_kv])[0])
        a0, z = self._causal_rows(seqlen_q, seqlen_kv)
        n = seqlen_q
        if self.top_k is not None:
            # ascending: z zeros (rows without keys), cr / a for a = L_kv down to cr + 1, then ones
            cr = self._top_k_run_keys()
            n_dec = max(seqlen_kv - max(a0, cr + 1) + 1, 0)

            def at(m):
                if m < z:
                    return 0.0
                return float(ratio([seqlen_kv - (m - z)])[0]) if m - z < n_dec else 1.0
        else:  # density: no order in closed form; every row's, then a partition
            vals = self._density_rows(seqlen_q, seqlen_kv)[1].copy()
            vals.partition([(n - 1) // 2, n // 2])

            def at(m):
                return float(vals[m])
        return at(n // 2) if n % 2 else float(np.mean([at(n // 2 - 1), at(n // 2)]))

    def live_keys(self, seqlen_q, seqlen_kv):
        # expected keys some query keeps: sum over keys of 1 - prod over the queries allowed to see it of
        # (1 - P kept); P kept of an allowed key ~ kept / allowed for its row (the rows' median). Key j is
        # seen by min(L_kv - j, L_q) queries (causal) or L_q: a geometric sum in q = 1 - P kept
        q = 1 - self._median_fraction(seqlen_q, seqlen_kv)
        m, tail = (min(seqlen_kv, seqlen_q), max(seqlen_kv - seqlen_q, 0)) if self.is_causal else (0, seqlen_kv)
        if q == 1 or q == 0:
            geo = float(m) if q == 1 else 0.0
        else:  # q + q^2 + ... + q^m
            geo = q * -np.expm1(m * np.log(q)) / (1 - q)
        unseen = float(geo + tail * q ** seqlen_q)
        whole = math.floor(unseen)  # round L_kv - unseen without adding L_kv's magnitude to its error
        frac = unseen - whole
        drop = 1 if frac > 0.5 else 0 if frac < 0.5 else (seqlen_kv - whole) % 2  # a tie goes to the even
        return seqlen_kv - whole - drop

    def extra_ops(self, w):
        """The selection: 'scores' computes every allowed score first (what top-k needs, a QK^T GEMM
        whose output is written, and a top-k pass); a learned predictor costs its FLOPs per query."""
        ops, work = [], Work()
        bh = w.batch * w.heads_q
        if self.select == "scores":
            ops.append(Gemm("select_scores_gemm", w.seqlen_q, w.seqlen_kv, w.head_dim_qk, bh, weight=False,
                            b_shared=False))
            scores = bh * w.seqlen_q * w.seqlen_kv
            ops.append(Pointwise("select_topk", read=scores * w.dtype_bytes,
                                 write=bh * w.seqlen_q * min(w.seqlen_kv, self.top_k or w.seqlen_kv) * 4,
                                 fp32_ops=float(scores) * 2))
            work = work + Work(tensor=[(2.0 * bh * w.seqlen_q * w.seqlen_kv * w.head_dim_qk, w.dtype, "fp32")])
        if self.predictor_flops_per_query:
            flops = self.predictor_flops_per_query * bh * w.seqlen_q
            ops.append(Matmuls("predictor", flops))
            work = work + Work(tensor=[(flops, w.dtype, "fp32")])
        return ops, (work if ops else None)

    def _terms(self, a, t0, block_n, run=None):
        """(P touch, P cover) of rows with `a` allowed keys (floats) at the kv tiles starting at keys t0
        (1-d arrays of one length); `run`: their (runs, run length) when known."""
        c, r = self._run(a) if run is None else run
        t1 = np.minimum(t0 + block_n, a) - 1  # the tile's allowed keys
        last = np.maximum(a - r, 0)  # a run starts uniformly in [0, a - r]
        starts = last + 1
        # a run touches the tile when it starts in [t0 - r + 1, t1], covers it when in [t1 - r + 1, t0]
        n_touch = np.clip(np.minimum(t1, last) - np.maximum(t0 - r + 1, 0) + 1, 0, None)
        n_cover = np.clip(np.minimum(t0, last) - np.maximum(t1 - r + 1, 0) + 1, 0, None)
        touch = np.where(t1 >= t0, 1 - (1 - n_touch / starts) ** c, 0.0)
        cover = np.zeros(len(touch))
        hit = np.flatnonzero((n_cover > 0) & (t1 - t0 + 1 == block_n))  # elsewhere 1 - (1 - 0)^c = 0
        cover[hit] = 1 - (1 - n_cover[hit] / starts[hit]) ** c[hit]
        return touch, cover

    # beyond this many (row, kv tile) pairs, a tile's rows are taken at its middle row
    EXACT_ROW_PAIRS = 20_000_000
    # work limits (see _sums): probabilities evaluated for one grid's middle rows (past it: refused with
    # the length that fits), and for the table of every row at one tile width (past it: middle rows)
    EDGE_PAIRS = 1_500_000
    ROW_TABLE_PAIRS = 2_500_000

    def _sums(self, lo, hi, complete, seqlen_q, seqlen_kv, block_n, block_m):
        """Expected (full, non-empty) kv tiles of the query-row ranges lo..hi: per range (summed over
        the kv tiles) and per kv tile (summed over the ranges), as (full, non-empty, full, non-empty).
        The same numbers as the (range x kv tile) table of expectations, counted per class of rows:

        * exactly (every row, while ranges x kv tiles <= EXACT_ROW_PAIRS): P(empty) = prod over the
          rows of (1 - P touch), P(full) = prod of P cover; else from each range's middle row.
        * non-causal rows are alike: one row's probabilities at each kv tile serve every range.
        * causal rows: a kv tile whose keys a row sees whole, past its runs' first possible start
          (t0 >= r - 1) and before their last (t0 + B - 1 <= a - r), is touched by B + r - 1 of the
          a - r + 1 starts and covered by r - B + 1: the same at every such tile. So a row's
          probabilities are evaluated at one such tile and at the others, its edges (about (r - 1) / B
          at the start, (r + B) / B at the end), once per tile width for every grid (_row_table); a
          range's tiles where all its rows are alike get one value, spread as a difference array.
          Long runs make long edges: past ROW_TABLE_PAIRS the middle rows are used, and middle rows
          past EDGE_PAIRS are refused with the length that fits."""
        lo, hi = np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)
        comp = np.broadcast_to(np.asarray(complete, dtype=bool), lo.shape)
        n_kv, nrows = -(-seqlen_kv // block_n), hi - lo + 1
        exact = int(nrows.sum()) * n_kv <= self.EXACT_ROW_PAIRS
        if not self.is_causal:
            return self._sums_alike(nrows, comp, seqlen_kv, n_kv, block_n, block_m, exact)
        off = seqlen_kv - seqlen_q
        if exact:  # rows lo..hi see a = lo + off + 1 .. hi + off + 1 keys, the rows before -off none
            first = np.maximum(lo, -off)
            a0, a1 = first + off + 1, hi + off + 1
            live = a1 >= a0
            if not live.any():
                return np.zeros(len(lo)), np.zeros(len(lo)), np.zeros(n_kv), np.zeros(n_kv)
            table = self._row_table(int(a0[live].min()), int(a1[live].max()), block_n)
            if table is not None:  # a row without keys makes its range's tiles not full
                return self._sums_table(table, a0, a1, comp & (first == lo), n_kv, block_n)
        mid = np.clip((lo + hi) // 2 + off + 1, 0, seqlen_kv)
        plan = self._plan(mid, mid, block_n)
        if plan[-1] > self.EDGE_PAIRS:
            self._refuse(seqlen_q, seqlen_kv, block_m, block_n, plan[-1])
        return self._sums_middle(plan, comp, nrows, n_kv, block_n, block_m)

    def _plan(self, a0, a1, block_n):
        """Per range whose rows see a0 .. a1 keys (one row per value; none when a1 < 1): (a0, rows with
        keys, has tiles where all rows are alike, those tiles ta..tb, the other tiles [0, e1) and
        [e2, t_end) as e1, e2 and their count, the probabilities they take). r and a - r grow with a,
        so the alike tiles' ends come from the range's first and last rows."""
        a0, a1 = np.maximum(a0, 1), np.asarray(a1)
        n_cls = np.maximum(a1 - a0 + 1, 0)
        live = n_cls > 0
        r1 = self._run(a1.astype(float))[1].astype(np.int64)
        r0 = self._run(a0.astype(float))[1].astype(np.int64)
        t_end = np.where(live, -(-a1 // block_n), 0)  # tiles past every row's keys: never touched
        ta = -(-np.maximum(r1 - 1, 0) // block_n)  # t0 >= r - 1 for every row
        tb = (a0 - r0 - block_n + 1) // block_n  # t0 + B - 1 <= a - r for every row
        inner = live & (ta <= tb)
        e1 = np.where(inner, ta, t_end)
        e2 = np.where(inner, tb + 1, t_end)
        n_edge = e1 + t_end - e2
        return a0, n_cls, inner, ta, tb, e1, e2, n_edge, int((n_cls * (n_edge + inner)).sum())

    def _row_table(self, a_lo, a_hi, block_n):
        """Causal rows seeing a = a_lo .. a_hi keys (one row each) at tile width block_n: the tiles where
        a row is alike, ta..tb (none: tb = ta - 1), with its log P(miss) and log P(cover) there; the
        tiles it may touch, < t_end; its log-probabilities at its other tiles ([0, ta), then tb + 1 ..
        t_end - 1), flat from offset `at`, and those tiles. Cached (the grids of one tile width share
        it); None past ROW_TABLE_PAIRS probabilities."""
        cache = self.__dict__.setdefault("_row_tables", {})
        key = (a_lo, a_hi, block_n)
        if key not in cache:
            a = np.arange(a_lo, a_hi + 1, dtype=np.int64)
            af = a.astype(float)
            runs, run_len = self._run(af)
            r = run_len.astype(np.int64)
            t_end = -(-a // block_n)
            ta = -(-np.maximum(r - 1, 0) // block_n)
            tb = np.maximum((a - r - block_n + 1) // block_n, ta - 1)
            n_edge = ta + t_end - tb - 1
            cache[key] = None
            if int(n_edge.sum()) + len(a) <= self.ROW_TABLE_PAIRS:
                lm_in, lc_in = np.zeros(len(a)), np.zeros(len(a))
                k = np.flatnonzero(tb >= ta)
                lm_in[k], lc_in[k] = self._logs(*self._terms(af[k], ta[k] * block_n, block_n, (runs[k], run_len[k])))
                at = np.cumsum(n_edge) - n_edge
                e_lm, e_lc = np.zeros(int(n_edge.sum())), np.zeros(int(n_edge.sum()))
                e_t = np.zeros(int(n_edge.sum()), dtype=np.int64)
                for ks in self._chunks(n_edge):
                    rows = np.repeat(ks, n_edge[ks])
                    e = np.arange(len(rows)) - np.repeat(at[ks] - at[ks[0]], n_edge[ks])
                    t = np.where(e < ta[rows], e, tb[rows] + 1 + e - ta[rows])
                    got = self._logs(*self._terms(af[rows], t * block_n, block_n, (runs[rows], run_len[rows])))
                    span = slice(at[ks[0]], at[ks[0]] + len(rows))
                    (e_lm[span], e_lc[span]), e_t[span] = got, t
                cache[key] = (a_lo, ta, tb, t_end, lm_in, lc_in, at, e_lm, e_lc, e_t)
        return cache[key]

    def _chunks(self, per):
        """The indices with per > 0, in consecutive groups of about CHUNK in total (at least one each)."""
        ks = np.flatnonzero(per)
        start = np.cumsum(per[ks]) - per[ks]
        return np.split(ks, np.flatnonzero(np.diff(start // self.CHUNK)) + 1) if len(ks) else []

    @staticmethod
    def _logs(touch, cover):
        """(log P(miss), log P(cover)) of (row, tile) probabilities, as the exact product takes them."""
        with np.errstate(divide="ignore"):
            log_miss = np.log1p(-np.minimum(touch, 1 - 1e-300))
        log_cov = np.full(len(cover), np.log(1e-300))
        hit = np.flatnonzero(cover > 1e-300)
        log_cov[hit] = np.log(cover[hit])
        return log_miss, log_cov

    def _sums_table(self, table, a0, a1, ok, n_kv, block_n):
        """Exact causal sums (see _sums) from the rows' table: at a range's tile t each of its rows is
        alike (ta <= t <= tb: a run of rows, summed from prefix sums), at an edge (the table's entry),
        or past its keys (never touched nor covered)."""
        a_lo, ta_r, tb_r, te_r, lm_in, lc_in, at, e_lm, e_lc, e_t = table
        a0, n_cls, inner, ta, tb, e1, e2, n_edge, _ = self._plan(a0, a1, block_n)
        n, live = len(a0), n_cls > 0
        i0, i1 = np.where(live, a0 - a_lo, 0), np.where(live, np.asarray(a1) - a_lo, -1)  # table rows
        fin = np.isfinite(lm_in)  # a row's alike tiles may be certain hits: log P(miss) = -inf
        sum_m = np.concatenate([[0.0], np.cumsum(np.where(fin, lm_in, 0.0))])
        n_inf = np.concatenate([[0], np.cumsum(~fin)])
        sum_c = np.concatenate([[0.0], np.cumsum(lc_in)])

        def alike(lo, hi):  # sums over table rows lo..hi of their alike log-probabilities
            some = lo <= hi
            lo, hi = np.where(some, lo, 0), np.where(some, hi, -1)
            log_miss = np.where(n_inf[hi + 1] > n_inf[lo], -np.inf, sum_m[hi + 1] - sum_m[lo])
            return log_miss, sum_c[hi + 1] - sum_c[lo]

        rows_f, rows_n = np.zeros(n), np.zeros(n)
        cols_f, cols_n = np.zeros(n_kv + 1), np.zeros(n_kv + 1)
        # the tiles where every row of a range is alike: one value, spread over ta..tb
        k = np.flatnonzero(inner)
        log_miss, log_cov = alike(i0[k], i1[k])
        full, ne = self._exact(log_cov, log_miss, ok[k])
        rows_f[k], rows_n[k] = full * (tb[k] - ta[k] + 1), ne * (tb[k] - ta[k] + 1)
        for col, v in ((cols_f, full), (cols_n, ne)):  # a difference array: + at ta, - past tb
            np.add.at(col, ta[k], v)
            np.add.at(col, tb[k] + 1, -v)
        cols_f, cols_n = np.cumsum(cols_f)[:n_kv], np.cumsum(cols_n)[:n_kv]
        # the other tiles of each range: (range, tile) pairs
        base = np.cumsum(n_edge) - n_edge
        pk = np.repeat(np.arange(n), n_edge)
        pe = np.arange(len(pk)) - base[pk]
        pt = np.where(pe < e1[pk], pe, e2[pk] + pe - e1[pk])
        lo = np.maximum(np.searchsorted(tb_r, pt, side="left"), i0[pk])  # alike: tb >= t and ta <= t
        hi = np.minimum(np.searchsorted(ta_r, pt, side="right") - 1, i1[pk])
        log_miss, log_cov = alike(lo, hi)
        past = np.clip(np.searchsorted(te_r, pt, side="right") - i0[pk], 0, n_cls[pk])  # t_end <= t
        log_cov = log_cov + past * np.log(1e-300)
        # the rows' edge entries: a range's rows' entries are one slice of the table
        ends = np.where(live, at[np.maximum(i1, 0)] + (ta_r[np.maximum(i1, 0)] + te_r[np.maximum(i1, 0)]
                                                        - tb_r[np.maximum(i1, 0)] - 1), 0)
        cnt = np.where(live, ends - at[i0], 0)
        kr = np.repeat(np.arange(n), cnt)
        e = np.arange(len(kr)) - np.repeat(np.cumsum(cnt) - cnt - at[i0], cnt)
        t = e_t[e]
        pair = base[kr] + np.where(t < e1[kr], t, e1[kr] + t - e2[kr])
        log_miss += np.bincount(pair, e_lm[e], len(pk))
        log_cov += np.bincount(pair, e_lc[e], len(pk))
        full, ne = self._exact(log_cov, log_miss, ok[pk])
        rows_f += np.bincount(pk, full, n)
        rows_n += np.bincount(pk, ne, n)
        np.add.at(cols_f, pt, full)
        np.add.at(cols_n, pt, ne)
        return rows_f, rows_n, cols_f, cols_n

    def _refuse(self, seqlen_q, seqlen_kv, block_m, block_n, work):

        def work_at(n, stride):  # the middle rows' probabilities of self-attention over n tokens
            r = np.arange(0, -(-n // block_m), stride, dtype=np.int64) * block_m
            a = (r + np.minimum(r + block_m, n) - 1) // 2 + 1
            return self._plan(a, a, block_n)[-1] * stride
        lo, hi = 1, max(seqlen_q, seqlen_kv)  # the longest that fits, estimated from <= 4096 spread tiles
        while lo < hi:
            n = (lo + hi + 1) // 2
            lo, hi = (n, hi) if work_at(n, max(1, -(-n // block_m) // 4096)) <= self.EDGE_PAIRS else (lo, n - 1)
        unit = 10 ** max(len(str(lo)) - 3, 0)  # rounded down to three digits, then checked exactly
        n = lo // unit * unit
        while n > unit and work_at(n, 1) > self.EDGE_PAIRS:
            n -= unit
        keep = f"top-{self.top_k}" if self.top_k is not None else f"density {self.density:g}"
        got = f"{seqlen_q}" if seqlen_q == seqlen_kv else f"{seqlen_q} queries x {seqlen_kv} keys"
        raise AttnsimError(
            f"the occupancy model of {self.name.split('_')[0]} ({keep} in {self.clusters} run(s), causal) prices "
            f"sequences up to {n} tokens on {block_m}x{block_n} tiles (it evaluates every query tile at each kv "
            f"tile its runs' edges cross: at most {self.EDGE_PAIRS:,}, here {work:,}); got {got}")

    def _sums_alike(self, nrows, comp, seqlen_kv, n_kv, block_n, block_m, exact):
        """Non-causal: every row sees every key, so one row's probabilities serve every range."""
        touch, cover = self._terms(np.full(n_kv, float(seqlen_kv)), np.arange(n_kv) * block_n, block_n)
        if exact:
            log_miss, log_cov = self._logs(touch, cover)
        out = [np.zeros(len(nrows)), np.zeros(len(nrows)), np.zeros(n_kv), np.zeros(n_kv)]
        kinds, which, count = np.unique(nrows * 2 + comp, return_inverse=True, return_counts=True)
        for i, kind in enumerate(kinds.tolist()):  # ranges alike in rows and completeness
            n, ok = kind // 2, bool(kind % 2)
            if exact:
                full, ne = self._exact(n * log_cov, n * log_miss, ok)
            else:
                full, ne = self._middle(touch, cover, n, ok, block_m)
            sel = which == i
            out[0][sel], out[1][sel] = full.sum(), ne.sum()
            out[2] += int(count[i]) * full
            out[3] += int(count[i]) * ne
        return out

    @staticmethod
    def _exact(log_cov, log_miss, ok):
        """(P full, P non-empty) of tiles from the sums over their rows of log P(cover), log P(miss)."""
        full = np.where(ok, np.exp(log_cov), 0.0)
        return np.where(full < 1e-200, 0.0, full), 1 - np.exp(log_miss)

    @staticmethod
    def _middle(touch, cover, nrows, ok, block_m):
        """(P full, P non-empty) of tiles from their middle row's probabilities: their nrows rows
        (block_m, or fewer in a ragged last query tile) cover, and miss."""
        full = np.zeros(len(cover))
        hit = np.flatnonzero(ok & (cover > 0))
        full[hit] = cover[hit] ** np.broadcast_to(nrows, cover.shape)[hit]
        return full, 1 - (1 - touch) ** nrows

    def _sums_middle(self, plan, ok, nrows, n_kv, block_n, block_m):
        """Causal sums (see _sums) from each range's middle row: at one tile where the row is alike (the
        value spread over ta..tb as a difference array), then at each of its other tiles, a chunk of
        ranges at a time."""
        a0, n_cls, inner, ta, tb, e1, e2, n_edge, _ = plan
        n = len(a0)
        rows_f, rows_n = np.zeros(n), np.zeros(n)
        cols_f, cols_n = np.zeros(n_kv + 1), np.zeros(n_kv + 1)
        a_f = a0.astype(float)
        runs, run_len = self._run(a_f)
        for edges in (False, True):
            tiles = n_edge if edges else inner.astype(np.int64)  # tiles per range (its row: n_cls <= 1)
            for ks in self._chunks(n_cls * tiles):
                k_tiles = tiles[ks]
                pk = np.repeat(ks, k_tiles)  # (range, tile) pairs, a range's tiles in order
                pt = ta[pk]
                if edges:
                    pe = np.arange(len(pk)) - np.repeat(np.cumsum(k_tiles) - k_tiles, k_tiles)
                    pt = np.where(pe < e1[pk], pe, e2[pk] + pe - e1[pk])
                touch, cover = self._terms(a_f[pk], pt * block_n, block_n, (runs[pk], run_len[pk]))
                full, ne = self._middle(touch, cover, nrows[pk], ok[pk], block_m)
                if edges:
                    local = np.repeat(np.arange(len(ks)), k_tiles)
                    rows_f[ks] += np.bincount(local, full, len(ks))
                    rows_n[ks] += np.bincount(local, ne, len(ks))
                    np.add.at(cols_f, pt, full)
                    np.add.at(cols_n, pt, ne)
                else:
                    width = tb[pk] - ta[pk] + 1
                    rows_f[pk] += full * width
                    rows_n[pk] += ne * width
                    for col, v in ((cols_f, full), (cols_n, ne)):  # a difference array: + at ta, - past tb
                        np.add.at(col, pt, v)
                        np.add.at(col, tb[pk] + 1, -v)
            if not edges:
                cols_f, cols_n = np.cumsum(cols_f), np.cumsum(cols_n)
        return rows_f, rows_n, cols_f[:n_kv], cols_n[:n_kv]

    @staticmethod
    def _round(x):
        """Integer counts whose running sum tracks the expectations' (no per-entry rounding bias)."""
        c = np.rint(np.cumsum(x)).astype(np.int64)
        return np.diff(c, prepend=0)

    def _grid(self, seqlen_q, seqlen_kv, block_m, block_n, axis):
        key = (seqlen_q, seqlen_kv, block_m, block_n)
        sums = self.__dict__.setdefault("_sums_by_grid", {}).get(key)  # one evaluation serves both axes
        if sums is None:
            r = np.arange(-(-seqlen_q // block_m))
            lo, hi = r * block_m, np.minimum(r * block_m + block_m, seqlen_q) - 1
            # a ragged last query tile may be full: its rows past seqlen_q need no mask (Mask._grid)
            sums = self._sums_by_grid[key] = self._sums(lo, hi, True, seqlen_q, seqlen_kv, block_n, block_m)
        full, ne = sums[:2] if axis == 1 else sums[2:]
        f, n = self._round(full), self._round(ne)
        return f, np.maximum(n - f, 0)

    def tile_rows(self, seqlen_q, seqlen_kv, block_m, block_n):
        return self._cached(("rows", seqlen_q, seqlen_kv, block_m, block_n),
                            lambda: self._grid(seqlen_q, seqlen_kv, block_m, block_n, axis=1))

    def tile_cols(self, seqlen_q, seqlen_kv, block_m, block_n):
        return self._cached(("cols", seqlen_q, seqlen_kv, block_m, block_n),
                            lambda: self._grid(seqlen_q, seqlen_kv, block_m, block_n, axis=0))

    def row_tiles(self, q_lo, q_hi, complete, seqlen_q, seqlen_kv, block_n):
        """Decode: the expected (full, non-empty) tiles of the query rows q_lo..q_hi."""
        lo, hi = np.atleast_1d(q_lo), np.atleast_1d(q_hi)
        comp = np.broadcast_to(complete, lo.shape)
        full, ne, _, _ = self._sums(lo, hi, comp, seqlen_q, seqlen_kv, block_n, int((hi - lo).max()) + 1)
        return self._round(full), self._round(ne)


class ElasticWindowMask(WindowMask):
    """A sliding window whose span scales with the sequence: span = alpha + beta x seqlen_kv keys to
    the left (MoA's elastic rule), capped at 0 to the right when causal, else symmetric."""

    def __init__(self, alpha: int, beta: float = 0.0, causal: bool = True):
        super().__init__(max(int(alpha), 0), 0 if causal else max(int(alpha), 0))
        self.alpha, self.beta, self.is_causal = int(alpha), float(beta), bool(causal)
        self.name = f"span{alpha}" + (f"+{beta:g}N" if beta else "") + ("_causal" if causal else "")

    def _bounds(self, n_keys, n_rows):
        span = int(round(self.alpha + self.beta * n_keys))
        return span, (0 if self.is_causal else span)


class HeadMixMask(Mask):
    """A different mask per group of query heads (mixture of attention spans, MoA): the query heads
    are shared out equally over `masks`, in order. Costs and counts are summed group by group."""

    def __init__(self, masks, name: str = "headmix"):
        self.masks = list(masks)
        self.name = name
        self.description = f"a mask per group of heads ({len(self.masks)} groups)"

    def head_groups(self, heads_q: int) -> list:
        n = len(self.masks)
        if heads_q % n:
            raise AttnsimError(f"{n} head groups do not divide --heads {heads_q}; allowed: a number of spans that "
                               f"divides the heads (one per head, or per equal group of heads)")
        return [(m, heads_q // n) for m in self.masks]

    def adjust_tile(self, tile, backward=False):
        return self.masks[0].adjust_tile(tile, backward)

    def for_lengths(self, seqlen_q, seqlen_kv) -> Mask:
        """Each group's mask in its kernel form (a span reaching every key is dense or causal)."""
        masks = [m.for_lengths(seqlen_q, seqlen_kv) for m in self.masks]
        return self if all(a is b for a, b in zip(masks, self.masks)) else HeadMixMask(masks, self.name)

    def n_tiles(self, block_m, block_n, seqlen_q, seqlen_kv):
        return self.masks[0].n_tiles(block_m, block_n, seqlen_q, seqlen_kv)

    def mask_mod(self, q_idx, kv_idx, seqlen_q, seqlen_kv):
        raise AttnsimError("a per-head mask has no single element predicate: use each group's mask")

    live_pairs = live_keys = row_tiles = col_tiles = mask_mod


def mask_sums(mask: Mask, segments, heads_q: int):
    """(live pairs summed over every query head and sequence, live keys per kv head summed over the
    sequences and averaged over the head groups) for segments [(seqlen_q, seqlen_kv, count)]."""
    return _memo(mask, "_sums_cache", (tuple(segments), heads_q), lambda: _mask_sums(mask, segments, heads_q))


def _mask_sums(mask: Mask, segments, heads_q: int):
    pairs = keys = 0
    for sub, h in mask.head_groups(heads_q):
        pairs += h * sum(sub.live_pairs(q, k) * m for q, k, m in segments)
        keys += h * sum(sub.live_keys(q, k) * m for q, k, m in segments)
    return pairs, keys // heads_q


class SegmentComplementMask(Mask):
    """The complement of block-diagonal segments: a token sees the keys of the *other* segments
    (all of them, or with `causal` only earlier ones: its prefix before its own segment). The second
    pass of duplex attention. Self-attention (seqlen_q = seqlen_kv = the segments' sum).

    A row's keys are [0, s - 1] and [e + 1, L - 1] around its own segment [s, e] (causal: the first
    part only); over a tile's rows the union is [0, s(last) - 1] and [e(first) + 1, L - 1], and a
    kv tile is full when it misses every row's segment: outside [s(first), e(last)]."""

    def __init__(self, sizes, causal: bool = False):
        sizes = tuple(int(x) for x in sizes)
        if not sizes or min(sizes) < 1:
            raise ValueError(f"{sizes=}: positive segment lengths")
        self.sizes, self.is_causal = sizes, bool(causal)
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.ends = (np.cumsum(sizes) - 1).astype(np.int64)
        self.L = int(self.ends[-1]) + 1
        self.name = f"segment_complement_{len(sizes)}" + ("_causal" if causal else "")
        self.description = "the other segments' keys" + (", earlier only" if causal else "")

    def _check(self, seqlen_q, seqlen_kv):
        if seqlen_kv != self.L:
            raise AttnsimError(f"segments sum to {self.L} tokens; seqlen_kv is {seqlen_kv}: "
                               f"allowed: segment lengths that add up to the sequence")
        if seqlen_q != self.L:
            raise AttnsimError("duplex's cross-segment pass is self-attention over the whole sequence: "
                               "priced for --phase prefill and train")

    def _seg(self, x):
        idx = np.searchsorted(self.starts, np.asarray(x), side="right") - 1
        return self.starts[idx], self.ends[idx]

    def mask_mod(self, q_idx, kv_idx, seqlen_q, seqlen_kv):
        sq, _ = self._seg(q_idx)
        sk, _ = self._seg(kv_idx)
        other = sq != sk
        return other & (np.asarray(kv_idx) < np.asarray(q_idx)) if self.is_causal else other

    def live_pairs(self, seqlen_q, seqlen_kv):
        self._check(seqlen_q, seqlen_kv)
        sizes, starts = np.array(self.sizes), self.starts
        return int((sizes * starts).sum() if self.is_causal else (sizes * (self.L - sizes)).sum())

    def live_keys(self, seqlen_q, seqlen_kv):
        self._check(seqlen_q, seqlen_kv)
        if len(self.sizes) == 1:
            return 0
        return self.L - self.sizes[-1] if self.is_causal else self.L

    def _counts(self, lo, hi, complete, block, first_part: bool):
        """(full, non-empty) tiles of the other side for a range of rows (or keys): the union of the
        rows' parts [0, s(hi) - 1] (when `first_part`) and [e(lo) + 1, L - 1] (else, or non-causal)."""
        s_hi, _ = self._seg(hi)
        s_lo, _ = self._seg(lo)
        _, e_lo = self._seg(lo)
        _, e_hi = self._seg(hi)
        L, n = self.L, -(-self.L // block)
        use_a = first_part or not self.is_causal
        use_b = (not first_part) or not self.is_causal
        a_t = np.where(use_a & (s_hi >= 1), (s_hi - 1) // block + 1, 0)  # tiles 0 .. a_t - 1
        b_t0 = np.where(use_b & (e_lo + 1 <= L - 1), (e_lo + 1) // block, n)  # tiles b_t0 .. n - 1
        nonempty = a_t + (n - b_t0) - np.maximum(a_t - b_t0, 0)
        full_a = np.where(use_a, s_lo // block, 0)  # complete tiles ending before every row's segment
        # tiles after every row's segment; a ragged last tile counts when the other side is queries
        whole = n if not first_part else L // block
        full_b = np.where(use_b, np.maximum(whole - -(-(e_hi + 1) // block), 0), 0)
        full = np.where(complete, full_a + full_b, 0)
        return full, nonempty

    def row_tiles(self, q_lo, q_hi, complete, seqlen_q, seqlen_kv, block_n):
        self._check(seqlen_q, seqlen_kv)
        return self._counts(np.asarray(q_lo), np.asarray(q_hi), complete, block_n, first_part=True)

    def col_tiles(self, k_lo, k_hi, complete, seqlen_q, seqlen_kv, block_m):
        self._check(seqlen_q, seqlen_kv)
        # key j is seen by the queries after its segment (causal), or outside it
        return self._counts(np.asarray(k_lo), np.asarray(k_hi), complete, block_m, first_part=False)


class DuplexMask(Mask):
    """Duplex attention (MODA): two passes with complementary masks over the same tokens — within
    the segments, then across them — whose outputs are merged. Priced as both passes plus a merge."""

    def __init__(self, sizes, causal: bool = False):
        self.sizes, self.is_causal = tuple(int(x) for x in sizes), bool(causal)
        self.name = f"duplex_{len(self.sizes)}" + ("_causal" if causal else "")
        self.description = "two passes: within segments, then across"

    def passes(self) -> list:
        return [segment_mask(self.sizes, (-1, -1), self.is_causal), SegmentComplementMask(self.sizes, self.is_causal)]
