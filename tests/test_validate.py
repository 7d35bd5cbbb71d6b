"""`attnsim validate` without a GPU: the one-line refusal, the card-to-profile match, the grid, resume
and the records it writes (a fake backend stands in for the GPU), and the torch backend's kernels and
checks run on the CPU."""
from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
import types

import pytest
from click.testing import CliRunner

from attnsim.simulator.hardware import load_hardware
from attnsim.validation import records as R
from attnsim.validation import validate as V
from attnsim.validation.validate import validate

FAKE_DEVICE = {"name": "NVIDIA H100 80GB HBM3", "hw_key": None, "sm_count": 132, "clock_max_hz": 1.98e9,
               "memory_bytes": 85045821440, "l2_bytes": 52428800, "driver": "550.54.15", "cuda": "12.4",
               "torch": "2.5.1", "triton": "3.1.0", "cupy": None, "cc": "9.0"}


class FakeBackend:
    """The GPU side, faked: times from the shape, errors as told."""

    def __init__(self, device=None, unavailable=(), crash=(), wrong=(), nonfinite=()):
        self._device = dict(device or FAKE_DEVICE)
        self.unavailable, self.crash = set(unavailable), set(crash)
        self.wrong, self.nonfinite = set(wrong), set(nonfinite)
        self.measured, self.ceilings = [], []

    def device(self):
        return dict(self._device)

    def ceiling(self, name, repeats):
        self.ceilings.append(name)
        if name in self.unavailable:
            raise V.Unavailable("needs CuPy")
        t = V.timing_stats([1e-3 * (1 + i / repeats) for i in range(repeats)], "fake")
        return V.CeilingMeasurement(1e12, t, {"params": {"n": 1}})

    def measure(self, case, repeats):
        self.measured.append(case)
        if case.kernel in self.unavailable:
            raise V.Unavailable("SDPA CUDNN_ATTENTION refuses this shape")
        if case.kernel in self.crash:
            raise RuntimeError("CUDA error: an illegal memory access\nwas encountered")
        base = 1e-9 * case.batch * case.heads_q * case.seqlen_q * case.seqlen_kv * case.head_dim
        t = V.timing_stats([base * (1 + 0.01 * i) for i in range(repeats)], "fake")
        if case.kernel in self.nonfinite:
            pairs = [(float("nan"), 1.0, False)]
        else:
            pairs = [(0.5 if case.kernel in self.wrong else 1e-3, 1.0, True)]
        return V.Measurement(t, V.error_block(pairs, "float64 fake"), {"seed": 1})


SMALL = [V.Case("sdpa_flash", "prefill", 4, 4096, 4096, 16, 16, 128, True),
         V.Case("sdpa_cudnn", "prefill", 4, 4096, 4096, 16, 16, 128, False),
         V.Case("triton_decode", "decode", 8, 1, 8192, 32, 8, 128, False)]


def run(backend, out, cases=SMALL, hw="h100", **kw):
    warnings = []
    s = V.run_suite(backend, backend.device(), load_hardware(hw) if hw else None, cases, out, repeats=20,
                    warn=warnings.append, progress=False, **kw)
    return s, warnings


# -- no GPU: exit 2, one line ---------------------------------------------------------------

def _no_backend():
    raise AssertionError("the GPU check must come first")


def _one_line_refusal(result, why):
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"attnsim validate: no CUDA GPU here ({why}")
    assert lines[0].endswith("); run it on a machine with an NVIDIA GPU and torch installed")
    assert "Traceback" not in result.output


def test_no_torch_exits_2_with_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ModuleNotFoundError
    monkeypatch.setattr(V, "make_backend", _no_backend)
    _one_line_refusal(CliRunner().invoke(validate, []), "torch is not installed")


def test_torch_that_fails_to_import_exits_2_with_one_line(monkeypatch):
    class Broken(types.ModuleType):
        def __getattr__(self, name):
            raise AttributeError(name)
    import importlib.abc

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "torch":
                raise OSError("libcudart.so.12: cannot open shared object file\n(second line)")
            return None
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])
    monkeypatch.setattr(V, "make_backend", _no_backend)
    _one_line_refusal(CliRunner().invoke(validate, ["--suite", "full"]), "torch cannot be imported: libcudart.so.12")


