"""The tile classification rule, written out once for every brute-force test (independent of the
simulator's code): a tile is full when its keys are all in bounds and every in-bounds query row
sees all of them, empty when no in-bounds pair is live, partial otherwise. Query rows past the
sequence (a ragged last query tile) are predicated by the kernels, never masked."""
import numpy as np


def classify(live, lq, lk, bm, bn):
    """live: a boolean (>= lq) x (>= lk) array whose [:lq, :lk] block is the mask (anything beyond
    is ignored). Returns (n_q_tiles, n_kv_tiles) int array: 2 = full, 1 = partial, 0 = empty."""
    nq, nk = -(-lq // bm), -(-lk // bn)
    cls = np.zeros((nq, nk), dtype=np.int64)
    for r in range(nq):
        rows = slice(r * bm, min(r * bm + bm, lq))
        for c in range(nk):
            block = np.asarray(live[rows, c * bn:min(c * bn + bn, lk)], dtype=bool)
            keys_in_bounds = c * bn + bn <= lk
            cls[r, c] = 2 if keys_in_bounds and block.all() else int(block.any())
    return cls


def full_nonempty(live, lq, lk, bm, bn):
    """(full, non-empty) boolean tile matrices of `classify`."""
    cls = classify(live, lq, lk, bm, bn)
    return cls == 2, cls > 0
