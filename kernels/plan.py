"""The kernels' launch plan, built from the simulator's own mask: which (query tile, kv tile) pairs a
kernel visits, which of them are partial (and their element masks), and in what token order.

Pure numpy: the plan is what the simulator prices (full tiles: no mask arithmetic; partial tiles:
a mask; empty tiles: never visited), so tests compare it with the simulator's tile counts without
torch or a GPU.

Layout of a plan for a batch of sequences of lengths (lq_b, lk_b) and tiles BLOCK_M x BLOCK_N:
* one *row* per (sequence, query tile): q_start (packed row of its first query), q_len, k_start
  (packed row of the sequence's first key), k_len, and the slice [list_lo, list_hi) of the tile list;
* the tile list: kv tile start (a key index within the sequence) and the partial-mask index
  (-1 for a full tile);
* the partial masks: uint8 [n_partial, BLOCK_M, BLOCK_N], 1 = live (out-of-bounds = 0).
The transposed plan (one row per (sequence, kv tile), listing q tiles) drives the backward's dK/dV.
Token order: the neighborhood masks' tiled order permutes tokens into box-major order (NATTEN's
token permutation); `perm_q`/`perm_k` map a kernel row to the caller's token index.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnsim.simulator.errors import AttnsimError


@dataclass
class Plan:
    block_m: int
    block_n: int
    rows: np.ndarray  # int64 [n_rows, 6]: q_start, q_len, k_start, k_len, list_lo, list_hi
    kv_start: np.ndarray  # int32 [n_entries]: the tile's first key (query, for a transposed plan) within its sequence
    part: np.ndarray  # int32 [n_entries]: -1 = full, else the index into masks
    masks: np.ndarray  # uint8 [n_partial, block_m, block_n] (transposed plan: [.., block_n, block_m])
    counts: dict  # {"full", "partial", "empty"} tiles over the sequences' grids
    perm_q: np.ndarray | None = None  # kernel row -> caller's token (per sequence; None = identity)
    perm_k: np.ndarray | None = None
    first_partial: np.ndarray | None = None  # int32 [n_rows]: a row's list holds its full tiles, then from here
    # its partial ones (list_lo <= first_partial <= list_hi): the forward runs two loops with no branch inside


def box_permutation(shape, box, dilation=None) -> np.ndarray:
    """NATTEN's token permutation of a row-major grid: per dimension, the tokens of each dilation
    group (x mod d) in boxes of `box` in-group coordinates, each group's last box padded; tokens
    ordered by box (row-major over the per-dimension box lists), then row-major inside the box.
    Returns kernel slot -> the caller's token index, -1 for a padding slot."""
    shape, box = tuple(int(x) for x in shape), tuple(int(x) for x in box)
    dilation = tuple(int(x) for x in (dilation or (1,) * len(shape)))
    slots = []  # per dimension: slot -> coordinate (-1 = pad), boxes of t slots one after the other
    for n, t, d in zip(shape, box, dilation):
        coords = []
        for g in range(d):
            n_g = -(-(n - g) // d)
            for a in range(-(-n_g // t)):
                xi = np.arange(a * t, a * t + t)
                coords.append(np.where(xi < n_g, xi * d + g, -1))
        slots.append(np.concatenate(coords).reshape(-1, t))  # [boxes, t]
    nd = len(shape)
    grids = np.meshgrid(*[np.arange(c.shape[0]) for c in slots], *[np.arange(t) for t in box], indexing="ij")
    coord = [slots[i][grids[i], grids[nd + i]] for i in range(nd)]
    flat = np.zeros_like(coord[0])
    valid = np.ones(coord[0].shape, dtype=bool)
    for c, n in zip(coord, shape):
        flat = flat * n + np.maximum(c, 0)
        valid &= c >= 0
    return np.where(valid, flat, -1).reshape(-1)


def _mask_block(mask, qi, kj, lq, lk):
    """Element mask of query rows qi x keys kj (caller's indices; -1 = out of bounds)."""
    ok = (qi[:, None] >= 0) & (kj[None, :] >= 0)
    live = mask.mask_mod(np.maximum(qi, 0)[:, None], np.maximum(kj, 0)[None, :], lq, lk)
    return ok & np.asarray(live, dtype=bool)


def build_plan(mask, seqs, block_m: int, block_n: int, token_order=None, transpose: bool = False) -> Plan:
    """The plan of `mask` for sequences `seqs` = [(lq, lk), ...] (packed one after the other).
    token_order: (perm_q, perm_k) box-major permutations, or None for row-major."""
    rows, starts, parts, masks, mids = [], [], [], [], []
    full_n = part_n = total = 0
    q_off = k_off = 0
    for lq, lk in seqs:  # the caller's lengths; the kernel's are the (padded) permutations' with an order
        pq = np.arange(lq) if token_order is None else token_order[0]
        pk = np.arange(lk) if token_order is None else token_order[1]
        kq, kk = len(pq), len(pk)
        n_q, n_k = -(-kq // block_m), -(-kk // block_n)
        total += n_q * n_k
        outer, inner = (n_k, n_q) if transpose else (n_q, n_k)
        bo, bi = (block_n, block_m) if transpose else (block_m, block_n)
        lo_len, li_len = (kk, kq) if transpose else (kq, kk)
        po, pi = (pk, pq) if transpose else (pq, pk)
        for t in range(outer):
            o_idx = np.full(bo, -1, dtype=np.int64)
            n_o = min(bo, lo_len - t * bo)
            o_idx[:n_o] = po[t * bo:t * bo + n_o]
            lo = len(starts)
            full_s, part_s = [], []  # (start, part) of the row's full and partial tiles, each in key order
            for u in range(inner):
                i_idx = np.full(bi, -1, dtype=np.int64)
                n_i = min(bi, li_len - u * bi)
                i_idx[:n_i] = pi[u * bi:u * bi + n_i]
                blk = _mask_block(mask, i_idx, o_idx, lq, lk).T if transpose else _mask_block(mask, o_idx, i_idx, lq, lk)
                if not blk.any():
                    continue
                # full: in-bounds keys only, and every in-bounds query row sees them all (rows past
                # the sequence are predicated, not masked: the simulator's rule, masks.py)
                q_rows = (i_idx if transpose else o_idx) >= 0
                k_cols = (o_idx if transpose else i_idx) >= 0
                kb = blk.T if transpose else blk  # [q, k]
                if k_cols.all() and kb[q_rows].all():
                    full_s.append((u * bi, -1))
                    full_n += 1
                else:
                    part_s.append((u * bi, len(masks)))
                    masks.append(blk.astype(np.uint8))
                    part_n += 1
            for s_, p_ in full_s + part_s:
                starts.append(s_)
                parts.append(p_)
            mids.append(lo + len(full_s))
            start = (k_off if transpose else q_off) + t * bo
            rows.append((start, n_o, q_off if transpose else k_off, li_len, lo, len(starts)))
        q_off += kq
        k_off += kk
    shape = (block_n, block_m) if transpose else (block_m, block_n)
    return Plan(block_m, block_n, np.asarray(rows, dtype=np.int64).reshape(-1, 6),
                np.asarray(starts, dtype=np.int32), np.asarray(parts, dtype=np.int32),
                np.ascontiguousarray(np.stack(masks)) if masks else np.zeros((1,) + shape, dtype=np.uint8),
                {"full": full_n, "partial": part_n, "empty": total - full_n - part_n},
                None if token_order is None else token_order[0], None if token_order is None else token_order[1],
                np.asarray(mids, dtype=np.int32))


class BlockListMask:
    """Block-sparse attention from explicit lists: query block i (of `block_q` queries) sees the key
    blocks (of `block_k` keys) listed for it — what a MoBA gate or any data-dependent selection
    outputs. `kv_blocks`: one list of key-block indices per query block, or a boolean array
    [query blocks, key blocks]; `causal` ANDs the bottom-right causal mask. (The simulator's `moba`
    variant prices a representative choice — the most recent blocks; this mask runs the real one.)"""
    name = "block_list"

    def __init__(self, block_q: int, block_k: int, kv_blocks, causal: bool = False):
        if block_q < 1 or block_k < 1:
            raise AttnsimError(f"block_q={block_q}, block_k={block_k} must be positive")
        if isinstance(kv_blocks, np.ndarray) and kv_blocks.dtype == bool:
            table = kv_blocks.astype(bool)
        else:
            lists = [sorted({int(j) for j in row}) for row in kv_blocks]
            n_k = max((r[-1] + 1 for r in lists if r), default=0)
            table = np.zeros((len(lists), n_k), dtype=bool)
            for i, row in enumerate(lists):
                if row and row[0] < 0:
                    raise AttnsimError(f"kv_blocks[{i}] holds a negative block index")
                table[i, row] = True
        self.block_q, self.block_k, self.table, self.causal = int(block_q), int(block_k), table, bool(causal)

    def mask_mod(self, q_idx, kv_idx, seqlen_q, seqlen_kv):
        qb, kb = np.asarray(q_idx) // self.block_q, np.asarray(kv_idx) // self.block_k
        qb, kb = np.broadcast_arrays(qb, kb)
        ok = (qb < self.table.shape[0]) & (kb < self.table.shape[1])
        live = np.zeros(qb.shape, dtype=bool)
        live[ok] = self.table[qb[ok], kb[ok]]
        if self.causal:
            live &= np.asarray(kv_idx) <= np.asarray(q_idx) + (seqlen_kv - seqlen_q)
        return live

    def live_pairs(self, seqlen_q, seqlen_kv):
        n_qb, n_kb = -(-seqlen_q // self.block_q), -(-seqlen_kv // self.block_k)
        if self.table.shape[0] != n_qb or self.table.shape[1] > n_kb:
            raise AttnsimError(f"kv_blocks has {self.table.shape[0]} query blocks and key blocks up to "
                               f"{self.table.shape[1] - 1}; {seqlen_q} queries / {seqlen_kv} keys make {n_qb} query "
                               f"blocks of {self.block_q} and {n_kb} key blocks of {self.block_k}")
        return int(self.mask_mod(np.arange(seqlen_q)[:, None], np.arange(seqlen_kv)[None, :], seqlen_q,
                                 seqlen_kv).sum())

    def passes(self):
        return [self]

    def head_groups(self, heads_q):
        return [(self, heads_q)]


def mask_of(variant: str, params: dict, causal: bool, seqlen_q: int, seqlen_kv: int):
    """The simulator's mask for a variant and its -p parameters (the one definition everyone reads);
    variant "block_list" takes explicit block lists (`BlockListMask`: block_q, block_k, kv_blocks)."""
    if variant == "block_list":
        given = dict(params)
        extra = set(given) - {"block_q", "block_k", "kv_blocks"}
        if extra or "kv_blocks" not in given:
            raise AttnsimError(f"block_list takes block_q, block_k (default 64 each) and kv_blocks; got {sorted(given)}")
        mask = BlockListMask(given.get("block_q", 64), given.get("block_k", 64), given["kv_blocks"], causal)
        mask.live_pairs(seqlen_q, seqlen_kv)
        return mask
    from attnsim.simulator.problem import resolve
    from attnsim.simulator.variants import get_variant
    var = get_variant(variant)
    given = {k: v for k, v in params.items() if k != "causal"}
    for k, why in (("lengths", "pass packed tensors with cu_seqlens_q / cu_seqlens_k"),
                   ("layout", "pass packed tensors with cu_seqlens_q / cu_seqlens_k"),
                   ("q_per_step", "use attnsim.kernels.decode, whose q holds the step's tokens")):
        if k in given:
            raise AttnsimError(f"-p {k} does not apply to a kernel call: {why}")
    if var.name == "varlen":
        raise AttnsimError("variant 'varlen' is a batch of lengths, not a mask: pass packed tensors with "
                           "cu_seqlens_q / cu_seqlens_k (variant 'mha')")
    if var.layout is not None or var.kernel is not None:
        raise AttnsimError(f"variant {variant!r} changes the head layout or the kernel, not the mask: run its core "
                           f"(e.g. the query/kv heads it uses) through variant 'mha'/'gqa'")
    # the CLI's resolution (defaults, presets, refusals); the lengths are the call's, checked by the mask below
    mask = resolve(var, given, causal=causal, heads=1, kv_heads=1).mask
    if len(mask.passes()) > 1 or len(mask.head_groups(2)) > 1:
        raise AttnsimError(f"variant {variant!r} needs several passes or per-head masks: not a single-kernel mask")
    mask.live_pairs(seqlen_q, seqlen_kv)  # the mask's own checks: a token grid's size, segments' sum
    return mask


def token_order(mask, block_m: int, block_n: int):
    """(perm_q, perm_k) for a neighborhood mask in tiled order — the boxes the simulator picks for
    these tile sizes (explicit q_tile/kv_tile, or its tile search) — else None (row-major)."""
    if getattr(mask, "token_order", None) != "tiled":
        return None
    q_box, k_box = mask.boxes(block_m, block_n)
    dil = [dim.d for dim in mask.dims]
    return box_permutation(mask.shape, q_box, dil), box_permutation(mask.shape, k_box, dil)
