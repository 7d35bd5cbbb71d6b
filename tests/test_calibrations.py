"""The shipped calibration (hardware_profiles/calibrations.json, written by `attnsim calibrate --source
published`): predictions use it by default, the CLI and the Python API alike, with its held-out error;
every (GPU, family) pair predict accepts is calibrated (by transfer where no rows exist, saying so);
the file matches the reference data it was fitted on and regenerates from it; the published rows
round-trip calibrate -> predict."""
import hashlib
import json

import numpy as np
import pytest

from attnsim.simulator.calibrations import choose, load_file, shipped_path
from attnsim.simulator.families import FAMILIES
from attnsim.simulator.hardware import builtin_profiles, load_hardware
from attnsim.simulator.model import predict
from attnsim.simulator.vectorized import predict_many
from attnsim.simulator.workload import Workload
from cli_checks import invoke

SHIPPED = load_file(str(shipped_path()))
GROUPS = SHIPPED["groups"]
W = Workload(batch=2, seqlen_q=4096, heads_q=16, head_dim_qk=128, causal=True)


def _reference():
    from attnsim.validation.published import load_reference, reference_paths
    from attnsim.validation.calibrate import rows_from_reference
    paths = reference_paths()
    return paths, rows_from_reference(load_reference(paths)[0])


def test_predict_is_calibrated_by_default_with_its_held_out_error():
    p = predict(W, "h100", "fa3")
    g = GROUPS["h100_sxm5/fa3"]
    assert p.calibrated and p.calibration_info["group"] == "h100_sxm5/fa3"
    assert p.calibration_info["transferred_from"] is None
    assert p.calibration_info["stated_mape"] == g["heldout_mape"]["kfold"]
    assert p.rates.mma_efficiency == pytest.approx(g["params"]["tensor"]["value"], rel=1e-12)  # FA3's own is 1
    raw = predict(W, "h100", "fa3", calibration=None)
    assert not raw.calibrated and raw.calibration_info is None and raw.time_s < p.time_s


def test_the_cli_and_predict_many_agree_with_predict_calibrated_or_not(monkeypatch):
    args = ["predict", "--hw", "h100", "--kernel", "fa3", "--batch", "2", "--seqlen", "4096", "--heads", "16",
            "--causal", "--json"]
    cal, raw = (json.loads(invoke(*a).output) for a in (args, args + ["--uncalibrated"]))
    assert cal["calibrated"] and cal["calibration"]["group"] == "h100_sxm5/fa3"
    assert cal["time_s"] == pytest.approx(predict(W.with_(dtype="bf16"), "h100", "fa3").time_s, rel=1e-12)
    assert not raw["calibrated"] and raw["calibration"] is None
    assert raw["time_s"] == pytest.approx(predict(W, "h100", "fa3", calibration=None).time_s, rel=1e-12)
    m = predict_many("h100", "fa3", batch=[2, 4], seqlen_q=4096, heads_q=16, causal=True)
    assert m["time_s"][0] == pytest.approx(cal["time_s"], rel=1e-9)
    assert predict_many("h100", "fa3", batch=2, seqlen_q=4096, heads_q=16, causal=True,
                        calibration=None)["time_s"] == pytest.approx(raw["time_s"], rel=1e-9)
    monkeypatch.setenv("ATTNSIM_CALIBRATION", "none")
    assert json.loads(invoke(*args).output)["time_s"] == pytest.approx(raw["time_s"], rel=1e-12)


def test_the_human_output_prints_the_held_out_error_next_to_the_time():
    out = invoke("predict", "--hw", "h100", "--kernel", "fa3", "--seqlen", "8192").output
    line = next(x for x in out.splitlines() if x.strip().startswith("time"))
    kfold = GROUPS["h100_sxm5/fa3"]["heldout_mape"]["kfold"]
    assert f"±{kfold:.0f}% held out on {GROUPS['h100_sxm5/fa3']['rows']} published rows (h100_sxm5/fa3)" in line
    raw = invoke("predict", "--hw", "h100", "--seqlen", "8192", "--uncalibrated").output
    assert "(uncalibrated: the raw model)" in raw


def _pairs():
    for key, hw in builtin_profiles().items():
        for fam in FAMILIES.values():
            dtype = "bf16" if "bf16" in fam.dtypes else "fp16"
            try:
                p = predict(Workload(seqlen_q=2048, heads_q=16, head_dim_qk=128, dtype=dtype), hw, fam.name,
                            calibration=None)
            except Exception:  # the family does not run here (predict refuses it)
                continue
            yield key, fam.name, dtype