def _fake_torch(cuda_version):
    torch = types.ModuleType("torch")
    torch.__version__ = "2.5.1+fake"
    torch.version = types.SimpleNamespace(cuda=cuda_version)
    torch.cuda = types.SimpleNamespace(is_available=lambda: False)
    return torch


@pytest.mark.parametrize("cuda, why", [(None, "torch 2.5.1+fake is a CPU-only build"),
                                       ("12.4", "torch 2.5.1+fake (CUDA 12.4) sees no CUDA device")])
def test_torch_without_cuda_exits_2_with_one_line(monkeypatch, cuda, why):
    monkeypatch.setitem(sys.modules, "torch", _fake_torch(cuda))
    monkeypatch.setattr(V, "make_backend", _no_backend)
    _one_line_refusal(CliRunner().invoke(validate, ["-o", "x.jsonl"]), why)


def test_real_torch_without_a_device_exits_2_with_one_line(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(V, "make_backend", _no_backend)
    _one_line_refusal(CliRunner().invoke(validate, []), f"torch {torch.__version__}")


def test_gpu_check_needs_no_heavy_import_at_module_level():
    code = ("import sys, attnsim.validation.validate; "
            "print(sorted(m for m in ('torch', 'triton', 'cupy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_runs():
    r = CliRunner().invoke(validate, ["--help"])
    assert r.exit_code == 0 and "--suite [quick|full]" in r.output and "--resume / --no-resume" in r.output


def test_too_few_repeats_is_a_usage_error(monkeypatch):
    monkeypatch.setattr(V, "gpu_missing", lambda: None)
    monkeypatch.setattr(V, "make_backend", _no_backend)
    r = CliRunner().invoke(validate, ["--repeats", "5"])
    assert r.exit_code == 2 and "--repeats" in r.stderr


# -- the card and its profile ---------------------------------------------------------------

@pytest.mark.parametrize("name, key", [
    ("NVIDIA H100 80GB HBM3", "h100_sxm5"),
    ("NVIDIA H100 PCIe", "h100_pcie"),
    ("NVIDIA H200", "h200"),
    ("NVIDIA H800", "h800"),
    ("NVIDIA A100-SXM4-80GB", "a100_sxm4_80gb"),
    ("NVIDIA A100 80GB PCIe", "a100_pcie_80gb"),
    ("NVIDIA A100-PCIE-40GB", "a100_pcie_80gb"),
    ("NVIDIA GeForce RTX 4090", "rtx4090"),
    ("NVIDIA L40S", "l40s"),
    ("NVIDIA B200", "b200"),
    ("AMD Instinct MI300X", "mi300x"),
    ("NVIDIA GH200 480GB", None),
    ("NVIDIA H20", None),
    ("Tesla V100-SXM2-16GB", None),
    ("", None),
])
def test_match_profile(name, key):
    assert V.match_profile(name) == key


def test_profile_warnings_name_each_figure_off_by_more_than_5_percent():
    hw = load_hardware("h100_sxm5")
    assert V.profile_warnings(FAKE_DEVICE, hw) == []
    nvl = {**FAKE_DEVICE, "name": "NVIDIA H100 NVL", "sm_count": 132, "memory_bytes": 100 * 2 ** 30,
           "l2_bytes": None, "clock_max_hz": 1.785e9}
    w = V.profile_warnings(nvl, hw)
    assert len(w) == 2
    assert w[0].startswith("NVIDIA H100 NVL has memory 100.0 GiB, profile h100_sxm5 says 80.0 GiB (+25%)")
    assert "max SM clock 1785 MHz" in w[1] and "1980 MHz" in w[1] and "(-10%)" in w[1]
    pcie = {**FAKE_DEVICE, "sm_count": 114, "l2_bytes": 40 * 2 ** 20}
    assert [x.split(" has ")[1].split(" ")[0] for x in V.profile_warnings(pcie, hw)] == ["SM", "L2"]


def test_choose_profile():
    hw, notes = V.choose_profile(FAKE_DEVICE, None)
    assert hw.key == "h100_sxm5" and notes == ["NVIDIA H100 80GB HBM3 -> profile h100_sxm5 (matched by name)"]
    hw, notes = V.choose_profile(FAKE_DEVICE, "h200")
    assert hw.key == "h200" and "(--hw h200)" in notes[0] and any("memory" in n for n in notes[1:])
    hw, notes = V.choose_profile({**FAKE_DEVICE, "name": "Tesla T4"}, None)
    assert hw is None and "no attnsim profile matches 'Tesla T4'" in notes[0]


def test_parse_nvidia_smi():
    assert V.parse_nvidia_smi("1980 MHz, 1755 MHz, 550.54.15, 81559 MiB\n") == {
        "clock_max_hz": 1.98e9, "clock_sm_hz": 1.755e9, "driver": "550.54.15", "memory_bytes": 81559 * 2 ** 20}
    assert V.parse_nvidia_smi("[N/A], [N/A], 535.104.05, [N/A]") == {"driver": "535.104.05"}
    assert V.parse_nvidia_smi("1980 MHz, 1755 MHz, 550, 81559 MiB\n1980 MHz, 345 MHz, 550, 81559 MiB") == {}
    assert V.parse_nvidia_smi("") == {} and V.parse_nvidia_smi("garbage") == {}


def test_nvidia_smi_missing_gives_nothing(monkeypatch):
    monkeypatch.setattr(V.shutil, "which", lambda name: None)
    assert V.nvidia_smi("0") == {}


# -- the grid -------------------------------------------------------------------------------

def test_quick_grid():
    cases = V.suite_cases("quick")
    prefill = [c for c in cases if c.phase == "prefill"]
    decode = [c for c in cases if c.phase == "decode"]
    assert len(prefill) + len(decode) == len(cases)
    assert {c.kernel for c in prefill} == {"sdpa_flash", "sdpa_cudnn", "triton_fwd"}
    assert {c.head_dim for c in prefill} == {64, 128}
    assert {c.seqlen_q for c in prefill} == {512, 1024, 2048, 4096, 8192}
    assert {c.causal for c in prefill} == {False, True}
    for c in prefill:  # FlashAttention's benchmark: 16k tokens, model dim 2048
        assert c.batch * c.seqlen_q == 16384 and c.heads_q * c.head_dim == 2048 and c.seqlen_kv == c.seqlen_q
        assert c.heads_kv == c.heads_q and c.dtype == "bf16"
    assert len(prefill) == 3 * 2 * 5 * 2
    assert {c.kernel for c in decode} == {"sdpa_flash", "sdpa_cudnn", "triton_decode"}
    for c in decode:
        assert (c.heads_q, c.heads_kv, c.seqlen_q, c.causal) == (32, 8, 1, False)
        assert 1 <= c.batch <= 64 and 4096 <= c.seqlen_kv <= 32768
    assert len({V.case_key(c, "x") for c in cases}) == len(cases)  # no shape twice


def test_full_grid_extends_quick():
    quick, full = V.suite_cases("quick"), V.suite_cases("full")
    assert set(quick) <= set(full)
    assert len({V.case_key(c, "x") for c in full}) == len(full)
    assert {c.phase for c in full} == {"prefill", "train", "decode"}
    assert 256 in {c.head_dim for c in full} and 16384 in {c.seqlen_q for c in full}
    train = [c for c in full if c.phase == "train"]
    assert {c.kernel for c in train} == {"sdpa_flash", "sdpa_cudnn", "triton_fwdbwd"}
    eager = [c for c in full if c.kernel == "cupy_eager"]
    assert eager and all(c.dtype == "fp16" and c.seqlen_q <= 4096 for c in eager)


def test_cases_map_to_records_and_workloads():
    for c in V.suite_cases("full"):
        w = c.workload()
        assert (w.batch, w.seqlen_q, w.seqlen_kv, w.heads_q, w.heads_kv, w.head_dim_qk, w.causal, w.phase) == (
            c.batch, c.seqlen_q, c.seqlen_kv, c.heads_q, c.heads_kv, c.head_dim, c.causal, c.phase)
        assert c.family in R.FAMILIES and set(c.shape()) == set(R.SHAPE)
    with pytest.raises(V.AttnsimError, match="suite='huge'; allowed: quick, full"):
        V.suite_cases("huge")
    with pytest.raises(V.AttnsimError, match="top-left"):
        V.Case("sdpa_flash", "prefill", 1, 128, 256, 4, 4, 64, True)


# -- blocks ---------------------------------------------------------------------------------

def test_timing_stats():
    t = V.timing_stats([5e-3, 1e-3, 2e-3, 3e-3, 4e-3] * 4, "m")
    assert t["min_s"] == 1e-3 and t["max_s"] == 5e-3 and t["median_s"] == 3e-3 and t["n"] == 20
    assert t["min_s"] <= t["p10_s"] <= t["median_s"] <= t["p90_s"] <= t["max_s"] and t["method"] == "m"
    same = V.timing_stats([2e-3] * 20, "m")
    assert same["p10_s"] == same["p90_s"] == 2e-3
    for bad in ([], [0.0, 1e-3], [float("nan")], [-1e-3]):
        with pytest.raises(V.Unavailable):
            V.timing_stats(bad, "m")


def test_error_block():
    e = V.error_block([(0.01, 2.0, True), (0.05, 1.0, True)], "float64")
    assert e == {"max_abs": 0.05, "max_rel": 0.05, "reference": "float64", "ok": False}
    assert V.error_block([(0.01, 1.0, True)], "r")["ok"] is True
    nan = V.error_block([(0.0, 1.0, True), (float("nan"), 1.0, False)], "r")
    assert nan["max_abs"] is None and nan["max_rel"] is None and nan["ok"] is False


def test_prediction_of():
    c = SMALL[0]
    assert V.prediction_of(c, None) == {"time_s": None, "bound_s": None, "calibrated": False, "kernel_family": None}
    p = V.prediction_of(c, load_hardware("h100"))
    assert p["time_s"] > p["bound_s"] > 0 and p["kernel_family"] == "fa2" and p["calibrated"] is True  # shipped
    p = V.prediction_of(SMALL[1], load_hardware("h100"))  # cuDNN: its own family if the simulator has one
    assert p["time_s"] > 0 and p["kernel_family"] in ("cudnn", "fa3")
    refused = V.prediction_of(V.Case("sdpa_flash", "prefill", 1, 512, 512, 8, 8, 256, False),
                              load_hardware("rtx4090"))
    assert set(refused) >= {"time_s", "bound_s", "calibrated", "kernel_family"}


def test_default_output(monkeypatch, tmp_path):
    p = V.default_output("NVIDIA H100 80GB HBM3", datetime.date(2025, 1, 31))
    assert p.parts[-3:] == ("measurements", "nvidia-h100-80gb-hbm3", "2025-01-31.jsonl")
    assert V.device_slug("  ") == "unknown-device"


# -- the run: records, resume, skips --------------------------------------------------------

def test_run_writes_records_that_read_back(tmp_path):
    out = tmp_path / "deep" / "m.jsonl"
    b = FakeBackend(unavailable={"exp"})
    s, warnings = run(b, out)
    recs, notes = R.read_records(out)
    assert notes == [] and recs == s.written
    assert [r["kind"] for r in recs] == ["ceiling"] * 3 + ["kernel"] * 3
    assert {r["ceiling"] for r in recs if r["kind"] == "ceiling"} == {"hbm_copy", "matmul_bf16", "l2_read"}
    k = recs[3]
    assert k["kernel"] == "sdpa_flash" and k["family"] == "fa2" and k["shape"] == SMALL[0].shape()
    assert k["device"]["hw_key"] == "h100_sxm5" and k["device"]["name"] == FAKE_DEVICE["name"]
    assert k["timing"]["n"] == 20 and k["error"]["ok"] is True and k["prediction"]["time_s"] > 0
    assert all(r["schema"] == R.SCHEMA for r in recs)
    assert s.unavailable == [("exp", "needs CuPy")] and warnings == ["exp: skipped (needs CuPy)"]


def test_resume_skips_what_is_there(tmp_path):
    out = tmp_path / "m.jsonl"
    run(FakeBackend(), out, cases=SMALL[:2])
    b = FakeBackend()
    s, _ = run(b, out)
    assert b.measured == [SMALL[2]] and b.ceilings == [] and s.skipped == 6 and len(s.written) == 1
    assert len(R.read_records(out)[0]) == 7
    b = FakeBackend()
    s, _ = run(b, out, resume=False)
    assert b.measured == SMALL and len(b.ceilings) == 4 and s.skipped == 0
    assert len(R.read_records(out)[0]) == 14  # appended again, nothing rewritten


def test_resume_is_per_device(tmp_path):
    out = tmp_path / "m.jsonl"
    run(FakeBackend(), out)
    b = FakeBackend(device={**FAKE_DEVICE, "name": "NVIDIA H200"})
    s, _ = run(b, out, hw="h200")
    assert b.measured == SMALL and s.skipped == 0


def test_resume_after_a_crash_mid_append(tmp_path):
    out = tmp_path / "m.jsonl"
    run(FakeBackend(), out, cases=SMALL[:1])
    with open(out, "a") as f:
        f.write('{"schema": "attnsim.measurement/1", "kind": "kernel", "kern')  # killed here
    b = FakeBackend()
    s, warnings = run(b, out)
    assert b.measured == SMALL[1:]
    assert warnings[0] == f"{out}:6: truncated last record skipped"
    assert "dropped a truncated last record" in warnings[1]
    recs, notes = R.read_records(out)
    assert len(recs) == 7 and notes == []


def test_malformed_output_file_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "m.jsonl"
    out.write_text('{"schema": "attnsim.measurement/1"}\n')
    with pytest.raises(R.RecordError, match=r"m\.jsonl:1: kind=None is not known"):
        run(FakeBackend(), out)
    monkeypatch.setattr(V, "gpu_missing", lambda: None)
    monkeypatch.setattr(V, "make_backend", FakeBackend)
    r = CliRunner().invoke(validate, ["-o", str(out)])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 2  # the match, then the one-line refusal
    assert r.stderr.strip().splitlines()[-1].startswith(f"attnsim validate: {out}:1: kind=None is not known")


def test_unavailable_crashed_and_wrong_kernels(tmp_path):
    out = tmp_path / "m.jsonl"
    b = FakeBackend(unavailable={"sdpa_cudnn"}, crash={"triton_decode"}, wrong={"sdpa_flash"})
    s, warnings = run(b, out)
    recs = R.read_records(out)[0]
    kernels = [r for r in recs if r["kind"] == "kernel"]
    assert [r["kernel"] for r in kernels] == ["sdpa_flash"] and kernels[0]["error"]["ok"] is False
    assert s.flagged == [SMALL[0].label()]
    assert any("sdpa_cudnn prefill" in w and "skipped (SDPA CUDNN_ATTENTION refuses" in w for w in warnings)
    assert any("triton_decode decode" in w and "failed (RuntimeError: CUDA error: an illegal memory access was "
               "encountered); skipped" in w for w in warnings)
    assert any("output wrong against the float64 fake (max_rel 5.00e-01 > 0.02); record written with error.ok=false"
               in w for w in warnings)
    s, _ = run(FakeBackend(nonfinite={"sdpa_cudnn"}), tmp_path / "n.jsonl")
    bad = [r for r in s.written if r["kind"] == "kernel" and r["kernel"] == "sdpa_cudnn"][0]
    assert bad["error"]["max_rel"] is None and bad["error"]["ok"] is False


def test_without_a_profile_predictions_are_null(tmp_path):
    s, _ = run(FakeBackend(device={**FAKE_DEVICE, "name": "Tesla T4"}), tmp_path / "m.jsonl", hw=None)
    k = [r for r in s.written if r["kind"] == "kernel"]
    assert all(r["prediction"]["time_s"] is None and r["device"]["hw_key"] is None for r in k)


# -- the command, end to end on a fake GPU ---------------------------------------------------

@pytest.fixture
def fake_gpu(monkeypatch):
    b = FakeBackend(unavailable={"exp", "l2_read"})
    monkeypatch.setattr(V, "gpu_missing", lambda: None)
    monkeypatch.setattr(V, "make_backend", lambda: b)
    return b


def test_command_quick_suite_then_resume(tmp_path, fake_gpu):
    out = tmp_path / "q.jsonl"
    r = CliRunner().invoke(validate, ["-o", str(out), "--repeats", "20"])
    assert r.exit_code == 0, r.output
    n = len(V.suite_cases("quick"))
    recs, _ = R.read_records(out)
    assert len(recs) == n + 2
    assert "attnsim validate: NVIDIA H100 80GB HBM3 -> profile h100_sxm5 (matched by name)" in r.stderr
    assert "warning: exp: skipped (needs CuPy)" in r.stderr
    assert f"wrote {n + 2} records to {out} (0 already there, 2 skipped as unavailable, 0 flagged wrong)" in r.stdout
    assert "sdpa_flash" in r.stdout and "pred/meas" in r.stdout
    r = CliRunner().invoke(validate, ["-o", str(out)])
    assert r.exit_code == 0
    assert f"wrote 0 records to {out} ({n + 2} already there, 2 skipped as unavailable" in r.stdout
    assert len(R.read_records(out)[0]) == n + 2


def test_command_default_output_and_hw(tmp_path, fake_gpu, monkeypatch):
    monkeypatch.setattr(V, "measurements_dir", lambda: tmp_path / "measurements")
    monkeypatch.setattr(V, "suite_cases", lambda suite: SMALL)
    r = CliRunner().invoke(validate, ["--hw", "h200"])
    assert r.exit_code == 0, r.output
    files = list((tmp_path / "measurements" / "nvidia-h100-80gb-hbm3").glob("*.jsonl"))
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    assert len(files) == 1 and files[0].name == today + ".jsonl"
    assert all(r["device"]["hw_key"] == "h200" for r in R.read_records(files[0])[0])
    assert "warning: NVIDIA H100 80GB HBM3 has memory" in r.stderr


def test_command_bad_hw_is_one_line(tmp_path, fake_gpu):
    r = CliRunner().invoke(validate, ["--hw", "h1000", "-o", str(tmp_path / "x.jsonl")])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("attnsim validate: unknown hardware 'h1000'")
    assert not (tmp_path / "x.jsonl").exists()


# -- the torch backend, on the CPU -----------------------------------------------------------

def _wall_clock(fn, repeats, flush):
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


@pytest.mark.parametrize("case", [
    V.Case("sdpa_flash", "prefill", 2, 64, 64, 4, 4, 32, True),
    V.Case("sdpa_flash", "train", 1, 64, 64, 2, 2, 32, True),
    V.Case("sdpa_flash", "decode", 2, 1, 128, 8, 2, 32, False),
], ids=lambda c: c.label())
def test_torch_backend_sdpa_on_cpu(case):
    pytest.importorskip("torch")
    b = V.TorchBackend(device="cpu", timer=_wall_clock, warmup=1)
    m = b.measure(case, 3)
    assert m.timing["n"] == 3 and m.timing["median_s"] > 0
    assert m.error["ok"] is True and m.error["max_rel"] < 2e-2
    assert ("dQ" in m.error["reference"]) == (case.phase == "train")
    rec = V._kernel(b, case, {**FAKE_DEVICE, "hw_key": "h100_sxm5"}, load_hardware("h100"), 3)
    assert R.check_record(rec) is rec


@pytest.mark.parametrize("case", [
    V.Case("triton_fwd", "prefill", 1, 64, 64, 2, 2, 32, True, "fp32"),
    V.Case("triton_decode", "decode", 2, 1, 64, 8, 2, 32, False, "fp32"),
], ids=lambda c: c.label())
def test_torch_backend_triton_on_cpu(case):
    """Under TRITON_INTERPRET=1 (tests/conftest.py) Triton kernels run on CPU tensors, float32."""
    pytest.importorskip("torch")
    pytest.importorskip("triton")
    import os
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs TRITON_INTERPRET=1 (a machine without a GPU)")
    m = V.TorchBackend(device="cpu", timer=_wall_clock, warmup=1).measure(case, 2)
    assert m.error["ok"] is True and m.error["max_rel"] < 1e-4


def test_torch_backend_refused_backend_is_unavailable():
    pytest.importorskip("torch")
    b = V.TorchBackend(device="cpu", timer=_wall_clock, warmup=1)
    with pytest.raises(V.Unavailable, match="SDPA CUDNN_ATTENTION refuses this shape"):
        b.measure(V.Case("sdpa_cudnn", "prefill", 1, 64, 64, 2, 2, 32, False), 2)


def test_records_are_one_json_object_per_line(tmp_path):
    out = tmp_path / "m.jsonl"
    run(FakeBackend(), out)
    for line in out.read_text().splitlines():
        assert isinstance(json.loads(line), dict)


def test_torch_backend_triton_train_on_cpu():
    pytest.importorskip("torch")
    pytest.importorskip("triton")
    import os
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs TRITON_INTERPRET=1 (a machine without a GPU)")
    case = V.Case("triton_fwdbwd", "train", 1, 32, 32, 2, 2, 16, True, "fp32")
    m = V.TorchBackend(device="cpu", timer=_wall_clock, warmup=1).measure(case, 2)
    assert m.error["ok"] is True and "dQ, dK, dV" in m.error["reference"]


def _fake_props():
    return types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", multi_processor_count=132, total_memory=64 << 20,
                                 L2_cache_size=1 << 20, major=9, minor=0, clock_rate=1980000, uuid="abcd-ef",
                                 max_threads_per_multi_processor=2048)


def test_torch_backend_device_block(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda dev: _fake_props())
    asked = []
    monkeypatch.setattr(V, "nvidia_smi", lambda select: asked.append(select) or {"driver": "550.54.15",
                                                                                 "clock_sm_hz": 1.2e9})
    d = V.TorchBackend(device="cpu", timer=_wall_clock).device()
    assert asked == ["GPU-abcd-ef"]
    assert d["name"] == "NVIDIA H100 80GB HBM3" and d["sm_count"] == 132 and d["cc"] == "9.0"
    assert d["clock_max_hz"] == 1.98e9 and d["l2_bytes"] == 1 << 20 and d["driver"] == "550.54.15"
    assert d["torch"] == torch.__version__ and d["hw_key"] is None
    R.check_record(R.ceiling_record(ceiling="hbm_copy", value=1.0, unit="bytes/s", device=d,
                                    timing=V.timing_stats([1e-3] * 20, "m")))


def test_torch_backend_event_timing_loop(monkeypatch):
    """`_time_cuda` with fake CUDA events: warm-up, then sleep, flush, start, run, end per repeat."""
    torch = pytest.importorskip("torch")
    log = []

    class Event:
        n = 0

        def __init__(self, enable_timing):
            assert enable_timing
            Event.n += 1
            self.t = Event.n

        def record(self):
            log.append("event")

        def elapsed_time(self, end):
            return 2.0  # ms

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda dev=None: log.append("sync"))
    monkeypatch.setattr(torch.cuda, "_sleep", lambda cycles: log.append("sleep"), raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda dev: _fake_props())
    b = V.TorchBackend(device="cpu", warmup=2)
    times = b._time_cuda(lambda: log.append("run"), 3, True)
    assert times == [2e-3] * 3
    assert log == ["run", "run", "sync"] + ["sleep", "event", "run", "event"] * 3 + ["sync"]
    assert b._flush_buf.numel() == 2 << 20  # twice the L2


def test_torch_backend_hbm_copy_ceiling(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda dev: _fake_props())
    m = V.TorchBackend(device="cpu", timer=_wall_clock).ceiling("hbm_copy", 3)
    assert m.value > 0 and m.extra["params"]["buffer_bytes"] == 4 << 20 and m.timing["n"] == 3
