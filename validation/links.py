"""Link calibration: fit a link's achieved bandwidth fraction and its per-step latency α to measured
collectives (records of benchmarks/bench_collectives.py, `validation.distributed.collective_benchmark`).

The α–β model (`pricing.collective_time`) is linear in 1/bandwidth and α for every op:

    t = c(op, p) x n / (f x bw) + k(op, p) x α
    c: all_reduce 2(p-1)/p (in-switch 1), all_gather / reduce_scatter / all_to_all (p-1)/p, p2p 1
    k: all_reduce 2(p-1) (in-switch 2), all_gather / reduce_scatter / all_to_all (p-1), p2p 1

so (1/f, α) come from non-negative least squares on the relative error (each row divided by its measured
time): no starting point, no local minimum. A link needs rows at two message sizes or more (small ones
speak to α, large ones to f); with one size the two are not separable and the fit refuses.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnsim.simulator.errors import AttnsimError
from attnsim.simulator.pricing import collective_coefficients as coefficients  # (c, k) of the docstring
from attnsim.simulator.rates import LinkCalibration


@dataclass
class LinkFit:
    calibration: LinkCalibration
    rows: int
    in_sample_mape: float
    bandwidth_bytes_per_s: float  # the link's figure x the fitted fraction

    def to_dict(self) -> dict:
        return {"bandwidth": self.calibration.bandwidth, "latency_s": self.calibration.latency_s, "rows": self.rows,
                "in_sample_mape": self.in_sample_mape, "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s}


def fit_link(rows, link, source: str = "") -> LinkFit:
    """rows: dicts with op, bytes (the whole buffer n), group_size, time_s — one link's measurements;
    `link`: the cluster.Link they ran on (its profile bandwidth, staging and in-switch reduction)."""
    from scipy.optimize import nnls

    from attnsim.simulator.rates import link_rates

    lr = link_rates(link)
    a_rows, t = [], []
    for r in rows:
        p = int(r["group_size"])
        if p <= 1:
            continue
        c, k = coefficients(r["op"], p, lr.in_switch_reduction)
        bw = lr.bandwidth(p, single_peer=r["op"] == "p2p")
        a_rows.append([c * float(r["bytes"]) / bw, k])
        t.append(float(r["time_s"]))
    if len(a_rows) < 2:
        raise AttnsimError(f"a link fit needs two measured collectives or more; got {len(a_rows)}")
    a, t = np.array(a_rows), np.array(t)
    if not np.all(t > 0):
        raise AttnsimError("a measured collective time is not positive")
    if np.linalg.matrix_rank(a / a.max(axis=0)) < 2:
        raise AttnsimError("the collectives do not separate bandwidth from latency: measure two message sizes "
                           "or more (small ones for latency, large ones for bandwidth)")
    x, _ = nnls(a / t[:, None], np.ones_like(t))
    inv_f, alpha = x
    if inv_f <= 0:
        raise AttnsimError("the fit found no bandwidth term: the messages are too small to measure bandwidth")
    f = 1.0 / inv_f
    pred = a @ x
    cal = LinkCalibration(bandwidth=min(f, 1e3), latency_s=float(alpha) / (1 if link.p2p else 2), source=source)
    return LinkFit(calibration=cal, rows=len(t), in_sample_mape=float(np.mean(np.abs(pred / t - 1)) * 100),
                   bandwidth_bytes_per_s=lr.bytes_per_s * f)


def link_rows(recs) -> list:
    """Collective records -> the rows `validation.links.fit_link` takes: {op, bytes, group_size, time_s}
    (time_s: the record's median)."""
    return [{"op": r["op"], "bytes": r["bytes"], "group_size": r["group_size"], "time_s": r["timing"]["median_s"]}
            for r in recs]


def calibrate_link(recs, cluster):
    """`validation.links.fit_link` over collective records measured on `cluster`'s link (the link a
    group of the records' size crosses, `Cluster.link_for`): a `links.LinkFit` whose `calibration` is
    the `rates.LinkCalibration` for that link; AttnsimError when the records cannot separate bandwidth
    from latency (one message size) or mix group sizes on different links."""
    from attnsim.simulator.cluster import Cluster, load_cluster
    from attnsim.simulator.errors import AttnsimError

    recs = list(recs)
    cl = cluster if isinstance(cluster, Cluster) else load_cluster(cluster)
    names = {cl.link_for(r["group_size"], 1)[0] for r in recs}
    if len(names) > 1:
        raise AttnsimError(f"the records cross several links of {cl.key} ({', '.join(sorted(names))}); "
                           f"fit one at a time")
    name, lk = cl.link_for(recs[0]["group_size"], 1) if recs else (None, cl.intra)
    devices = sorted({r["device"]["name"] for r in recs})
    return fit_link(link_rows(recs), lk, source=f"collective records on {', '.join(devices)} ({cl.key} {name})")
