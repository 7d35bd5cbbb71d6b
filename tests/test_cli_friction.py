"""Issue 9, newcomer friction: a bare group prints its help, the README's commands and kernel example
work as written (the CPU form under the interpreter), `predict --explain` and the clocks line, varlen's
workload line, predict_many's broadcasting and its error, and --d-model at its default."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli_checks import _stderr, assert_one_line_error, invoke

from attnsim.cli import LEGEND, cli
from attnsim.simulator.errors import AttnsimError
from attnsim.simulator.hardware import load_hardware

ROOT = Path(__file__).resolve().parents[1]




def _attnsim_cmd():
    """The installed console script beside this interpreter, else the same entry point through -c."""
    script = Path(sys.executable).parent / "attnsim"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from attnsim.cli import main; main()"]


# -- 1. a bare group prints its help -------------------------------------------------------------------
@pytest.mark.parametrize("args, first", [((), "Usage: attnsim [OPTIONS] COMMAND"),
                                         (("hw",), "Usage: attnsim hw [OPTIONS] COMMAND")])
def test_bare_group_prints_help_runner(args, first):
    r = CliRunner().invoke(cli, list(args), prog_name="attnsim")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("Usage:") and r.stdout.startswith(first), r.stdout[:200]
    assert _stderr(r) == ""
    assert "error" not in r.stdout.splitlines()[0]
    assert "Commands:" in r.stdout and len(r.stdout.splitlines()) > 5  # help as help, not one squashed line


@pytest.mark.parametrize("args", [(), ("hw",)])
def test_bare_group_prints_help_subprocess(args):
    p = subprocess.run(_attnsim_cmd() + list(args), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    assert p.stdout.startswith("Usage:"), p.stdout[:200]
    assert p.stderr == ""
    assert "Commands:" in p.stdout


@pytest.mark.parametrize("args, needle", [(("bogus",), "No such command 'bogus'"),
                                          (("hw", "bogus"), "No such command 'bogus'"),
                                          (("--badopt",), "--badopt"),
                                          (("hw", "show"), "NAME"),
                                          (("predict", "--seqlen", "x"), "--seqlen")])
def test_other_usage_errors_stay_one_line(args, needle):
    assert_one_line_error(invoke(*args), needle)


def test_other_usage_errors_stay_one_line_subprocess():
    p = subprocess.run(_attnsim_cmd() + ["hw", "bogus"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("error: ")


# -- 2, 3. the README ----------------------------------------------------------------------------------
def _readme():
    return (ROOT / "README.md").read_text()


def test_readme_says_the_venv_must_be_active():
    s = _readme()
    use = s[s.index("## Use"):s.index("```bash", s.index("## Use"))]
    assert ". .venv/bin/activate" in use and ".venv/bin/" in use and "benchmarks/" in use
    bench = s[s.index("## Benchmarks"):]
    assert ".venv/bin/python benchmarks/" in bench


def test_readme_setup_commands_unchanged():
    s = _readme()
    assert ("python3 -m venv .venv && .venv/bin/pip install -q . && .venv/bin/attnsim predict --variant gna "
            "--hw b200 --token-shape 256x256 -p kernel_size=80x80 -p q_tile=16x16 -p kv_tile=16x8") in s
    assert ("python3 -m venv .venv && .venv/bin/pip install -q -e '.[test,triton,cupy]' -c .ci/constraints.txt "
            "&& .venv/bin/python -m pytest -q tests") in s


def _readme_cpu_example():
    s = _readme()
    i = s.index('os.environ["TRITON_INTERPRET"] = "1"')
    start = s.rindex("```python\n", 0, i) + len("```python\n")
    return s[start:s.index("```", i)]


def test_readme_cpu_kernel_example_runs():
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("triton") is None:
        pytest.skip("needs torch and triton")
    code = _readme_cpu_example()
    assert 'device="cpu"' in code and "torch.float32" in code
    assert code.index("TRITON_INTERPRET") < code.index("import torch") < code.index("from attnsim.kernels")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the snippet must set it itself
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                       cwd=str(ROOT))
    assert p.returncode == 0, p.stderr[-2000:]
    assert float(p.stdout.strip().splitlines()[-1]) < 1e-4, p.stdout


def test_readme_names_the_kernel_variants_to_use():
    s = _readme()
    assert "causal=True" in s and '"dense"' in s and '"causal"' in s
    from attnsim.simulator.variants import VARIANTS
    assert "mha" in VARIANTS and "dense" not in VARIANTS and "causal" not in VARIANTS  # what the README says


# -- 4. the legend and the clocks line ------------------------------------------------------------------
KEY_TERMS = ["keep P in HBM", "recompute P", "iterated", "live tiles", "BLOCK_M", "BLOCK_N", "128x64 w4 s2",
             "warps", "pipeline stages", "useful FLOPs", "predicted time", "clock_max_hz", "clock_sustained_hz",
             "tensor", "exp", "fp32", "smem", "hbm", "l2", "latency", "schedule"]


def test_legend_in_python_and_docs_agree():
    doc = (ROOT / "docs" / "legend.md").read_text()
    for term in KEY_TERMS:
        assert term in LEGEND, term
        assert term in doc, term
    for label in ("tensor", "exp", "fp32", "smem", "hbm", "l2", "latency"):  # every limit label, in code form
        assert f"**{label}**" in doc, label


def test_predict_explain_appends_the_legend():
    plain = invoke("predict", "--phase", "train", "--seqlen", "2048", "--causal")
    r = invoke("predict", "--phase", "train", "--seqlen", "2048", "--causal", "--explain")
    assert plain.exit_code == 0 and r.exit_code == 0, r.output
    assert r.stdout.startswith(plain.stdout.rstrip("\n"))  # the output, then the legend
    assert r.stdout.rstrip("\n").endswith(LEGEND)
    assert LEGEND not in plain.stdout
    assert "with recompute P" in plain.stdout or "with keep P in HBM" in plain.stdout


def test_predict_explain_with_json_refused():
    assert_one_line_error(invoke("predict", "--json", "--explain"), "--explain")


def test_clocks_line_and_existing_line_beginnings():
    r = invoke("predict", "--hw", "h100", "--seqlen", "2048", "--causal")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    starts = ["  workload   batch 1 · seqlen 2048 -> 2048", "  time       ", "  achieved   ", "  FLOPs      useful",
              "  HBM        ", "  tiles      full ", "  bound by unit (clock_max): ", "  kernel  "]
    idx = [next(i for i, line in enumerate(lines) if line.startswith(s)) for s in starts]
    assert idx == sorted(idx)
    clocks = [line for line in lines if line.startswith("  clocks     ")]
    assert clocks == ["  clocks     bound at clock_max 1.98 GHz; prediction at sustained 1.83 GHz "
                      "(--explain: a legend)"]
    h = load_hardware("h100")
    assert (h.clock_max_hz, h.clock_sustained_hz) == (1.98e9, 1.83e9)
    i = lines.index(clocks[0])
    assert lines[i - 1].startswith("  bound by unit (clock_max): ") and lines[i + 1].startswith("  kernel  ")


# -- 5. varlen's workload line -----------------------------------------------------------------------------
def _workload_line(out):
    return next(line for line in out.splitlines() if line.startswith("  workload   "))


def test_varlen_workload_shows_mean_and_max():
    r = invoke("predict", "--variant", "varlen", "--seqlens", "512,1024,77,4096", "--causal", "--phase", "train")
    assert r.exit_code == 0, r.output
    line = _workload_line(r.stdout)
    assert line.startswith("  workload   batch 4 · seqlens mean 1427, max 4096 · heads 32/32 kv"), line  # 5709/4
    assert "seqlen 4096 -> 4096" not in line
    assert "  varlen     4 sequences of 77..4096 tokens (mean 1427)" in r.stdout  # kept


def test_varlen_decode_workload_names_the_contexts():
    r = invoke("predict", "--variant", "varlen", "--seqlens", "100,300", "--phase", "decode")
    assert r.exit_code == 0, r.output
    line = _workload_line(r.stdout)
    assert "seqlens mean 200, max 300 (contexts; 1 query token per step)" in line, line


def test_fixed_length_workload_line_unchanged():
    r = invoke("predict", "--seqlen", "1000", "--seqlen-kv", "3000")
    assert _workload_line(r.stdout).startswith("  workload   batch 1 · seqlen 1000 -> 3000 · heads 32/32 kv")


# -- 6. predict_many broadcasts, and says so when it cannot --------------------------------------------------
def test_predict_many_broadcasts_with_numpy_rules():
    from attnsim import predict_many
    from attnsim.simulator import vectorized
    assert "broadcast" in vectorized.predict_many.__doc__ and "numpy" in vectorized.predict_many.__doc__
    hw = load_hardware("h100")
    grid = predict_many(hw, "fa3", batch=np.array([1, 2, 4])[:, None], seqlen_q=[2048, 4096, 8192], heads_q=32,
                        head_dim_qk=128)
    pairs = predict_many(hw, "fa3", batch=[1, 2, 4], seqlen_q=[2048, 4096, 8192], heads_q=32, head_dim_qk=128)
    assert grid["time_s"].shape == (3, 3) and pairs["time_s"].shape == (3,)
    assert np.array_equal(np.diagonal(grid["time_s"]), pairs["time_s"])  # pairs = the grid's diagonal
    one = predict_many(hw, "fa3", batch=2, seqlen_q=8192, heads_q=32, head_dim_qk=128)
    assert one["time_s"].shape == () and grid["time_s"][1, 2] == one["time_s"]


def test_predict_many_names_shapes_that_do_not_broadcast():
    from attnsim import predict_many
    hw = load_hardware("h100")
    with pytest.raises(AttnsimError) as e:
        predict_many(hw, batch=[1, 2, 3], seqlen_q=[1024, 2048], heads_q=32, head_dim_qk=128)
    msg = str(e.value)
    assert "do not broadcast" in msg and "batch (3,)" in msg and "seqlen_q (2,)" in msg, msg
    assert "seqlen_kv" not in msg and "heads_q" not in msg  # defaulted copies and scalars are not named
    with pytest.raises(AttnsimError, match=r"heads_kv \(1, 4\)"):
        predict_many(hw, batch=[1, 2, 3], seqlen_q=1024, heads_q=32, heads_kv=[[1, 2, 4, 8]], head_dim_qk=[64, 128])
    with pytest.raises(AttnsimError, match="ragged"):
        predict_many(hw, batch=[[1, 2], [3]], seqlen_q=1024, heads_q=32, head_dim_qk=128)


# -- 7. --d-model equal to its default at attention scope ------------------------------------------------------
def test_d_model_equal_to_default_accepted_at_attention_scope():
    base = json.loads(invoke("predict", "--seqlen", "2048", "--json").stdout)
    r = invoke("predict", "--seqlen", "2048", "--d-model", "4096", "--json")  # 32 heads x 128 = the default
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == base  # no effect
    r = invoke("predict", "--heads", "16", "--head-dim", "64", "--d-model", "1024")
    assert r.exit_code == 0, r.output


def test_d_model_other_than_default_refused_at_attention_scope():
    assert_one_line_error(invoke("predict", "--d-model", "2048"), "--d-model applies to --scope layer only")
    assert_one_line_error(invoke("predict", "--heads", "16", "--d-model", "4096"),
                          "--d-model applies to --scope layer only")  # the default there is 16 x 128 = 2048
    r = invoke("predict", "--d-model", "2048", "--scope", "layer")
    assert r.exit_code == 0, r.output
    assert re.search(r"d_model 2048", r.stdout)


def test_kernel_help_names_every_family():
    """The --kernel help is a static string (the CLI imports no model to print help): it must name
    every family the model accepts."""
    from attnsim.simulator.families import FAMILIES

    out = CliRunner().invoke(cli, ["predict", "--help"], terminal_width=200).output
    listed = re.search(r"kernel family: ([a-z0-9|]+)", out).group(1).split("|")
    assert sorted(listed) == sorted(FAMILIES)
