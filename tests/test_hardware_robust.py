"""Hardware profiles as untrusted input (issue 9): every bad file is refused with one AttnsimError line
naming the file and the key, fast: no traceback, no hang, never a silently wrong number.

One group per class of reproducer: a profile that contradicts itself (tensor rate x SMs x clock vs its
own datasheet figure, repeated tensor rows, duplicate YAML keys); values of the wrong kind (nan, inf,
5,000-digit integers, lists where a name belongs, booleans); the file itself (a named pipe, a device,
over the size limit, an alias bomb, NUL bytes); the `measured` and `convention` blocks; the CLI; and
a property test over random values in a shipped profile.
"""
from __future__ import annotations

import copy
import json
import math
import os
import threading
import time
import unicodedata
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnsim.cli import cli
from attnsim.simulator import hardware
from attnsim.simulator.errors import AttnsimError
from attnsim.simulator.hardware import (FIGURES, MAX_PROFILE_BYTES, TENSOR_RANGES, TENSOR_TOLERANCE,
                                        builtin_profiles, load_hardware)

H100_TEXT = Path(load_hardware("h100").path).read_text()


def h100_dict():
    return yaml.safe_load(H100_TEXT)


def write(tmp_path, text, name="my_gpu.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def edit(old, new, count=1):
    """The H100 profile's text with one exact edit (keeps the file's flow style and line numbers)."""
    assert H100_TEXT.count(old) == count, old
    return H100_TEXT.replace(old, new)


def refused(path, *needles):
    """load_hardware(path) raises AttnsimError: one line, naming the file and each needle."""
    with pytest.raises(AttnsimError) as e:
        load_hardware(str(path))
    msg = str(e.value)
    assert "\n" not in msg and msg == msg.strip() and msg, msg
    assert str(path) in msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


@pytest.fixture(params=["libyaml", "pure-python"])
def both_loaders(request, monkeypatch):
    """Run a YAML-level case under the libyaml loader (the default) and PyYAML's own (the fallback)."""
    if request.param == "pure-python":
        monkeypatch.setattr(hardware, "_ProfileLoader", hardware._profile_loader(yaml.SafeLoader))
    elif not yaml.__with_libyaml__:  # pragma: no cover
        pytest.skip("PyYAML without libyaml")
    return request.param


# -- 1. a profile that contradicts itself --------------------------------------------------------
@pytest.mark.parametrize("key", sorted(builtin_profiles()))
def test_shipped_profiles_agree_with_their_datasheets_well_inside_the_tolerance(key):
    hw = builtin_profiles()[key]
    for t in hw.tensor:
        ratio = t.flops_per_clk_per_sm * hw.sm_count * t.datasheet_clock_hz / t.datasheet_flops_per_s
        assert abs(ratio - 1) < 0.002 < TENSOR_TOLERANCE, (t.dtype, t.accum, ratio)


@pytest.mark.parametrize("old,new,needles", [
    # 16x: the reproducer (per-clock rate typed for a whole GPC)
    ("{dtype: bf16, accum: fp32, flops_per_clk_per_sm: 4096,", "{dtype: bf16, accum: fp32, flops_per_clk_per_sm: 65536,",
     ("tensor[0]", "bf16/fp32", "flops_per_clk_per_sm", "datasheet_flops_per_s", "16x", "5%")),
    # 2x: the sparse figure kept as the dense one
    ("flops_per_clk_per_sm: 8192, datasheet_flops_per_s: 1978.9e12, datasheet_clock_hz: 1.83e9, raw: \"3958 TFLOP/s "
     "with sparsity\", conversion: \"dense = sparse / 2\", source: \"NVIDIA Hopper whitepaper Table 3\"}\n  - {dtype: fp8, "
     "accum: fp16",
     "flops_per_clk_per_sm: 8192, datasheet_flops_per_s: 3958e12, datasheet_clock_hz: 1.83e9, raw: \"3958 TFLOP/s "
     "with sparsity\", conversion: \"dense = sparse / 2\", source: \"NVIDIA Hopper whitepaper Table 3\"}\n  - {dtype: fp8, "
     "accum: fp16", ("tensor[3]", "fp8/fp32", "0.5x")),
    # 8%: the max clock written where the datasheet's tensor clock belongs
    ("{dtype: tf32, accum: fp32, flops_per_clk_per_sm: 2048, datasheet_flops_per_s: 494.7e12, datasheet_clock_hz: 1.83e9",
     "{dtype: tf32, accum: fp32, flops_per_clk_per_sm: 2048, datasheet_flops_per_s: 494.7e12, datasheet_clock_hz: 1.98e9",
     ("tensor[5]", "tf32/fp32", "datasheet_clock_hz")),
    # the SM count changed without the datasheet figures it multiplies
    ("sm_count: {value: 132,", "sm_count: {value: 100,", ("tensor[0]", "figures.sm_count", "0.758x")),
])
def test_tensor_rate_that_contradicts_its_own_datasheet_figure_is_refused(tmp_path, old, new, needles):
    refused(write(tmp_path, edit(old, new)), "contradicts itself", *needles)


def test_tensor_rate_inside_the_tolerance_loads(tmp_path):
    """A datasheet figure rounded as vendors print it (1 PFLOP/s for 989.4 TFLOP/s: 1.1%) is no contradiction."""
    p = write(tmp_path, edit("{dtype: bf16, accum: fp32, flops_per_clk_per_sm: 4096, datasheet_flops_per_s: 989.4e12",
                             "{dtype: bf16, accum: fp32, flops_per_clk_per_sm: 4096, datasheet_flops_per_s: 1.0e+15"))
    assert load_hardware(str(p)).tensor_rate("bf16").datasheet_flops_per_s == 1e15


@pytest.mark.parametrize("row", [
    # identical to tensor[5] (tf32/fp32)
    '  - {dtype: tf32, accum: fp32, flops_per_clk_per_sm: 2048, datasheet_flops_per_s: 494.7e12, '
    'datasheet_clock_hz: 1.83e9, source: "NVIDIA Hopper whitepaper Table 3"}\n',
    # same (dtype, accum) as tensor[0], another rate (consistent in itself: only the repeat is wrong)
    '  - {dtype: bf16, accum: fp32, flops_per_clk_per_sm: 2048, datasheet_flops_per_s: 494.7e12, '
    'datasheet_clock_hz: 1.83e9, source: "x"}\n',
])
def test_two_tensor_rows_for_one_dtype_and_accum_are_refused(tmp_path, row):
    msg = refused(write(tmp_path, H100_TEXT + row), "tensor[6] repeats", "each (dtype, accum) pair is given once")
    assert "tensor[5]" in msg or "tensor[0]" in msg


@pytest.mark.parametrize("old,new,needles", [
    ("vendor: nvidia\n", "vendor: nvidia\nvendor: amd\n", ("the top level", "duplicate key 'vendor'", "line 5", "line 6")),
    ("sm_count: {value: 132,", "sm_count: {value: 132, value: 100,", ("figures.sm_count", "duplicate key 'value'")),
    ("figures:\n", "figures:\n  max_ctas_per_sm: {value: 16, source: x}\n", ("figures", "duplicate key 'max_ctas_per_sm'")),
    ("{dtype: bf16, accum: fp32,", "{dtype: bf16, accum: fp32, dtype: fp8,", ("tensor[0]", "duplicate key 'dtype'")),
])
def test_duplicate_yaml_keys_are_refused(tmp_path, both_loaders, old, new, needles):
    """PyYAML keeps the last of two equal keys without a word: a silently different profile."""
    refused(write(tmp_path, edit(old, new)), "YAML would keep only the last", *needles)


def test_duplicate_keys_compare_as_values_not_spellings(tmp_path):
    p = write(tmp_path, H100_TEXT + "measured:\n  runs: {0x10: a, 16: b}\n")
    refused(p, "measured.runs", "duplicate key '16'")


# -- 2. values of the wrong kind --------------------------------------------------------------------
@pytest.mark.parametrize("value,needles", [
    (".nan", ("figures.sm_count.value=nan", "not a finite number", "[1, 2048]")),
    (".inf", ("figures.sm_count.value=inf", "not a finite number")),
    ("-.inf", ("figures.sm_count.value=-inf",)),
    ("9" * 5000, ("figures.sm_count.value", "5000 digits", "at most 30 digits")),
    ("9" * 5000 + ".5", ("figures.sm_count.value", "not a finite number")),
    ('"' + "9" * 5000 + '"', ("figures.sm_count.value", "not a finite number")),
    ('"nan"', ("figures.sm_count.value='nan'", "not a finite number")),
    ("true", ("figures.sm_count.value must be a number, got True",)),
    ("[132]", ("figures.sm_count.value must be a number, got [132]",)),
    ("{n: 132}", ("figures.sm_count.value must be a number",)),
    ("~", ("figures.sm_count.value must be a number, got None",)),
    ("-132", ("figures.sm_count.value=-132 is outside [1, 2048]",)),
    ("132.5", ("figures.sm_count.value must be an integer",)),
    ("1e400", ("figures.sm_count.value", "not a finite number")),
    ("0b_", ("figures.sm_count.value", "cannot read '0b_' as an integer")),
    ("0x_", ("figures.sm_count.value", "cannot read '0x_' as an integer")),
    ("!!int abc", ("figures.sm_count.value", "explicit YAML tag")),
    ("!!binary aGVsbG8=", ("figures.sm_count.value", "explicit YAML tag")),
])
def test_bad_figure_values_are_refused_in_one_line(tmp_path, value, needles):
    refused(write(tmp_path, edit("sm_count: {value: 132,", f"sm_count: {{value: {value},")), *needles)


@pytest.mark.parametrize("old,new,needles", [
    ("{dtype: bf16,", "{dtype: [bf16],", ("tensor[0].dtype=['bf16']", "allowed: fp32, tf32, bf16, fp16, fp8")),
    ("{dtype: bf16,", "{dtype: {a: 1},", ("tensor[0].dtype={'a': 1}", "allowed")),
    ("{dtype: bf16,", "{dtype: true,", ("tensor[0].dtype=True", "allowed")),
    ("{dtype: bf16, accum: fp32,", "{dtype: bf16, accum: [fp32],", ("tensor[0].accum=['fp32']", "allowed: fp32, fp16")),
    ("{dtype: bf16, accum: fp32, flops_per_clk_per_sm: 4096,", "{dtype: bf16, accum: fp32, flops_per_clk_per_sm: .nan,",
     ("tensor[0].flops_per_clk_per_sm=nan", "[64, 65536]")),
    ("datasheet_flops_per_s: 989.4e12, datasheet_clock_hz: 1.83e9, raw: \"1979 TFLOP/s with sparsity\", conversion: "
     "\"dense = sparse / 2; 989.4e12",
     "datasheet_flops_per_s: " + "9" * 400 + ".0, datasheet_clock_hz: 1.83e9, raw: \"1979 TFLOP/s with sparsity\", "
     "conversion: \"dense = sparse / 2; 989.4e12", ("tensor[0].datasheet_flops_per_s=inf",)),
    ("name: H100 SXM5 80GB", "name: [H100, SXM5]", ("name must be a non-empty string, got ['H100', 'SXM5']",)),
    ("name: H100 SXM5 80GB", "name: " + "7" * 5000, ("name (line 3) is an integer of 5000 digits",)),
    ("name: H100 SXM5 80GB", "name: .nan", ("name must be a non-empty string, got nan",)),
    ("name: H100 SXM5 80GB", 'name: "H100\\nerror: forged"', ("name contains the control character '\\n'",)),
    ("vendor: nvidia", "vendor: false", ("vendor must be a non-empty string, got False",)),
    ("arch: hopper", "arch: [hopper]", ("arch=['hopper']", "allowed")),
    ("schema_version: 1", "schema_version: true", ("schema_version=True", "allowed: 1")),
    ("aliases: [h100,", "aliases: [[h100],", ("aliases[0]=['h100']",)),
    ('sm_count: {value: 132, source: "NVIDIA', 'sm_count: {value: 132, source: ["NVIDIA"], note: "',
     ("figures.sm_count.source must be a non-empty string",)),
    ('sm_count: {value: 132, source: "NVIDIA', 'sm_count: {value: 132, raw: .inf, source: "NVIDIA',
     ("figures.sm_count.raw must be a string, got inf",)),
    ('sm_count: {value: 132, source: "NVIDIA', 'sm_count: {value: 132, 7: x, source: "NVIDIA',
     ("figures.sm_count has unknown field(s) [7]",)),
    ("figures:\n", "figures:\n  [a]: {value: 1, source: x}\n", ("figures", "key at line", "keys are plain names")),
])
def test_wrong_kinds_of_value_are_refused_in_one_line(tmp_path, old, new, needles):
    refused(write(tmp_path, edit(old, new)), *needles)


@pytest.mark.parametrize("where", ["figure", "tensor", "name"])
def test_huge_python_integers_given_to_parse_profile_are_refused(where):
    """The API path (a dict, no YAML): 10**5000 overflows float() and int-to-str; the message stays short."""
    data = h100_dict()
    if where == "figure":
        data["figures"]["sm_count"]["value"] = 10 ** 5000
    elif where == "tensor":
        data["tensor"][0]["flops_per_clk_per_sm"] = 10 ** 5000
    else:
        data["name"] = 10 ** 5000
    with pytest.raises(AttnsimError) as e:
        hardware.parse_profile(data, "api.yaml", "api")
    assert "integer of about 5001 digits" in str(e.value) and len(str(e.value)) < 400 and "\n" not in str(e.value)


def test_nan_and_inf_from_python_are_refused_before_int():
    """int(inf) raises OverflowError and int(nan) ValueError: finiteness is checked first."""
    for v in (math.inf, -math.inf, math.nan):
        data = h100_dict()
        data["figures"]["sm_count"]["value"] = v
        with pytest.raises(AttnsimError, match=r"figures.sm_count.value=-?(inf|nan) is not a finite number"):
            hardware.parse_profile(data, "api.yaml", "api")


# -- 3. the file: regular, bounded, no alias expansion, plain text --------------------------------
def test_named_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    outcome = []

    def load():
        try:
            load_hardware(str(fifo))
        except AttnsimError as e:
            outcome.append(str(e))
        except Exception as e:  # pragma: no cover - reported below
            outcome.append(e)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(timeout=5)
    if t.is_alive():  # pragma: no cover - unblock the reader before failing
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("load_hardware blocked on a named pipe")
    assert len(outcome) == 1 and isinstance(outcome[0], str), outcome
    assert outcome[0].startswith(f"{fifo}: is a named pipe") and "regular YAML file" in outcome[0]
    link = tmp_path / "link.yaml"
    link.symlink_to(fifo)
    refused(link, "is a named pipe")


def test_devices_and_directories_are_refused(tmp_path):
    if os.path.exists("/dev/null"):
        refused("/dev/null", "is a character device", "regular YAML file")
    d = tmp_path / "adir.yaml"
    d.mkdir()
    refused(d, "is a directory")


def test_file_over_the_size_limit_is_refused(tmp_path):
    p = write(tmp_path, H100_TEXT + "#" * MAX_PROFILE_BYTES + "\n")
    refused(p, f"at most {MAX_PROFILE_BYTES:,} bytes")


def test_a_megabyte_of_values_is_refused_fast(tmp_path):
    """Composing costs per node: the count stops at MAX_NODES, not at the end of the file."""
    p = write(tmp_path, "measured:\n  xs: [" + ",".join(["1"] * 500_000) + "]\n")
    t0 = time.perf_counter()
    refused(p, f"more than {hardware.MAX_NODES:,} values")
    assert time.perf_counter() - t0 < 2.0


def _bomb(levels=9, width=9):
    """The 'billion laughs': `levels` anchored lists of `width` aliases each; width**levels leaves, ~1 kB."""
    node = "&l0 [" + ", ".join(['"lol"'] * width) + "]"
    for i in range(1, levels + 1):
        node = f"&l{i} [" + ", ".join([node] + [f"*l{i - 1}"] * (width - 1)) + "]"
    return node


@pytest.mark.parametrize("old,new,needle", [
    ("name: H100 SXM5 80GB", "name: " + _bomb(), "name["),
    ('sm_count: {value: 132, source: "NVIDIA H100 Tensor Core GPU Architecture whitepaper (Hopper), Table 3 (H100 '
     'SXM5: 132 SMs); reference/hardware_datasheets.csv"}',
     "sm_count: {value: 132, source: " + _bomb() + "}", "figures.sm_count.source["),
])
def test_alias_bomb_is_refused_fast(tmp_path, both_loaders, old, new, needle):
    p = write(tmp_path, edit(old, new))
    t0 = time.perf_counter()
    refused(p, needle, "YAML alias", "allows no aliases")
    assert time.perf_counter() - t0 < 2.0


def test_alias_bomb_as_separate_document_keys_is_refused_fast(tmp_path):
    """The classic layout: nine top-level anchors; refused at the first alias, before any expansion."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    p = write(tmp_path, "\n".join(lines) + "\n")
    t0 = time.perf_counter()
    refused(p, "YAML alias")
    assert time.perf_counter() - t0 < 2.0


def test_self_referencing_alias_is_refused(tmp_path, both_loaders):
    refused(write(tmp_path, H100_TEXT + "measured: &m\n  again: *m\n"), "measured.again", "YAML alias")


def test_plain_alias_and_merge_key_are_refused(tmp_path, both_loaders):
    p = write(tmp_path, edit("vendor: nvidia", "vendor: &v nvidia\nconvention: *v").replace(
        "convention: >-", "xconvention: >-"))
    refused(p, "convention", "YAML alias")
    refused(write(tmp_path, edit("sm_count: {value: 132,", "sm_count: {<<: {value: 132},")), "merge key '<<'")


@pytest.mark.parametrize("text,needles", [
    (H100_TEXT.replace("vendor: nvidia", "vendor: nv\x00idia"), ("#x0000", "not allowed")),
    ("\x00", ("#x0000",)),
    ("figures: [unclosed\n  - : :\n", ("not valid YAML at line",)),
    ("a: 1\n---\nb: 2\n", ("not valid YAML", "another document")),
    ("", ("must be a YAML mapping, got None",)),
    ("name: " + "[" * 200 + "]" * 200 + "\n", ("name[0][0]", "nests more than 16 levels deep")),
])
def test_malformed_yaml_gives_one_line(tmp_path, both_loaders, text, needles):
    refused(write(tmp_path, text), *needles)


def test_nesting_beyond_libyaml_limit_is_refused_fast(tmp_path):
    p = write(tmp_path, "name: " + "[" * 100_000 + "]" * 100_000 + "\n")
    t0 = time.perf_counter()
    refused(p, "nest")
    assert time.perf_counter() - t0 < 2.0


def test_not_utf8_is_refused(tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes(H100_TEXT.replace("vendor: nvidia", "vendor: nvidi\xe4").encode("latin-1"))
    refused(p, "not UTF-8 text")


# -- 4. measured and convention ------------------------------------------------------------------------
MEASURED_OK = """measured:
  hbm_bandwidth_bytes_per_s: {value: 3.0e+12, unit: B/s, source: "stream triad, 1 GiB", date: 2025-01-31}
  2024-01-01: {kernel_launch_overhead_s: 2.9e-6}
  runs: [1.0, 2, "three"]
  nested: {a: {b: {c: 1}}}
"""


def test_measured_block_loads_and_dates_stay_the_text_written(tmp_path):
    hw = load_hardware(str(write(tmp_path, H100_TEXT + MEASURED_OK)))
    m = hw.raw["measured"]
    assert m["hbm_bandwidth_bytes_per_s"]["date"] == "2025-01-31"
    assert "2024-01-01" in m  # a date used as a key: the string, not a datetime.date
    assert all(isinstance(k, str) for k in m)
    json.dumps(hw.raw, allow_nan=False)  # plain JSON: no default=, no NaN


@pytest.mark.parametrize("block,needles", [
    ("measured: [1, 2]\n", ("measured must be a mapping",)),
    ("measured: 3\n", ("measured must be a mapping",)),
    ("measured:\n  1: x\n", ("measured has the key 1", "non-empty one-line strings")),
    ("measured:\n  ~: x\n", ("measured has the key None",)),
    ("measured:\n  bw: .nan\n", ("measured.bw=nan", "allowed: a finite number")),
    ("measured:\n  bw: -.inf\n", ("measured.bw=-inf",)),
    ("measured:\n  ok: true\n", ("measured.ok=True",)),
    ("measured:\n  v: ~\n", ("measured.v=None",)),
    ("measured:\n  runs: [1, [2]]\n", ("measured.runs[1]=[2]",)),
    ("measured:\n  runs: [{a: 1}]\n", ("measured.runs[0]={'a': 1}",)),
    ("measured:\n  a: {b: {c: {d: {e: 1}}}}\n", ("measured.a.b.c.d nests mappings deeper than 4 levels",)),
    ("measured:\n  big: " + "9" * 40 + "\n", ("measured.big", "40 digits")),
    ('measured:\n  note: "a\\x07b"\n', ("measured.note contains the control character '\\x07'",)),
])
def test_bad_measured_blocks_are_refused_naming_the_key(tmp_path, block, needles):
    refused(write(tmp_path, H100_TEXT + block), *needles)


@pytest.mark.parametrize("value,needles", [
    ("[a, b]", ("convention must be a string",)),
    ("{a: 1}", ("convention must be a string",)),
    ("42", ("convention must be a string", "got 42")),
    ('"\\e[31m"', ("convention contains the control character '\\x1b'",)),
])
def test_convention_must_be_text(tmp_path, value, needles):
    text = H100_TEXT.replace("convention: >-", f"convention: {value}\nunused: >-")
    text = text.replace("unused: >-\n  Tensor figures are dense (no 2:4 sparsity); where the vendor prints a sparse figure "
                        "it is kept\n  as `raw` and halved. NVIDIA quotes the tensor peaks at 1830 MHz and the FP32 peak "
                        "at 1980 MHz.\n", "")
    assert "unused" not in text
    refused(write(tmp_path, text), *needles)


# -- 5. through the CLI: exit code 2 and one line on stderr -----------------------------------------
def _invoke(*args):
    return CliRunner().invoke(cli, list(args))


def assert_cli_refuses(result, *needles):
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert result.stdout == "" and "Traceback" not in result.output
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.mark.parametrize("text,needles", [
    (edit("sm_count: {value: 132,", "sm_count: {value: .nan,"), ("figures.sm_count.value=nan",)),
    (edit("{dtype: bf16,", "{dtype: [bf16],"), ("tensor[0].dtype",)),
    (edit("sm_count: {value: 132,", "sm_count: {value: " + "9" * 5000 + ","), ("5000 digits",)),
    (edit("name: H100 SXM5 80GB", "name: " + _bomb()), ("YAML alias",)),
    (H100_TEXT + "measured: &m\n  again: *m\n", ("measured.again",)),
    (edit("vendor: nvidia", "vendor: nv\x00idia"), ("#x0000",)),
    (edit("vendor: nvidia\n", "vendor: nvidia\nvendor: amd\n"), ("duplicate key 'vendor'",)),
    (edit("{dtype: bf16, accum: fp32, flops_per_clk_per_sm: 4096,", "{dtype: bf16, accum: fp32, flops_per_clk_per_sm: "
                                                                      "65536,"), ("contradicts itself",)),
])
@pytest.mark.parametrize("command", [("hw", "show", "{}", "--json"), ("hw", "show", "{}"), ("predict", "--hw", "{}")])
def test_cli_refuses_bad_profiles_in_one_line(tmp_path, text, needles, command):
    p = write(tmp_path, text)
    assert_cli_refuses(_invoke(*(a.format(p) for a in command)), str(p), *needles)


def test_cli_refuses_a_named_pipe(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    result = []
    t = threading.Thread(target=lambda: result.append(_invoke("predict", "--hw", str(fifo))), daemon=True)
    t.start()
    t.join(timeout=10)
    if t.is_alive():  # pragma: no cover
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("attnsim predict --hw FIFO blocked")
    assert_cli_refuses(result[0], "is a named pipe")


def test_cli_hw_show_json_with_dates_in_measured(tmp_path):
    p = write(tmp_path, H100_TEXT + MEASURED_OK)
    r = _invoke("hw", "show", str(p), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["measured"]["2024-01-01"] == {"kernel_launch_overhead_s": 2.9e-6}
    assert out["measured"]["hbm_bandwidth_bytes_per_s"]["date"] == "2025-01-31"


# -- a property: random values anywhere in a shipped profile -------------------------------------------
_ODD = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0, -1, 1, 132, 1.83e9, 10 ** 31, 10 ** 300, 10 ** 4000, -(10 ** 50),
                     True, False, None, "", " ", "nan", "inf", "1.98e9", "132", "fp8", "bf16", "fp32", "hopper", "fa3",
                     "2024-01-01", "a\nb", "\x1b[31m", [], {}, [1, 2], ["bf16"], {"value": 1}, {"a": {"b": 1}}]),
    st.integers(min_value=-(10 ** 40), max_value=10 ** 40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.one_of(st.integers(), st.floats(), st.text(max_size=4), st.none()), max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), st.one_of(st.integers(), st.text(max_size=4)),
                    max_size=2),
)
_TOP = ["name", "vendor", "arch", "aliases", "compute_capability", "default_kernel", "schema_version", "convention",
        "measured", "figures", "tensor"]


_SHIPPED = {k: yaml.load(Path(hw.path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            for k, hw in builtin_profiles().items()}
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # yaml.safe_dump's representer, in C where there is libyaml


@st.composite
def mutated_profiles(draw):
    """A shipped profile's parsed dict with one to three places replaced by odd values: a figure's value,
    a whole figure, one of its text fields, a tensor row's field, a top-level key."""
    data = copy.deepcopy(_SHIPPED[draw(st.sampled_from(sorted(_SHIPPED)))])
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["figure value", "figure entry", "figure field", "tensor field", "top"]))
        figures, tensor = data.get("figures"), data.get("tensor")
        if where.startswith("figure") and isinstance(figures, dict) and figures:
            k = draw(st.sampled_from(sorted(figures, key=repr)))
            if where == "figure entry" or not isinstance(figures[k], dict):
                figures[k] = draw(_ODD)
            elif where == "figure value":
                figures[k]["value"] = draw(_ODD)
            else:
                figures[k][draw(st.sampled_from(["source", "raw", "note", "conversion", "extra"]))] = draw(_ODD)
        elif where == "tensor field" and isinstance(tensor, list) and tensor:
            i = draw(st.integers(0, len(tensor) - 1))
            if isinstance(tensor[i], dict):
                tensor[i][draw(st.sampled_from(list(hardware.TENSOR_FIELDS)))] = draw(_ODD)
            else:
                tensor[i] = draw(_ODD)
        else:
            data[draw(st.sampled_from(_TOP))] = draw(_ODD)
    return data