@pytest.mark.parametrize("hw_key,family,dtype", list(_pairs()))
def test_every_pair_predict_accepts_is_calibrated(hw_key, family, dtype):
    p = predict(Workload(seqlen_q=2048, heads_q=16, head_dim_qk=128, dtype=dtype), hw_key, family)
    info = p.calibration_info
    assert p.calibrated and info["stated_mape"] is not None and info["stated_mape"] > 0
    own = f"{hw_key}/{family}"
    if own in GROUPS:
        assert info["group"] == own and info["transferred_from"] is None
    else:
        src = GROUPS[info["transferred_from"]]
        assert info["group"] == info["transferred_from"] == SHIPPED["transfers"][own]["from"]
        # a transfer states a wider error than the fit's own held-out error
        assert info["stated_mape"] >= max(10.0, src["heldout_mape"]["kfold"] or 0)


def test_fp8_and_decode_without_rows_of_their_own_borrow_the_16_bit_fit_and_say_so():
    c, info = choose("default", load_hardware("h100"), FAMILIES["fa3"], "bf16", "decode")
    assert info["group"] == "h100_sxm5/fa3" and info["transferred_from"] == "h100_sxm5/fa3"
    assert info["stated_mape"] >= 10.0 and "decode" in info["stated_error"]
    if "h100_sxm5/fa3/fp8" in GROUPS:
        assert choose("default", load_hardware("h100"), FAMILIES["fa3"], "fp8", "prefill")[1]["group"] == \
            "h100_sxm5/fa3/fp8"


def test_the_shipped_file_was_fitted_on_the_reference_data_there_is_now():
    paths, _ = _reference()
    shipped = {s["file"]: s["sha256"] for s in SHIPPED["sources"] if s["kind"] == "published"}
    for p in paths:
        assert shipped.get(p.name) == hashlib.sha256(p.read_bytes()).hexdigest(), (
            f"{p.name} changed since the shipped calibration was fitted: rerun "
            f"'attnsim calibrate --source published -o hardware_profiles/calibrations.json'")


def test_published_rows_round_trip_calibrate_predict():
    """Each group's rows, predicted by default (the shipped calibration), give the in-sample error the
    file records: the file is applied exactly as it was fitted."""
    from attnsim.validation.calibrate import groups_of, mape, model_times, priceable
    _, rows = _reference()
    by = groups_of(rows)
    for key, g in GROUPS.items():
        rs = priceable(by[key])[0]
        hw = load_hardware(rs[0].hw)
        c, info = choose("default", hw, FAMILIES[rs[0].family], rs[0].dtype, rs[0].phase)
        assert info["group"] == key
        assert mape(model_times(rs, c), [r.time_s for r in rs]) == pytest.approx(g["in_sample_mape"], rel=1e-6), key


@pytest.mark.parametrize("key", ["h100_sxm5/fa3", "a100_sxm4_80gb/fa2"])
def test_the_shipped_groups_regenerate(key):
    """`attnsim calibrate --source published` fitted these (the test refits two of its groups with the
    same code: the parameters and held-out errors agree)."""
    from attnsim.validation.calibrate import calibrate_groups
    _, rows = _reference()
    fitted, _ = calibrate_groups(rows, only={key})
    new, old = fitted[key], GROUPS[key]
    assert new["rows"] == old["rows"]
    for n, p in old["params"].items():
        assert new["params"][n]["value"] == pytest.approx(p["value"], rel=1e-3, abs=1e-4), n
    for k, v in old["heldout_mape"].items():
        assert (new["heldout_mape"][k] is None) == (v is None)
        if v is not None:
            assert new["heldout_mape"][k] == pytest.approx(v, abs=0.05), k


def test_a_bad_calibration_file_is_refused_in_one_line(tmp_path, monkeypatch):
    bad = tmp_path / "c.json"
    bad.write_text('{"schema": "something else"}')
    r = invoke("predict", "--hw", "h100", "--calibration", bad)
    assert r.exit_code == 2 and "not an attnsim calibration" in r.output and len(r.output.strip().splitlines()) == 1
    monkeypatch.setenv("ATTNSIM_CALIBRATION", str(tmp_path / "missing.json"))
    r = invoke("predict", "--hw", "h100")
    assert r.exit_code == 2 and "missing.json" in r.output
    r = invoke("predict", "--hw", "h100", "--uncalibrated", "--calibration", bad)
    assert r.exit_code == 2 and "contradict" in r.output


