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


def _record(op, n, p, t):
    from attnsim.validation.records import SCHEMA, utc_now
    device = {"name": "NVIDIA H100 80GB HBM3 (test: planted)", "hw_key": "h100_sxm5", "sm_count": 132,
              "clock_max_hz": None, "memory_bytes": 85899345920, "l2_bytes": None, "driver": None, "cuda": None,
              "torch": None, "triton": None, "cupy": None, "cc": None}
    timing = {"min_s": t, "p10_s": t, "median_s": t, "p90_s": t, "max_s": t, "n": 20, "method": "planted"}
    return {"schema": SCHEMA, "kind": "collective", "op": op, "bytes": n, "group_size": p, "backend": "nccl",
            "link": "intra_node", "device": device, "timing": timing, "date": utc_now(), "attnsim_version": "test"}


def test_calibrate_writes_link_fits_that_predict_parallel_uses(tmp_path):
    """Planted collectives -> `attnsim calibrate RECORDS --cluster` -> the file's links -> `predict --parallel
    --calibration FILE` prices the all-reduce with the fitted bandwidth and latency."""
    import json

    from cli_checks import invoke

    from attnsim.validation.records import append_record

    cl = load_cluster("8xh100-nvlink")
    planted = LinkCalibration(bandwidth=0.6, latency_s=5e-6)
    lr = link_rates(cl.intra, planted)
    path = tmp_path / "coll.jsonl"
    for op in ("all_reduce", "p2p"):
        for n in (1 << 14, 1 << 20, 1 << 26):
            append_record(str(path), _record(op, n, 4, collective_time(Collective("x", op, n, 4), lr)))
    out = tmp_path / "cal.json"
    r = invoke("calibrate", str(path), "--cluster", "8xh100-nvlink", "-o", str(out))
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    fit = doc["links"]["8xh100-nvlink/intra_node"]
    assert fit["bandwidth"] == pytest.approx(0.6, rel=1e-6) and fit["latency_s"] == pytest.approx(5e-6, rel=1e-6)
    r = invoke("predict", "--hw", "8xh100-nvlink", "--parallel", "tp=4", "--seqlen", "4096", "--json",
               "--calibration", str(out))
    assert r.exit_code == 0, r.output
    j = json.loads(r.output)
    (c,) = j["parallel"]["collectives"]
    n = 4096 * 32 * 128 * 2
    assert c["time_s"] == pytest.approx(n / (0.6 * 450e9) + 2 * 5e-6, rel=1e-9)  # in-switch all-reduce
    assert "intra_node" in j["parallel"]["links_calibrated"]


def test_collective_records_need_a_cluster(tmp_path):
    from cli_checks import assert_one_line_error, invoke

    from attnsim.validation.records import append_record
    path = tmp_path / "coll.jsonl"
    append_record(str(path), _record("p2p", 1 << 20, 2, 1e-4))
    assert_one_line_error(invoke("calibrate", str(path), "-o", str(tmp_path / "x.json")), "--cluster")
    assert not (tmp_path / "x.json").exists()
