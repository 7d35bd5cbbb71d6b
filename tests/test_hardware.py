"""Hardware profiles: every shipped profile loads, derived peaks match the datasheets, bad files fail clearly."""
import csv
from pathlib import Path

import pytest
import yaml

from attnsim.simulator.errors import AttnsimError
from attnsim.simulator.hardware import FIGURES, builtin_profiles, load_hardware

REF = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "hardware_datasheets.csv"
# profile key -> row name in the shared datasheet table (an independent copy of the vendor figures)
CSV_NAME = {
    "a100_sxm4_80gb": "A100 SXM4 80GB", "a100_pcie_80gb": "A100 PCIe 80GB", "h100_sxm5": "H100 SXM5 80GB",
    "h100_pcie": "H100 PCIe 80GB", "h200": "H200 SXM 141GB", "h800": "H800 SXM5 80GB",
    "b200": "B200 (HGX, 1000 W)", "mi300x": "AMD Instinct MI300X", "rtx4090": "NVIDIA RTX 4090", "l40s": "NVIDIA L40S",
}
PROFILES = sorted(builtin_profiles())


def datasheet_rows():
    with open(REF, newline="") as f:
        return {r["gpu"]: r for r in csv.DictReader(f)}


def test_the_ten_devices_ship():
    assert set(PROFILES) == set(CSV_NAME)


@pytest.mark.parametrize("key", PROFILES)
def test_every_figure_has_a_source(key):
    hw = builtin_profiles()[key]
    figures = hw.raw["figures"]
    for name in figures:
        assert name in FIGURES
        assert str(figures[name]["source"]).strip()
    for t in hw.tensor:
        assert t.source.strip()


@pytest.mark.parametrize("key", PROFILES)
def test_per_clock_rates_reproduce_the_vendor_figures_at_the_vendor_clock(key):
    hw = builtin_profiles()[key]
    for t in hw.tensor:
        derived = t.flops_per_clk_per_sm * hw.sm_count * t.datasheet_clock_hz
        assert derived == pytest.approx(t.datasheet_flops_per_s, rel=0.01), (t.dtype, t.accum)


@pytest.mark.parametrize("key", PROFILES)
def test_dense_bf16_peak_matches_the_shared_datasheet_table(key):
    """The profile's bf16 (FP32-accumulate) rate at the vendor clock against the independent table."""
    row = datasheet_rows()[CSV_NAME[key]]
    hw = builtin_profiles()[key]
    t = hw.tensor_rate("bf16", "fp32")
    table = float(row["fp16_bf16_tensor_dense_tflops"].split()[0]) * 1e12
    assert t.flops_per_clk_per_sm * hw.sm_count * t.datasheet_clock_hz == pytest.approx(table, rel=0.01)
    assert hw.sm_count == int(row["sm_or_cu_count"].split()[0])
    assert hw.hbm_bandwidth_bytes_per_s == pytest.approx(float(row["mem_bw_gbs"]) * 1e9, rel=0.01)


@pytest.mark.parametrize("key", PROFILES)
def test_fp32_peak_matches_the_table_at_the_max_or_the_sustained_clock(key):
    """Vendors quote the FP32 peak at the max boost clock (H100: 66.9 TFLOP/s at 1980 MHz) or at the rated
    boost (RTX 4090: 82.6 TFLOP/s at 2520 MHz, below the 3105 MHz maximum GPU Boost can reach): the
    table's figure must match the profile's per-clock rate at one of the two clocks."""
    row = datasheet_rows()[CSV_NAME[key]]
    cell = (row["fp32_nontensor_tflops"].split() or [""])[0]
    if not cell or cell == "n/a":
        pytest.skip("no FP32 figure in the table")
    lo, _, hi = cell.partition("-")
    hw = builtin_profiles()[key]
    derived = [hw.fp32_flops_per_clk_per_sm * hw.sm_count * clock / 1e12
               for clock in (hw.clock_max_hz, hw.clock_sustained_hz)]
    # B200's table gives a 75-80 range and no official clock: allow 6%
    assert any(float(lo) * 0.94 <= d <= float(hi or lo) * 1.06 for d in derived), derived


@pytest.mark.parametrize("key", PROFILES)
def test_no_vendor_figure_is_quoted_above_the_max_clock(key):
    hw = builtin_profiles()[key]
    assert hw.clock_sustained_hz <= hw.clock_max_hz
    assert all(t.datasheet_clock_hz <= hw.clock_max_hz for t in hw.tensor), key