# the target: random k-fold held-out MAPE <= 5% for every published group of >= 20 printed rows
TARGET = 5.0
BIG = sorted(k for k, g in GROUPS.items() if g["rows"] >= 20)
# groups that miss the target today, each with the mechanism still missing (strict: a group that starts
# meeting the target fails here until it is taken off the list)
KNOWN_MISSES = {
    "a100_sxm4_80gb/eager": "5.3%: SageAttention's L=2048 rows run 20-35% slower than L=1024 and 4096 on the SDPA math "
                            "backend (the FlashAttention paper's rows of the same shapes show no such step); not modeled",
    "b200/fa4": "FA4's hd256 2-CTA kernel at short sequences (s=1024: 0.42-0.63 of measured) is not captured: a "
                "per-CTA cost of the non-persistent hd256 kernel, or the rows' assumed batch ('~32k tokens')",
    "a100_sxm4_80gb/triton": "Triton's FlashAttention kernel, fwd+bwd rows only: η and the backward factor are "
                             "not separable (the backward kernel's structure is not priced)",
    "h100_sxm5/triton": "Triton on Hopper: overlap at its bound of 1, the seqlen trend not captured",
    "h100_sxm5/fa3/fp8": "5.4%: with the launch order priced (FA3's causal tiles longest first per head) the fp8 "
                         "rows' causal holdout drops 12.0 -> 8.8% and head-dim holdout 8.5 -> 7.4%, but k-fold rises "
                         "4.7 -> 5.4%: the residuals zig-zag between neighbouring lengths (d=64 non-causal: 0.85, "
                         "1.02, 0.89, 1.00), more than a smooth mechanism moves (the rows are a third party's "
                         "transcription), and d=256 causal keeps a trend (1.10 at 1k to 0.94 at 16k)",
    "h100_sxm5/triton/fp8": "as h100_sxm5/triton; fp8 rows are a third party's transcription",
    "h100_sxm5/cudnn": "7.5%: cuDNN's tiles are not public (FA3's are assumed): d=64 is predicted 0.85-0.95 of its "
                       "time and d=128 1.06-1.16, and its d=64 and d=128 rows alone fit no better (12.9% in sample): "
                       "cuDNN's per-head-dim kernels differ in a way FA3's tiles do not show",
    "h100_sxm5/cudnn/fp8": "as h100_sxm5/cudnn; fp8 rows are a third party's transcription with causal inferred",
}


@pytest.mark.parametrize("key", [pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=KNOWN_MISSES[k]))
                                 if k in KNOWN_MISSES else k for k in BIG])
def test_held_out_error_target(key):
    assert GROUPS[key]["heldout_mape"]["kfold"] <= TARGET


def test_no_calibrated_prediction_beats_the_bound():
    for key, g in GROUPS.items():
        hw, fam = key.split("/")[:2]
        for s in (512, 4096, 16384):
            for causal in (False, True):
                w = Workload(batch=max(1, 16384 // s), seqlen_q=s, heads_q=16, head_dim_qk=128, causal=causal,
                             dtype="fp8" if key.endswith("/fp8") else "fp16")
                try:
                    p = predict(w, hw, fam)
                except Exception:
                    continue
                assert p.time_s >= p.bound.time_s, (key, s, causal)
    assert np.isfinite([g["in_sample_mape"] for g in GROUPS.values()]).all()


def test_decode_is_calibrated_on_chart_read_rows_and_says_so():
    """The published set has no printed decode number, only FlashInfer's bandwidth-utilisation chart
    (approx_chart, +/- 3 points): decode groups are fitted on those readings (the HBM fraction) and the
    time line says the rows were read off a chart."""
    g = GROUPS["h100_sxm5/fa2/decode"]
    assert g["quality"] == ["approx_chart"] and list(g["params"]) == ["hbm"] and g["rows"] == 8
    assert 0.2 <= g["params"]["hbm"]["value"] <= 1.0
    p = predict(Workload(batch=1, seqlen_q=1, seqlen_kv=8192, heads_q=32, phase="decode"), "h100", "fa2")
    assert p.calibration_info["group"] == "h100_sxm5/fa2/decode" and p.calibration_info["transferred_from"] is None
    assert p.rates.hbm_bytes_per_s == pytest.approx(3.35e12 * g["params"]["hbm"]["value"], rel=1e-12)
    out = invoke("predict", "--hw", "h100", "--kernel", "fa2", "--phase", "decode", "--seqlen-kv", "8192").output
    assert "published chart-read rows (h100_sxm5/fa2/decode)" in out
    # a prefill never takes a decode group: the A100 PCIe has decode rows only, so its prefill borrows a fit
    q = predict(Workload(seqlen_q=2048, heads_q=16), "a100_pcie_80gb", "fa2")
    assert q.calibration_info["group"] != "a100_pcie_80gb/fa2/decode" and q.calibration_info["transferred_from"]
