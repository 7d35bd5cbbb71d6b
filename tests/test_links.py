"""Link calibration: planted factors are recovered from synthetic collectives, and the refit link prices
them back; a fit that cannot separate bandwidth from latency refuses."""
import numpy as np
import pytest

from attnsim.simulator.cluster import load_cluster
from attnsim.simulator.errors import AttnsimError
from attnsim.simulator.ops import Collective
from attnsim.simulator.pricing import collective_time
from attnsim.simulator.rates import LinkCalibration, link_rates
from attnsim.validation.links import coefficients, fit_link


@pytest.mark.parametrize("cluster", ["8xh100-nvlink", "4xrtx4090-pcie", "8xmi300x-xgmi"])
def test_planted_link_factors_are_recovered(cluster):
    link = load_cluster(cluster).intra
    planted = LinkCalibration(bandwidth=0.72, latency_s=4e-6)
    lr = link_rates(link, planted)
    rng = np.random.default_rng(0)
    rows = []
    for op in ("all_reduce", "all_to_all", "p2p"):
        for p in (2, 4):
            for n in (1 << 12, 1 << 16, 1 << 20, 1 << 24, 1 << 28):
                t = collective_time(Collective("x", op, n, p), lr) * (1 + rng.normal(0, 0.01))
                rows.append({"op": op, "bytes": n, "group_size": p, "time_s": t})
    fit = fit_link(rows, link)
    assert fit.calibration.bandwidth == pytest.approx(0.72, rel=0.03)
    assert fit.calibration.latency_s == pytest.approx(4e-6, rel=0.05)
    assert fit.in_sample_mape < 2.0


def test_one_message_size_cannot_separate_bandwidth_from_latency():
    link = load_cluster("8xh100-nvlink").intra
    rows = [{"op": "p2p", "bytes": 1 << 20, "group_size": 2, "time_s": 1e-5}] * 3
    with pytest.raises(AttnsimError, match="two message sizes"):
        fit_link(rows, link)


def test_coefficients_written_out():
    assert coefficients("all_reduce", 8) == (2 * 7 / 8, 14.0)
    assert coefficients("all_reduce", 8, in_switch=True) == (1.0, 2.0)
    assert coefficients("all_gather", 4) == (3 / 4, 3.0)
    assert coefficients("p2p", 2) == (1.0, 1.0)
    with pytest.raises(AttnsimError):
        coefficients("broadcast", 4)
