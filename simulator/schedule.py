"""Makespan of CTAs on SM slots: the closed form every prediction uses (with a grid's launch order where a
causal mask makes its CTAs unequal), and the exact list schedules (longest first; in launch order) it is
checked against.

The machine is `slots = SMs x CTAs-per-SM` identical slots; a CTA's duration already accounts
for sharing its SM with the other resident CTAs. Longest-processing-time-first is how
FlashAttention orders causal work; its makespan is an upper bound on the best schedule.
"""
from __future__ import annotations

import heapq
import math

import numpy as np


def lpt_makespan(durations, counts, slots: int) -> float:
    """Exact LPT makespan of `counts[i]` CTAs of duration `durations[i]` on `slots` slots.

    Identical CTAs are placed a whole round at a time while the load spread allows it (each slot
    then gets exactly one per round, as LPT would), so millions of CTAs cost O(groups x slots log slots).
    """
    order = np.argsort(-np.asarray(durations, dtype=float), kind="stable")
    loads = np.zeros(int(slots))
    for i in order:
        t, c = float(durations[i]), int(counts[i])
        while c > 0:
            loads.sort()
            if c >= slots and loads[-1] - loads[0] <= t:
                rounds = c // slots
                loads += rounds * t
                c -= rounds * slots
                continue
            n = min(c, slots)
            heap = loads.tolist()  # sorted, hence a valid heap
            for _ in range(n):
                heapq.heapreplace(heap, heap[0] + t)
            loads = np.asarray(heap)
            c -= n
    return float(loads.max()) if len(loads) else 0.0


def closed_makespan(n_ctas, total_s, max_s, min_s, slots):
    """Closed form for sweeps: max(longest CTA, total / slots + shortest x (ceil(n/slots) - n/slots)).

    Exact for equal CTAs (it reduces to waves x duration); for unequal CTAs (causal: arithmetic
    durations) the short CTAs fill the last wave's gaps as LPT places them, leaving at most the
    shortest CTA's worth of imbalance. Tested against `lpt_makespan`.
    """
    n_ctas = np.maximum(n_ctas, 1)
    tail = np.ceil(n_ctas / slots) - n_ctas / slots
    return np.maximum(max_s, total_s / slots + min_s * tail)


ORDERS = ("balanced", "ascending", "descending")  # how a kernel's grid hands CTAs to the SMs (`Family.cta_order`)


def dispatch_makespan(n_ctas, total_s, max_s, min_s, slots, groups=1, order="balanced"):
    """Makespan of CTAs handed to the slots in launch order, each to the first slot that frees (the block
    scheduler on a plain grid, a persistent kernel's atomic tile counter), when a causal mask makes them unequal.

    `order` is how each of the `groups` (a (batch, head)'s CTAs, launched one group after another) orders its
    CTAs: "ascending" (shortest first: the longest CTA is launched last, at position n - 1), "descending"
    (longest first: the last group's longest CTA is launched at position n - n / groups, after the other
    groups' work), or "balanced" (a scheduler that places the longest work first over the whole grid:
    `closed_makespan`). That last-launched longest CTA starts at 0 if its position is within the first wave
    (< slots), else when the work launched before it, spread over the slots, is done, less half a mean CTA (the
    slots free up spread over about one CTA's duration); it runs max_s: makespan = max(closed form, start +
    max_s - min_s / 2), the `- min_s / 2` keeping it exact for equal CTAs (never above the closed form's whole
    waves there). Checked against the exact greedy list schedule (`greedy_makespan`) in tests/test_model.py over
    1,080 causal ramps per order (2-256 CTAs per group, 1-64 groups, 108-264 slots): 0.83-1.16x of it, 5th-95th
    percentile 0.94-1.08, median 1.00, where the balanced closed form alone is down to 0.59. Scalars, arrays or
    formulas alike."""
    closed = closed_makespan(n_ctas, total_s, max_s, min_s, slots)
    if order == "balanced":
        return closed
    if order not in ORDERS:
        raise ValueError(f"unknown CTA order {order!r}; one of {', '.join(ORDERS)}")
    n = np.maximum(n_ctas, 1)
    if order == "ascending":  # the longest launched last: position n - 1, after everything else
        at, before = n - 1, total_s - max_s
    else:  # the last group's first (longest) CTA: position n - n / groups, after the other groups
        at, before = n - n / np.maximum(groups, 1), total_s - total_s / np.maximum(groups, 1)
    waits = np.minimum(1.0, np.maximum(0.0, at - slots + 1))  # 1 once at >= slots (whole positions), else 0
    start = waits * np.maximum(0.0 * total_s, before / slots - total_s / n / 2)
    return np.maximum(closed, start + max_s - min_s / 2)


def greedy_makespan(durations, slots: int) -> float:
    """Exact makespan of CTAs of `durations`, in launch order, each placed on the slot that frees first."""
    heap = [0.0] * int(slots)
    for d in durations:
        heapq.heapreplace(heap, heap[0] + float(d))
    return max(heap) if heap else 0.0


def wave_efficiency(n_ctas: int, slots: int) -> float:
    """Fraction of slot-time filled when equal CTAs run in ceil(n/slots) waves."""
    return n_ctas / (math.ceil(n_ctas / slots) * slots) if n_ctas else 0.0
