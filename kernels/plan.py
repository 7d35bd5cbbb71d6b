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


def box_permutation(shape, box) -> np.ndarray:
    """Box-major token order of a row-major grid: tokens sorted by (box index, index within the box),
    both row-major; border boxes hold fewer tokens when the box does not divide the grid."""
    shape, box = tuple(int(x) for x in shape), tuple(int(x) for x in box)
    idx = np.arange(int(np.prod(shape)), dtype=np.int64)
    coords, rest = [], idx
    for n in reversed(shape):
        coords.append(rest % n)
        rest = rest // n
    coords = coords[::-1]
    nb = [-(-n // b) for n, b in zip(shape, box)]
    box_id = np.zeros_like(idx)
    inner = np.zeros_like(idx)
    for c, b, n_b in zip(coords, box, nb):
        box_id = box_id * n_b + c // b
        inner = inner * b + c % b
    return np.lexsort((inner, box_id))


def _mask_block(mask, qi, kj, lq, lk):
    """Element mask of query rows qi x keys kj (caller's indices; -1 = out of bounds)."""
    ok = (qi[:, None] >= 0) & (kj[None, :] >= 0)
    live = mask.mask_mod(np.maximum(qi, 0)[:, None], np.maximum(kj, 0)[None, :], lq, lk)
    return ok & np.asarray(live, dtype=bool)


def build_plan(mask, seqs, block_m: int, block_n: int, token_order=None, transpose: bool = False) -> Plan:
    """The plan of `mask` for sequences `seqs` = [(lq, lk), ...] (packed one after the other).
    token_order: (perm_q, perm_k) box-major permutations, or None for row-major."""
    rows, starts, parts, masks = [], [], [], []
    full_n = part_n = total = 0
    q_off = k_off = 0
    for lq, lk in seqs:
        pq = np.arange(lq) if token_order is None else token_order[0]
        pk = np.arange(lk) if token_order is None else token_order[1]
        n_q, n_k = -(-lq // block_m), -(-lk // block_n)
        total += n_q * n_k
        outer, inner = (n_k, n_q) if transpose else (n_q, n_k)
        bo, bi = (block_n, block_m) if transpose else (block_m, block_n)
        lo_len, li_len = (lk, lq) if transpose else (lq, lk)
        po, pi = (pk, pq) if transpose else (pq, pk)
        for t in range(outer):
            o_idx = np.full(bo, -1, dtype=np.int64)
            n_o = min(bo, lo_len - t * bo)
            o_idx[:n_o] = po[t * bo:t * bo + n_o]
            lo = len(starts)
            for u in range(inner):
                i_idx = np.full(bi, -1, dtype=np.int64)
                n_i = min(bi, li_len - u * bi)
                i_idx[:n_i] = pi[u * bi:u * bi + n_i]
                blk = _mask_block(mask, i_idx, o_idx, lq, lk).T if transpose else _mask_block(mask, o_idx, i_idx, lq, lk)
                if not blk.any():
                    continue
                starts.append(u * bi)
                if blk.all():
                    parts.append(-1)
                    full_n += 1
                else:
                    parts.append(len(masks))
                    masks.append(blk.astype(np.uint8))
                    part_n += 1
            start = (k_off if transpose else q_off) + t * bo
            rows.append((start, n_o, q_off if transpose else k_off, li_len, lo, len(starts)))
        q_off += lq
        k_off += lk
    shape = (block_n, block_m) if transpose else (block_m, block_n)
    return Plan(block_m, block_n, np.asarray(rows, dtype=np.int64).reshape(-1, 6),
                np.asarray(starts, dtype=np.int32), np.asarray(parts, dtype=np.int32),
                np.ascontiguousarray(np.stack(masks)) if masks else np.zeros((1,) + shape, dtype=np.uint8),
                {"full": full_n, "partial": part_n, "empty": total - full_n - part_n},
                None if token_order is None else token_order[0], None if token_order is None else token_order[1])


def mask_of(variant: str, params: dict, causal: bool, seqlen_q: int, seqlen_kv: int):
    """The simulator's mask for a variant and its -p parameters (the one definition everyone reads)."""
    from attnsim.simulator.variants import get_variant
    var = get_variant(variant)
    given = {k: v for k, v in params.items() if k != "causal"}
    for k in ("kernel_size", "stride", "dilation", "token_shape", "q_tile", "kv_tile", "block"):
        if isinstance(given.get(k), int):
            given[k] = (given[k],)
    if isinstance(given.get("window_size"), tuple):
        given["window_size"] = list(given["window_size"])
    resolved = var.resolve(given)
    if var.layout is not None or var.kernel is not None:
        raise AttnsimError(f"variant {variant!r} changes the head layout or the kernel, not the mask: run its core "
                           f"(e.g. the query/kv heads it uses) through variant 'mha'/'gqa'")
    mask = var.make_mask(resolved, causal)
    if len(mask.passes()) > 1 or len(mask.head_groups(2)) > 1:
        raise AttnsimError(f"variant {variant!r} needs several passes or per-head masks: not a single-kernel mask")
    return mask


def token_order(mask, block_m: int, block_n: int):
    """(perm_q, perm_k) for a neighborhood mask in tiled order — the boxes the simulator picks for
    these tile sizes (explicit q_tile/kv_tile, or its tile search) — else None (row-major)."""
    if getattr(mask, "token_order", None) != "tiled":
        return None
    q_box, k_box = mask.boxes(block_m, block_n)
    return box_permutation(mask.shape, q_box), box_permutation(mask.shape, k_box)
