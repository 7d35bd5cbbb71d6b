"""Calibration (validation/calibrate.py): planted parameters are recovered, a model missing a mechanism
shows a large held-out error, unidentifiable parameters are named and fixed, and `attnsim calibrate`
refuses bad input in one line without touching an existing output file."""
import json

import numpy as np
import pytest

from attnsim.simulator.errors import AttnsimError
from attnsim.validation import calibrate as cal
from cli_checks import invoke

PLANTED = {"tensor": 0.8, "overlap": 0.3, "cta_io": 0.6, "smem_exposed": 0.3, "causal": 0.1}
FOUR = {k: v for k, v in PLANTED.items() if k != "smem_exposed"}  # for fits that name the other four


def grid(hw="h100_sxm5", family="fa3", head_dims=(64, 128, 256), causal=(False, True),
         seqlens=(512, 1024, 2048, 4096, 8192, 16384), phase="prefill"):
    """The FlashAttention benchmark's shapes: batch x seqlen = 16k tokens, 2048 / head dim heads."""
    return [cal.Row(hw=hw, family=family, phase=phase, causal=c, dtype="fp16", batch=max(1, 16384 // s),
                    heads_q=2048 // d, heads_kv=2048 // d, head_dim=d, seqlen_q=s, seqlen_kv=s, time_s=1.0,
                    source="synthetic", where=f"synthetic:{i}")
            for i, (d, c, s) in enumerate((d, c, s) for d in head_dims for c in causal for s in seqlens)]


def planted(rows, values, noise=0.01, seed=0, extra=None):
    """Rows whose times are the model's under `values`, times lognormal noise (and `extra(row)`)."""
    t = cal.model_times(rows, cal.calibration_of(values))
    rng = np.random.default_rng(seed)
    t = t * np.exp(rng.normal(0.0, noise, len(rows)))
    if extra:
        t = t * np.array([extra(r) for r in rows])
    return [cal.Row(**{**r.__dict__, "time_s": float(x)}) for r, x in zip(rows, t)]


def test_planted_parameters_are_recovered_and_held_out_error_is_the_noise():
    rows = planted(grid(), PLANTED)
    f = cal.fit(rows)
    assert not f.fixed
    for name, v in PLANTED.items():
        assert f.values[name] == pytest.approx(v, abs=0.03 + 3 * f.stderr[name]), name
    # η and the exposed shared-memory time trade against each other (both slow the tensor-bound tiles; only the
    # head dim's smem/tensor ratio tells them apart), so with noise each is recovered within its stated error,
    # and without noise exactly
    exact = cal.fit(planted(grid(), PLANTED, noise=0.0))
    for name, v in PLANTED.items():
        assert exact.values[name] == pytest.approx(v, abs=1e-4), name
    quiet = cal.fit(planted(grid(), PLANTED, noise=0.002))  # and closer as the noise falls: 0.2% -> within 0.02
    for name, v in PLANTED.items():
        assert quiet.values[name] == pytest.approx(v, abs=0.02), name
    assert f.in_sample_mape < 1.5  # 1% lognormal noise: mean |error| about 0.8%
    h = cal.heldout(rows, x0=f.values)
    assert h["kfold"] < 1.5 and h["seqlen"] < 2.5 and h["head_dim"] < 3.0
    # the uncalibrated model is far off the planted one
    assert cal.mape(cal.model_times(rows, None), [r.time_s for r in rows]) > 20


def test_a_model_missing_a_mechanism_shows_a_large_held_out_error():
    """Times that grow with the sequence length beyond anything the parameters can express (x (L/1024)^0.25,
    say a clock that sags on long runs): the fit absorbs part of it in sample, but a held-out sequence
    length is badly predicted."""
    rows = planted(grid(), PLANTED, extra=lambda r: (r.seqlen_q / 1024) ** 0.25)
    f = cal.fit(rows)
    h = cal.heldout(rows, x0=f.values)
    assert h["seqlen"] > 10 and h["seqlen"] > 3 * cal.heldout(planted(grid(), PLANTED), x0=PLANTED)["seqlen"]


def test_a_parameter_no_row_depends_on_is_fixed_and_named():
    rows = planted(grid(causal=(False,)), FOUR)
    f = cal.fit(rows, names=["tensor", "overlap", "cta_io", "causal"])
    assert "causal" in f.fixed and "no row depends on it" in f.fixed["causal"]
    assert f.values["causal"] == 0.0 and any("causal fixed at 0" in w for w in f.warnings)


def test_eta_and_omega_are_not_separable_on_one_head_dim_of_compute_bound_rows():
    """Long, dense rows of one head dim: the exp/matmul ratio never changes, so a slower tensor rate
    and a less hidden exp move every row alike; one of the two is fixed, named, and the fit still
    predicts the rows."""
    rows = planted(grid(head_dims=(128,), causal=(False,), seqlens=(4096, 8192, 16384, 32768, 65536)),
                   {"tensor": 0.8, "overlap": 0.3}, noise=0.002)
    f = cal.fit(rows, names=["tensor", "overlap"])
    assert set(f.fixed) & {"tensor", "overlap"}
    why = next(iter(f.fixed.values()))
    assert "rank-deficient" in why or "no row depends" in why
    assert f.in_sample_mape < 1.0



def test_between_equal_fits_a_phase_factor_is_fixed_and_eta_fitted():
    """Causal rows only: every tile pays (1 + causal), so the causal factor and η move the compute-bound rows
    alike. Fixing either fits as well (by hand: η 0.8 / 1.1 = 0.727 with the causal factor at 0); the causal
    factor is fixed and η fitted, the one that carries to non-causal rows."""
    rows = planted(grid(causal=(True,)), FOUR, noise=0.002)
    f = cal.fit(rows, names=["tensor", "overlap", "cta_io", "causal"])
    assert list(f.fixed) == ["causal"] and "rank-deficient" in f.fixed["causal"] and f.values["causal"] == 0.0
    assert f.values["tensor"] == pytest.approx(0.8 / 1.1, rel=0.02)
    other = cal.fit(rows, names=["overlap", "cta_io", "causal"], fixed={"tensor": "by hand"})
    assert abs(other.in_sample_mape - f.in_sample_mape) <= max(cal.EQUAL_FIT_PP, cal.EQUAL_FIT_REL * f.in_sample_mape)
    assert cal.PHASE_PARAMS == ("backward", "causal")

def test_too_few_rows_are_refused():
    with pytest.raises(AttnsimError, match="cannot fit"):
        cal.fit(planted(grid(head_dims=(128,), causal=(False,), seqlens=(1024, 2048)), PLANTED))


def test_groups_are_per_gpu_family_dtype_and_decode():
    rows = grid(seqlens=(1024,), head_dims=(64,)) + grid(hw="a100_sxm4_80gb", family="fa2", seqlens=(1024,),
                                                          head_dims=(64,))
    rows.append(cal.Row(**{**rows[0].__dict__, "dtype": "fp8"}))
    rows.append(cal.Row(**{**rows[0].__dict__, "phase": "decode", "seqlen_q": 1}))
    assert set(cal.groups_of(rows)) == {"h100_sxm5/fa3", "a100_sxm4_80gb/fa2", "h100_sxm5/fa3/fp8",
                                        "h100_sxm5/fa3/decode"}
    assert cal.params_for([rows[-1]]) == ["hbm"]


def test_the_backward_factor_needs_rows_that_tell_it_from_eta():
    """Rows that all time forward + backward together cannot tell η from the backward factor (both scale every
    row alike): it is not fitted. A forward-only or a backward-only row beside them makes it fittable."""
    fwd = grid(hw="a100_sxm4_80gb", family="fa2", seqlens=(1024, 2048), head_dims=(64,))
    train = [cal.Row(**{**r.__dict__, "phase": "train"}) for r in fwd]
    bwd = cal.Row(**{**fwd[0].__dict__, "phase": "backward"})
    assert "backward" not in cal.params_for(train) and "backward" not in cal.params_for(fwd)
    assert "backward" in cal.params_for(train + fwd[:1]) and "backward" in cal.params_for(train + [bwd])
    assert "backward" in cal.params_for([bwd])


def test_a_stated_clock_prices_its_rows_at_that_clock():
    """A row measured at a locked clock: the same parameters at 1.5 GHz instead of the sustained 1.83 GHz
    give a proportionally longer compute-bound time."""
    row = grid(head_dims=(128,), causal=(False,), seqlens=(16384,))[0]
    locked = cal.Row(**{**row.__dict__, "clock_hz": 1.5e9})
    t, t_locked = cal.model_times([row, locked], None)
    assert t_locked / t == pytest.approx(1.83 / 1.5, rel=0.02)
    from attnsim.simulator.hardware import load_hardware
    assert cal._regime_clock("locked 1965 MHz", load_hardware("b200")) == pytest.approx(1.965e9)
    assert cal._regime_clock("burst", load_hardware("b200")) == load_hardware("b200").clock_max_hz
    assert cal._regime_clock("sustained", load_hardware("b200")) is None


# -- the command line ------------------------------------------------------------------------------
def _record(**over):
    rec = {"schema": "attnsim.measurement/1", "kind": "kernel", "kernel": "sdpa_flash", "family": "fa2",
           "phase": "prefill",
           "shape": {"batch": 4, "seqlen_q": 4096, "seqlen_kv": 4096, "heads_q": 16, "heads_kv": 16, "head_dim": 128,
                     "causal": False, "dtype": "bf16"},
           "device": {"name": "NVIDIA H100 80GB HBM3", "hw_key": "h100_sxm5", "sm_count": 132, "clock_max_hz": 1.98e9,
                      "memory_bytes": 85_000_000_000, "l2_bytes": 52428800, "driver": "x", "cuda": "x", "torch": "x",
                      "triton": "x", "cupy": "x", "cc": "9.0"},
           "timing": {"median_s": 1e-3, "p10_s": 0.9e-3, "p90_s": 1.1e-3, "min_s": 0.8e-3, "max_s": 1.2e-3, "n": 30,
                      "method": "cuda events"},
           "error": {"max_abs": 1e-3, "max_rel": 1e-3, "reference": "float64", "ok": True},
           "prediction": {"time_s": 5e-4, "bound_s": 3e-4, "calibrated": False, "kernel_family": "fa2"},
           "date": "2026-12-02T00:00:00Z", "attnsim_version": "0.1.0"}
    rec.update(over)
    return rec


def test_calibrate_without_input_is_a_usage_error():
    r = invoke("calibrate")
    assert r.exit_code == 2 and "nothing to fit" in r.output and "Traceback" not in r.output


def test_a_malformed_record_is_refused_with_file_and_line_and_nothing_is_written(tmp_path):
    out = tmp_path / "cal.json"
    out.write_text("keep me")
    bad = tmp_path / "m.jsonl"
    bad.write_text(json.dumps(_record()) + "\n" + "{not json\n" + json.dumps(_record()) + "\n")
    r = invoke("calibrate", bad, "-o", out)
    assert r.exit_code == 2 and f"{bad}:2" in r.output and len(r.output.strip().splitlines()) == 1
    assert out.read_text() == "keep me"


def test_records_too_few_to_fit_warn_and_write_nothing(tmp_path):
    """A truncated last line is skipped with a warning; three rows cannot fit: a warning per group,
    exit 2, the existing output untouched."""
    out = tmp_path / "cal.json"
    out.write_text("keep me")
    recs = tmp_path / "m.jsonl"
    lines = [json.dumps(_record(shape={**_record()["shape"], "seqlen_q": s, "seqlen_kv": s})) for s in (1024, 2048, 4096)]
    recs.write_text("\n".join(lines) + '\n{"schema": "attnsim.meas')
    r = invoke("calibrate", recs, "-o", out)
    assert r.exit_code == 2
    assert "truncated last record skipped" in r.output and "h100_sxm5/fa2: not fitted" in r.output
    assert "nothing written" in r.output and out.read_text() == "keep me"


def test_records_fit_and_the_file_carries_provenance(tmp_path):
    """Planted records of one GPU and family (synthetic: the model's own times under known parameters,
    as a GPU run would write them) are fitted from the command line; the file names its source."""
    rows = planted(grid(family="fa2", head_dims=(64, 128), seqlens=(1024, 2048, 4096, 8192)),
                   {"tensor": 0.7, "overlap": 0.2, "cta_io": 0.5, "causal": 0.1})
    recs = tmp_path / "m.jsonl"
    recs.write_text("".join(json.dumps(_record(
        shape={"batch": r.batch, "seqlen_q": r.seqlen_q, "seqlen_kv": r.seqlen_kv, "heads_q": r.heads_q,
               "heads_kv": r.heads_kv, "head_dim": r.head_dim, "causal": r.causal, "dtype": "fp16"},
        timing={**_record()["timing"], "median_s": r.time_s, "p10_s": r.time_s, "p90_s": r.time_s,
                "min_s": r.time_s, "max_s": r.time_s})) + "\n" for r in rows))
    out = tmp_path / "cal.json"
    r = invoke("calibrate", recs, "-o", out, "--folds", "4")
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["schema"] == cal.SCHEMA and doc["sources"][0]["rows_fitted"] == len(rows)
    g = doc["groups"]["h100_sxm5/fa2"]
    assert g["params"]["tensor"]["value"] == pytest.approx(0.7, rel=0.05)
    assert g["heldout_mape"]["kfold"] < 2.0 and g["rows"] == len(rows)
    assert "h100_sxm5/fa2" in r.output and "k-fold" in r.output


def test_report_points_price_each_row_as_predict_does_and_the_report_command_writes_them(tmp_path):
    """Each point's prediction, useful FLOPs, HBM bytes and bound are the prediction of its workload
    (raw model here); a backward row is train minus prefill, bounded by its FLOPs at the tensor peak."""
    from attnsim.simulator.bound import bound
    from attnsim.simulator.hardware import load_hardware
    from attnsim.simulator.model import predict
    rows = planted(grid(family="fa2", head_dims=(64,), seqlens=(1024, 4096)), PLANTED)
    rows.append(cal.Row(**{**rows[0].__dict__, "phase": "backward", "where": "synthetic:bwd"}))
    points = cal.report_points(rows, None)
    assert len(points) == len(rows)
    hw = load_hardware("h100_sxm5")
    for r, p in zip(rows, points):
        w = r.workload()
        one = predict(w, hw, "fa2", calibration=None)
        if r.phase == "backward":
            fwd = predict(w.with_(phase="prefill"), hw, "fa2", calibration=None)
            assert p["predicted_s"] == pytest.approx(one.time_s - fwd.time_s, rel=1e-9)
            assert p["flops"] == one.useful_flops - fwd.useful_flops
            assert p["bound_s"] == pytest.approx(p["flops"] / hw.peak_flops_per_s("fp16", "fp32", hw.clock_max_hz))
        else:
            assert p["predicted_s"] == pytest.approx(one.time_s, rel=1e-9)
            assert (p["flops"], p["hbm_bytes"]) == (one.useful_flops, one.hbm_bytes)
            assert p["bound_s"] == pytest.approx(bound(w, hw).time_s, rel=1e-12)
    recs = tmp_path / "m.jsonl"
    recs.write_text("".join(json.dumps(_record(
        shape={"batch": r.batch, "seqlen_q": r.seqlen_q, "seqlen_kv": r.seqlen_kv, "heads_q": r.heads_q,
               "heads_kv": r.heads_kv, "head_dim": r.head_dim, "causal": r.causal, "dtype": "fp16"},
        timing={**_record()["timing"], "median_s": r.time_s, "p10_s": r.time_s, "p90_s": r.time_s,
                "min_s": r.time_s, "max_s": r.time_s})) + "\n" for r in rows[:-1]))
    out = tmp_path / "r.html"
    res = invoke("report", recs, "--uncalibrated", "-o", out)
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert 'id="rows-table"' in html and "h100_sxm5/fa2" in html and f"{len(rows) - 1} rows" in res.output
    assert invoke("report").exit_code == 2