@pytest.fixture(scope="module")
def prop_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("prop")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_profiles())
def test_random_values_load_consistently_or_are_refused_in_one_line(prop_dir, data):
    p = prop_dir / "fuzz.yaml"
    p.write_text(yaml.dump(data, Dumper=_DUMPER, sort_keys=False, allow_unicode=True), encoding="utf-8")
    try:
        hw = load_hardware(str(p))
    except AttnsimError as e:
        msg = str(e)
        assert msg and "\n" not in msg and str(p) in msg, msg
        return
    for k, (typ, lo, hi, required) in FIGURES.items():
        v = getattr(hw, k)
        if v is None:
            assert not required
            continue
        assert type(v) is typ and math.isfinite(v) and lo <= v <= hi, (k, v)
    assert hw.clock_sustained_hz <= hw.clock_max_hz
    assert len({(t.dtype, t.accum) for t in hw.tensor}) == len(hw.tensor)
    for t in hw.tensor:
        for k, lo, hi in TENSOR_RANGES:
            assert math.isfinite(getattr(t, k)) and lo <= getattr(t, k) <= hi
        ratio = t.flops_per_clk_per_sm * hw.sm_count * t.datasheet_clock_hz / t.datasheet_flops_per_s
        assert abs(ratio - 1) <= TENSOR_TOLERANCE
    for s in (hw.name, hw.vendor, hw.compute_capability, hw.default_kernel, *hw.aliases):
        assert isinstance(s, str) and s.strip() and not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in s)
    json.dumps({"key": hw.key, "path": hw.path, **hw.raw}, allow_nan=False)  # what `hw show --json` prints