def test_h100_numbers_written_out():
    hw = load_hardware("h100")
    assert hw.peak_flops_per_s("bf16", "fp32", 1.83e9) == pytest.approx(132 * 4096 * 1.83e9)
    assert hw.peak_flops_per_s("bf16") == pytest.approx(132 * 4096 * 1.98e9)  # default: clock_max
    assert hw.peak_flops_per_s("fp8") == pytest.approx(2 * 132 * 4096 * 1.98e9)


def test_rtx4090_fp16_accumulate_is_twice_fp32_accumulate():
    hw = load_hardware("rtx4090")
    assert hw.mma_flops_per_clk_per_sm("fp16", "fp16") == 2 * hw.mma_flops_per_clk_per_sm("fp16", "fp32")


@pytest.mark.parametrize("alias,key", [("h100", "h100_sxm5"), ("A100", "a100_sxm4_80gb"), ("b200", "b200"),
                                       ("mi300x", "mi300x"), ("rtx4090", "rtx4090"), ("4090", "rtx4090"),
                                       ("h200", "h200"), ("l40s", "l40s"), ("h100-pcie", "h100_pcie")])
def test_aliases(alias, key):
    assert load_hardware(alias).key == key


def test_unknown_name_suggests():
    with pytest.raises(AttnsimError, match=r"unknown hardware 'h10' \(did you mean 'h100'\?\)"):
        load_hardware("h10")


def test_fp8_absent_on_a100():
    assert "fp8" not in load_hardware("a100").dtypes
    assert "fp8" in load_hardware("h100").dtypes


# -- a user's own profile ---------------------------------------------------------------
def write_profile(tmp_path, mutate):
    data = yaml.safe_load(Path(load_hardware("h100").path).read_text())
    mutate(data)
    p = tmp_path / "my_gpu.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_user_profile_loads_by_path(tmp_path):
    def fewer_sms(d):  # a 100-SM part: its datasheet figures scale with the SMs, or the profile contradicts itself
        d["figures"]["sm_count"].update(value=100)
        for t in d["tensor"]:
            t["datasheet_flops_per_s"] = float(t["datasheet_flops_per_s"]) * 100 / 132  # YAML 1.1 reads 989.4e12 as text
    p = write_profile(tmp_path, fewer_sms)
    hw = load_hardware(str(p))
    assert hw.sm_count == 100 and hw.key == "my_gpu"
    assert hw.peak_flops_per_s("bf16", "fp32", 1.83e9) == 4096 * 100 * 1.83e9


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d["figures"].pop("hbm_bandwidth_bytes_per_s"), r"my_gpu.yaml: missing required figure figures.hbm_bandwidth_bytes_per_s"),
    (lambda d: d["figures"]["sm_count"].update(value="many"), r"figures.sm_count.value must be a number"),
    (lambda d: d["figures"]["sm_count"].update(value=13.5), r"figures.sm_count.value must be an integer"),
    (lambda d: d["figures"]["hbm_bandwidth_bytes_per_s"].update(value=3350), r"figures.hbm_bandwidth_bytes_per_s.value=3350 is outside"),
    (lambda d: d["figures"]["sm_count"].pop("source"), r"figures.sm_count must be a mapping with 'value' and 'source'"),
    (lambda d: d["figures"].update(hbm_bandwith_bytes_per_s={"value": 1, "source": "x"}), r"unknown figure 'hbm_bandwith_bytes_per_s' \(did you mean"),
    (lambda d: d.update(arch="volta"), r"arch='volta'; allowed"),
    (lambda d: d["tensor"][0].update(dtype="int4"), r"tensor\[0\].dtype='int4'"),
    (lambda d: d["figures"]["clock_sustained_hz"].update(value=3e9), r"clock_sustained_hz exceeds"),
])
def test_malformed_profiles_name_file_and_key(tmp_path, mutate, match):
    p = write_profile(tmp_path, mutate)
    with pytest.raises(AttnsimError, match=match):
        load_hardware(str(p))


def test_not_yaml_and_missing_file(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("figures: [unclosed\n")
    with pytest.raises(AttnsimError, match=r"broken.yaml: not valid YAML"):
        load_hardware(str(p))
    with pytest.raises(AttnsimError, match=r"does not exist"):
        load_hardware(str(tmp_path / "nope.yaml"))
