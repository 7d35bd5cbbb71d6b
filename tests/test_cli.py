"""The command line: one-line errors with exit code 2, help everywhere, the JSON contract, hw and
variants listings, and no torch/triton/cupy import on the predict path."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest
import yaml

from cli_checks import assert_one_line_error, invoke

from attnsim.cli import cli
from attnsim.simulator.errors import AttnsimError
from attnsim.simulator.hardware import load_hardware




def has_profile(name):
    try:
        load_hardware(name)
        return True
    except AttnsimError:
        return False


# -- errors -----------------------------------------------------------------------------------------
def test_unknown_variant_suggests():
    assert_one_line_error(invoke("predict", "--variant", "gqq"), "unknown variant", "'gqa'", "allowed", "mha", "mqa")


def test_unknown_hardware_suggests():
    line = assert_one_line_error(invoke("predict", "--hw", "h10"), "unknown hardware", "h10", "allowed")
    assert "did you mean" in line and "h100" in line


def test_unknown_kernel():
    line = assert_one_line_error(invoke("predict", "--kernel", "fa5"), "fa5", "allowed")
    for k in ("fa2", "fa3", "fa4", "triton", "eager"):
        assert k in line


def test_kernel_not_for_this_arch():
    assert_one_line_error(invoke("predict", "--hw", "h100", "--kernel", "fa4"), "does not run on", "allowed")


def test_heads_not_divisible_by_kv_heads():
    assert_one_line_error(invoke("predict", "--variant", "gqa", "--heads", "32", "--kv-heads", "5"),
                          "not divisible", "allowed", "divisors of 32")


def test_gqa_without_kv_heads_when_no_default():
    assert_one_line_error(invoke("predict", "--variant", "gqa", "--heads", "6"), "--kv-heads")


def test_mha_with_other_kv_heads():
    assert_one_line_error(invoke("predict", "--variant", "mha", "--heads", "32", "--kv-heads", "8"), "gqa")


@pytest.mark.parametrize("flag,value,field", [
    ("--batch", "0", "batch"), ("--seqlen", "-3", "seqlen_q"), ("--heads", "0", "heads_q"),
    ("--head-dim", "0", "head_dim_qk"), ("--seqlen-kv", "0", "seqlen_kv"), ("--head-dim-v", "-1", "head_dim_v"),
])
def test_non_positive_sizes(flag, value, field):
    assert_one_line_error(invoke("predict", flag, value), field, "positive")


def test_non_integer_size_is_click_usage_error_folded_to_one_line():
    assert_one_line_error(invoke("predict", "--batch", "two"), "two")


def test_bad_dtype():
    assert_one_line_error(invoke("predict", "--dtype", "fp4"), "fp4", "allowed", "bf16", "fp16", "fp8")
    assert_one_line_error(invoke("predict", "--kv-dtype", "int4"), "int4", "allowed")


def test_bad_choice_option():
    assert_one_line_error(invoke("predict", "--phase", "inference"), "inference")


def test_unknown_option():
    assert_one_line_error(invoke("predict", "--no-such-flag"), "--no-such-flag")


def test_unknown_command():
    assert_one_line_error(invoke("frobnicate"), "frobnicate")


@pytest.mark.skipif(not has_profile("a100"), reason="no a100 profile")
def test_fp8_on_a100():
    assert_one_line_error(invoke("predict", "--hw", "a100", "--dtype", "fp8"), "fp8", "allowed", "bf16")


def test_fp8_on_fa2():
    assert_one_line_error(invoke("predict", "--kernel", "fa2", "--dtype", "fp8"), "fa2", "fp8", "allowed")


def test_head_dim_too_large_fa3_h100():
    assert_one_line_error(invoke("predict", "--hw", "h100", "--kernel", "fa3", "--head-dim", "512"),
                          "head_dim_qk=512", "allowed", "256")


@pytest.mark.skipif(not has_profile("b200"), reason="no b200 profile")
def test_head_dim_too_large_fa4_b200():
    # FA4 compiles head dims up to 256 (256 only as 256/256: sm100_hd256_2cta_fmha_forward.py); 512 is past them,
    # and 240 is none of FA4's shapes (<= 128, 192/128, 256/256) although it pads to 256
    assert_one_line_error(invoke("predict", "--hw", "b200", "--kernel", "fa4", "--head-dim", "512"),
                          "head_dim_qk=512", "fa4", "allowed", "256")
    assert_one_line_error(invoke("predict", "--hw", "b200", "--kernel", "fa4", "--head-dim", "240"),
                          "fa4", "240/240", "allowed", "192/128", "256/256")


@pytest.mark.parametrize("param,needle", [
    ("q_per_step", "KEY=VALUE"),  # no '='
    ("q_per_step=@@", "@@"),  # value not in the grammar
    ("q_per_step=", "empty"),
    ("=4", "KEY"),
    ("q_per_step=0", "positive"),
    ("q_per_step=1.5", "integer"),
    ("window=4", "window"),  # unknown parameter of the variant
])
def test_malformed_param(param, needle):
    assert_one_line_error(invoke("predict", "--phase", "decode", "-p", param), needle)


def test_param_only_for_decode():
    assert_one_line_error(invoke("predict", "--phase", "prefill", "-p", "q_per_step=2"), "decode")


def test_d_model_needs_layer_scope():
    # 2048 is not the default model width (32 heads x 128 = 4096, which attention scope accepts)
    assert_one_line_error(invoke("predict", "--d-model", "2048"), "--scope layer")


def _h100_yaml():
    return yaml.safe_load(Path(load_hardware("h100").path).read_text())


def test_profile_file_missing_key(tmp_path):
    data = _h100_yaml()
    del data["figures"]["sm_count"]
    f = tmp_path / "nosm.yaml"
    f.write_text(yaml.safe_dump(data))
    assert_one_line_error(invoke("predict", "--hw", str(f)), str(f), "sm_count")


def test_profile_file_missing_top_level_key(tmp_path):
    data = _h100_yaml()
    del data["arch"]
    f = tmp_path / "noarch.yaml"
    f.write_text(yaml.safe_dump(data))
    assert_one_line_error(invoke("predict", "--hw", str(f)), str(f), "arch")


@pytest.mark.parametrize("value", ["many", 0, 1e12, True])
def test_profile_file_bad_value(tmp_path, value):
    data = _h100_yaml()
    data["figures"]["sm_count"]["value"] = value
    f = tmp_path / "badsm.yaml"
    f.write_text(yaml.safe_dump(data))
    assert_one_line_error(invoke("predict", "--hw", str(f)), str(f), "figures.sm_count")


def test_profile_file_bad_tensor_entry(tmp_path):
    data = _h100_yaml()
    data["tensor"][0]["flops_per_clk_per_sm"] = "fast"
    f = tmp_path / "badtensor.yaml"
    f.write_text(yaml.safe_dump(data))
    assert_one_line_error(invoke("predict", "--hw", str(f)), str(f), "tensor[0]", "flops_per_clk_per_sm")


def test_profile_file_not_yaml_and_missing(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("figures: [unclosed\n  - : :\n")
    assert_one_line_error(invoke("predict", "--hw", str(f)), str(f), "YAML")
    assert_one_line_error(invoke("predict", "--hw", str(tmp_path / "absent.yaml")), "absent.yaml", "does not exist")


def test_profile_file_valid_copy_works(tmp_path):
    f = tmp_path / "myh100.yaml"
    f.write_text(yaml.safe_dump(_h100_yaml()))
    r = invoke("predict", "--hw", str(f), "--seqlen", "1024", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["hardware_key"] == "myh100"
    # a profile of one's own has no shipped calibration: the raw model, as the H100's uncalibrated
    assert out["calibrated"] is False
    ref = json.loads(invoke("predict", "--hw", "h100", "--seqlen", "1024", "--json", "--uncalibrated").stdout)
    assert out["time_s"] == ref["time_s"] and out["flops"] == ref["flops"]


# -- help ---------------------------------------------------------------------------------------------
def _all_command_paths(group, prefix=()):
    yield prefix
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _all_command_paths(cmd, prefix + (name,))
        else:
            yield prefix + (name,)


def test_help_on_every_command():
    paths = list(_all_command_paths(cli))
    assert ("predict",) in paths and ("hw", "list") in paths and ("hw", "show") in paths and ("variants",) in paths
    for path in paths:
        for flag in ("--help", "-h"):
            r = invoke(*path, flag)
            assert r.exit_code == 0, (path, r.output)
            assert "Usage:" in r.output, path


def test_version():
    r = invoke("--version")
    assert r.exit_code == 0 and "attnsim" in r.output


# -- predict --------------------------------------------------------------------------------------------
CONTRACT = ["variant", "hardware", "kernel", "phase", "dtype", "time_s", "bound_s", "bound", "unit_times_s",
            "flops", "useful_flops", "hbm_bytes", "kv_cache_bytes", "memory_bytes", "fits", "tiles", "waves",
            "kernels", "calibrated"]
INT_FIELDS = ["flops", "useful_flops", "hbm_bytes", "kv_cache_bytes", "memory_bytes"]


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _contract_cases():
    """(CLI args, expected by hand): useful FLOPs, KV cache, HBM bytes, memory footprint, kernel rows.
    H100 (the default hardware), bf16 (2 B), d 128, 32 heads unless the args say otherwise."""
    cases = []
    # defaults: MHA, FA3, batch 1, 4096 tokens, dense prefill: Q, O, K+V, one fp32 LSE per query row
    rows, kv = 32 * 4096, 4096 * 32 * 256 * 2
    hbm = rows * 128 * 2 * 2 + kv + rows * 4
    cases.append(((), (2 * 256 * 32 * 4096 * 4096, kv, hbm, hbm, ["attn_fwd"])))
    # GQA 32/8, causal 3000: 3000 x 3001 / 2 live pairs per head; K and V of 8 heads
    rows, kv = 32 * 3000, 3000 * 8 * 256 * 2
    hbm = rows * 128 * 2 * 2 + kv + rows * 4
    cases.append((("--causal", "--seqlen", "3000", "--variant", "gqa", "--heads", "32", "--kv-heads", "8"),
                  (2 * 256 * 32 * (3000 * 3001 // 2), kv, hbm, hbm, ["attn_fwd"])))
    # decode, batch 4, 32k context: 4 x 32 = 128 row blocks >= 0.8 x 132 SMs: FA3 does not split
    rows, kv = 4 * 32, 4 * 32768 * 32 * 256 * 2
    hbm = kv + rows * 128 * 2 * 2
    cases.append((("--phase", "decode", "--seqlen-kv", "32768", "--batch", "4"),
                  (2 * 256 * 4 * 32 * 32768, kv, hbm, hbm + rows * 4, ["attn_decode"])))
    # decode, 3 query tokens per step, 1000-token fp8 cache (1 B per element): 32 row blocks over 8 kv
    # blocks; FA3's heuristic: 1-4 splits fill 32n/132 of a wave, 4 splits 0.97 (the best), 3 splits 0.73 <
    # 0.85 x 0.97: 4 splits, each writing fp32 partial O and LSE (129 x 4 B per row) that the combine reads
    rows, kv = 32 * 3, 1000 * 32 * 256 * 1
    partials = rows * 129 * 4 * 4
    hbm = (kv + rows * 128 * 2 + partials) + (partials + rows * 128 * 2)
    cases.append((("--phase", "decode", "--seqlen-kv", "1000", "-p", "q_per_step=3", "--kv-dtype", "fp8"),
                  (2 * 256 * 32 * 3 * 1000, kv, hbm, rows * 128 * 2 * 2 + kv + rows * 4 + partials,
                   ["attn_decode", "decode_combine"])))
    # train, FA2, 2048 tokens: forward 2(d + dv), backward 2(3d + 2dv) FLOPs per pair
    rows, kv = 32 * 2048, 2048 * 32 * 256 * 2
    hbm = ((rows * 128 * 2 * 2 + kv + rows * 4)  # forward: Q, O, K+V, LSE
           + (2 * rows * 128 * 2 + rows * 4 + rows * 128 * 4)  # preprocess: dO, O in; D, zeroed fp32 dQ out
           + (rows * 256 * 2 + kv + rows * 8 + kv + rows * 128 * 4)  # backward: Q+dO, K+V, LSE+D, dK+dV, dQ fp32
           + (rows * 128 * 4 + rows * 128 * 2))  # dQ convert
    # footprint: Q, O, K, V and their gradients, the LSE and D (fp32 per row), the fp32 dQ accumulator
    mem = 2 * (rows * 128 * 2 * 2 + kv) + 2 * rows * 4 + rows * 128 * 4
    cases.append((("--phase", "train", "--seqlen", "2048", "--kernel", "fa2"),
                  ((2 * 256 + 2 * 640) * 32 * 2048 * 2048, kv, hbm, mem,
                   ["attn_fwd", "bwd_preprocess", "attn_bwd", "bwd_dq_convert"])))
    # eager MQA, 1000 tokens, as PyTorch's standard attention launches it (model.eager_attention): Q and
    # K copied to the GEMM layout (read and written once each; K per query head, as each head's GEMM
    # reads it), S = QK^T per query head, softmax (S read, P written; torch's softmax writes no LSE),
    # V copied to the GEMM layout, O = PV. No mask: no mask kernels.
    sc, kv = 32 * 1000 * 1000, 1000 * 1 * 256 * 2
    op = 32 * 1000 * 128 * 2  # one GEMM operand (Q, the per-head K or V) in fp16
    hbm = (2 * op + 2 * op + 32 * (1000 * 128 + 128 * 1000 + 1000 * 1000) * 2 + 2 * sc * 2
           + 2 * op + 32 * (1000 * 1000 + 1000 * 128 + 1000 * 128) * 2)
    cases.append((("--kernel", "eager", "--seqlen", "1000", "--variant", "mqa"),
                  (2 * 256 * 32 * 1000 * 1000, kv, hbm, 32 * 1000 * 128 * 2 * 2 + kv + 2 * sc * 2,
                   ["q_layout", "k_layout", "qk_gemm", "softmax", "v_layout", "pv_gemm"])))
    # Triton, 777 tokens, d 64
    rows, kv = 32 * 777, 777 * 32 * 128 * 2
    hbm = rows * 64 * 2 * 2 + kv + rows * 4
    cases.append((("--kernel", "triton", "--seqlen", "777", "--head-dim", "64"),
                  (2 * 128 * 32 * 777 * 777, kv, hbm, hbm, ["attn_fwd"])))
    return cases


@pytest.mark.parametrize("args,expect", _contract_cases())
def test_predict_json_contract(args, expect):
    r = invoke("predict", "--json", *args)
    assert r.exit_code == 0, r.output
    raw = json.loads(invoke("predict", "--json", "--uncalibrated", *args).stdout)
    assert raw["calibrated"] is False and raw["calibration"] is None
    out = json.loads(r.stdout)
    for k in CONTRACT:
        assert k in out, k
    for k in INT_FIELDS:
        assert _is_int(out[k]), (k, out[k])
    assert set(out["tiles"]) == {"full", "partial", "empty"}
    assert all(_is_int(v) and v >= 0 for v in out["tiles"].values())
    assert out["kernels"], "no kernel rows"
    for k in out["kernels"]:
        for key in ("name", "time_s", "flops", "hbm_bytes", "bound"):
            assert key in k, key
        assert _is_int(k["flops"]) and _is_int(k["hbm_bytes"])
        assert isinstance(k["time_s"], float) and k["time_s"] > 0
    # calibrated by default (every pair predict accepts has a fit or a transfer), with the error it states
    assert out["calibrated"] is True and out["calibration"]["stated_mape"] > 0 and out["calibration"]["group"]
    assert isinstance(out["fits"], bool)
    assert out["time_s"] >= out["bound_s"] > 0
    assert out["bound"] in out["unit_times_s"]
    useful, kv_cache, hbm, memory, names = expect
    assert [k["name"] for k in out["kernels"]] == names
    assert out["useful_flops"] == useful
    assert out["flops"] >= out["useful_flops"]
    assert out["kv_cache_bytes"] == kv_cache
    assert out["hbm_bytes"] == hbm
    assert out["memory_bytes"] == memory
    assert out["time_s"] >= len(names) * 3e-6  # every kernel pays H100's launch overhead


def test_predict_json_numbers_by_hand():
    # mha, batch 2, 16 heads, 1024 x 1024, d 128, bf16, dense prefill
    out = json.loads(invoke("predict", "--json", "--batch", "2", "--heads", "16", "--seqlen", "1024").stdout)
    assert out["useful_flops"] == 4 * 2 * 16 * 1024 * 1024 * 128
    assert out["kv_cache_bytes"] == 2 * 1024 * 16 * 256 * 2
    assert out["hbm_bytes"] == 2 * 2 * 16 * 1024 * 128 * 2 + 2 * 1024 * 16 * 256 * 2 + 2 * 16 * 1024 * 4
    assert out["variant"] == "mha" and out["kernel"] == "fa3" and out["phase"] == "prefill"
    assert out["workload"]["heads_kv"] == 16


def test_predict_decode_uses_seqlen_as_context():
    out = json.loads(invoke("predict", "--json", "--phase", "decode", "--seqlen", "5000", "--heads", "8").stdout)
    assert out["workload"]["seqlen_q"] == 1 and out["workload"]["seqlen_kv"] == 5000
    assert out["kv_cache_bytes"] == 5000 * 8 * 256 * 2


def test_gqa_with_all_kv_heads_equals_mha_cli():
    a = json.loads(invoke("predict", "--json", "--variant", "mha", "--heads", "16", "--seqlen", "2000",
                          "--causal").stdout)
    b = json.loads(invoke("predict", "--json", "--variant", "gqa", "--heads", "16", "--kv-heads", "16",
                          "--seqlen", "2000", "--causal").stdout)
    for k in ("time_s", "bound_s", "flops", "useful_flops", "hbm_bytes", "kv_cache_bytes", "tiles"):
        assert a[k] == b[k], k
    assert (a["variant"], b["variant"]) == ("mha", "gqa")


def test_mqa_sets_one_kv_head():
    out = json.loads(invoke("predict", "--json", "--variant", "mqa", "--heads", "16", "--seqlen", "512").stdout)
    assert out["workload"]["heads_kv"] == 1
    assert out["kv_cache_bytes"] == 512 * 1 * 256 * 2


def test_predict_human_output():
    r = invoke("predict", "--seqlen", "2048", "--causal")
    assert r.exit_code == 0, r.output
    for s in ("H100", "fa3", "bound", "tiles", "attn_fwd"):
        assert s in r.stdout, s


# -- hw, variants -----------------------------------------------------------------------------------------
def test_hw_list():
    r = invoke("hw", "list")
    assert r.exit_code == 0
    assert "h100_sxm5" in r.stdout and "h100" in r.stdout
    row = next(line for line in r.stdout.splitlines() if line.startswith("h100_sxm5"))
    assert "132" in row and "989.4" in row  # SMs and 132 x 4096 x 1.83 GHz = 989.4 TFLOP/s


def test_hw_show_prints_sources():
    r = invoke("hw", "show", "h100")
    assert r.exit_code == 0, r.output
    assert "H100" in r.stdout
    assert r.stdout.count("source:") >= 20
    assert "sm_count" in r.stdout and "hbm_bandwidth_bytes_per_s" in r.stdout


def test_hw_show_json_and_unknown():
    r = invoke("hw", "show", "h100", "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["figures"]["sm_count"]["value"] == 132
    assert_one_line_error(invoke("hw", "show", "h10"), "unknown hardware")


def test_variants_listing():
    r = invoke("variants")
    assert r.exit_code == 0
    names = {line.split()[0] for line in r.stdout.splitlines() if line and not line.startswith(" ")}
    assert {"mha", "gqa", "mqa"} <= names
    assert "KEY=VALUE" in r.stdout and "q_per_step" in r.stdout
    for kind in ("integer", "float", "boolean", "tuple", "list", "string"):
        assert kind in r.stdout, kind


# -- import hygiene ------------------------------------------------------------------------------------------
def test_help_lists_every_command_without_importing_numpy_or_the_validate_module():
    code = textwrap.dedent("""
        import sys
        from click.testing import CliRunner
        from attnsim.cli import cli
        r = CliRunner().invoke(cli, ["--help"])
        assert r.exit_code == 0, r.output
        for name in ("predict", "compare", "calibrate", "report", "validate", "hw", "variants"):
            assert "  " + name + " " in r.output, name
        bad = [m for m in ("numpy", "attnsim.validation.validate") if m in sys.modules]
        assert not bad, bad
        print("OK")
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "OK"


