"""Makespan of CTAs on SM slots: the closed form every prediction uses, and the exact list schedule
(longest first) it is checked against.

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


def wave_efficiency(n_ctas: int, slots: int) -> float:
    """Fraction of slot-time filled when equal CTAs run in ceil(n/slots) waves."""
    return n_ctas / (math.ceil(n_ctas / slots) * slots) if n_ctas else 0.0