def test_predict_does_not_import_gpu_stacks():
    code = textwrap.dedent("""
        import sys, json
        from click.testing import CliRunner
        from attnsim.cli import cli
        r = CliRunner().invoke(cli, ["predict", "--json", "--seqlen", "1024", "--causal"])
        assert r.exit_code == 0, r.output
        json.loads(r.stdout)
        r = CliRunner().invoke(cli, ["predict", "--phase", "decode", "--kernel", "fa2"])
        assert r.exit_code == 0, r.output
        bad = [m for m in ("torch", "triton", "cupy", "scipy", "jinja2") if m in sys.modules]  # cold start
        assert not bad, bad
        print("OK")
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "OK"


# -- found by a reviewer trying the CLI as a new user ---------------------------------------------
def test_profile_file_not_text_and_directory(tmp_path):
    f = tmp_path / "binary.yaml"
    f.write_bytes(bytes(range(256)))
    assert_one_line_error(invoke("predict", "--hw", str(f)), str(f), "UTF-8")
    d = tmp_path / "adir.yaml"
    d.mkdir()
    assert_one_line_error(invoke("predict", "--hw", str(d)), str(d), "directory")


@pytest.mark.parametrize("key,value,needles", [
    ("schema_version", 2, ("schema_version=2", "allowed: 1")),
    ("name", ["a", "b"], ("name must be a non-empty string",)),
    ("default_kernel", "fa9", ("default_kernel='fa9'", "allowed")),
    ("default_kernel", "fa4", ("default_kernel='fa4' does not run on arch 'hopper'", "fa3")),
])
def test_profile_file_bad_top_level_values(tmp_path, key, value, needles):
    data = _h100_yaml()
    data[key] = value
    f = tmp_path / "bad_top.yaml"
    f.write_text(yaml.safe_dump(data))
    assert_one_line_error(invoke("predict", "--hw", str(f)), str(f), *needles)


def test_decode_refuses_seqlen_and_seqlen_kv_together():
    assert_one_line_error(invoke("predict", "--phase", "decode", "--seqlen", "100", "--seqlen-kv", "4096"),
                          "--seqlen-kv is the context", "q_per_step")


def test_decode_seqlen_alone_is_the_context():
    r = invoke("predict", "--phase", "decode", "--seqlen", "1000", "--json")
    j = json.loads(r.stdout)
    assert (j["workload"]["seqlen_q"], j["workload"]["seqlen_kv"]) == (1, 1000)


def test_q_per_step_larger_than_context():
    assert_one_line_error(invoke("predict", "--phase", "decode", "--seqlen-kv", "64", "-p", "q_per_step=65"),
                          "q_per_step=65", "64")


def test_param_given_twice():
    assert_one_line_error(invoke("predict", "--phase", "decode", "-p", "q_per_step=2", "-p", "q_per_step=3"),
                          "twice")


def test_kv_dtype_wider_than_compute():
    assert_one_line_error(invoke("predict", "--dtype", "fp8", "--kv-dtype", "bf16"), "wider", "allowed: fp8")


def test_dtype_is_case_insensitive():
    assert json.loads(invoke("predict", "--dtype", "BF16", "--json").stdout)["dtype"] == "bf16"


def test_empty_kernel_name():
    assert_one_line_error(invoke("predict", "--kernel", ""), "--kernel", "allowed")


def test_fp8_train_without_fp8_backward():
    assert_one_line_error(invoke("predict", "--hw", "h100", "--dtype", "fp8", "--phase", "train"),
                          "no fp8 backward", "allowed for train")


def test_fp16_accumulation_on_a_family_without_it():
    assert_one_line_error(invoke("predict", "--kernel", "fa2", "--dtype", "fp16", "--qk-accum", "fp16"),
                          "accumulates in fp32 only", "triton")


@pytest.mark.skipif(not has_profile("mi300x"), reason="no mi300x profile")
@pytest.mark.parametrize("phase", ["prefill", "decode", "train"])
@pytest.mark.parametrize("d", [64, 128, 256])
def test_mi300x_default_kernel_predicts_every_phase(phase, d):
    r = invoke("predict", "--hw", "mi300x", "--phase", phase, "--head-dim", str(d), "--json")
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    assert j["time_s"] >= j["bound_s"] > 0


# -- compare -----------------------------------------------------------------------------------------
def test_compare_matches_separate_predictions():
    args = ["--hw", "b200", "--token-shape", "64x64", "--heads", "8"]
    r = invoke("compare", *args, "--case", "mha", "--case", "gna kernel_size=16x16", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [x["case"] for x in rows] == ["mha", "gna kernel_size=16x16"]
    mha = json.loads(invoke("predict", "--hw", "b200", "--seqlen", "4096", "--heads", "8", "--json").stdout)
    gna = json.loads(invoke("predict", "--variant", "gna", *args, "-p", "kernel_size=16x16", "--json").stdout)
    assert rows[0]["time_s"] == mha["time_s"] and rows[1]["time_s"] == gna["time_s"]
    assert rows[1]["speedup_vs_first"] == pytest.approx(mha["time_s"] / gna["time_s"])
    table = invoke("compare", *args, "--case", "mha", "--case", "gna kernel_size=16x16")
    assert table.exit_code == 0 and "vs first" in table.stdout and "gna kernel_size=16x16" in table.stdout


def test_compare_errors():
    assert_one_line_error(invoke("compare", "--case", "bogus"), "unknown variant", "allowed")
    assert_one_line_error(invoke("compare", "--case", ""), "--case is empty")
    assert_one_line_error(invoke("compare", "--case", "swa window_size=a"), "window_size")
