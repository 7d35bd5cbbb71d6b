"""One place resolves a problem (simulator/problem.py): resolve() -> Problem, predict_problem(),
predict_variant(), the Python API, `attnsim variants --json`, the kernels' mask_of, and where the
published reference file is found (validation/published.py)."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from cli_checks import assert_one_line_error, invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import attnsim
from attnsim.simulator.errors import AttnsimError
from attnsim.simulator.problem import FALLBACK_FAMILIES, Problem, predict_problem, predict_variant, resolve
from attnsim.simulator.variants import VARIANTS
from attnsim.simulator.workload import Workload
from attnsim.validation import published


# -- resolve(): defaults and presets ------------------------------------------------------------------------
def test_defaults_of_gqa_mqa_mha():
    p = resolve("gqa")
    assert isinstance(p, Problem) and p.variant.name == "gqa"
    assert (p.workload.heads_q, p.workload.heads_kv) == (32, 8)
    assert p.notes == ("kv heads: 8 (default for gqa; set --kv-heads)",)
    assert (p.workload.seqlen_q, p.workload.seqlen_kv, p.workload.head_dim_qk) == (4096, 4096, 128)
    assert p.kernel is None and p.layout is None and p.hardware is None and p.mask.name == "dense"
    assert resolve("gqa", kv_heads=4).notes == ()
    assert resolve("mqa").workload.heads_kv == 1
    assert resolve("mha", heads=12).workload.heads_kv == 12
    assert resolve("mha", causal=True).mask.name == "causal"
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.kernel = "fa2"


def test_decode_context_comes_from_seqlen():
    w = resolve(phase="decode", seqlen=1000).workload
    assert (w.seqlen_q, w.seqlen_kv) == (1, 1000)
    w = resolve(phase="decode", seqlen_kv=2048, params={"q_per_step": 4}).workload
    assert (w.seqlen_q, w.seqlen_kv) == (4, 2048)
    assert resolve(phase="decode").workload.seqlen_kv == 4096


def test_token_shape_sets_seqlen():
    for kw in ({"token_shape": "16x16"}, {"token_shape": (16, 16)}, {"params": {"token_shape": "16x16"}},
               {"params": {"token_shape": (16, 16)}}, {"params": ["token_shape=16x16"]}):
        p = resolve("na", **kw)
        assert (p.workload.seqlen_q, p.workload.seqlen_kv) == (256, 256), kw
        assert p.params["token_shape"] == (16, 16)
    assert resolve("gna", token_shape="64", params={"kernel_size": 7}).params["kernel_size"] == (7,)


def test_params_as_strings_typed_values_or_cli_texts_resolve_alike():
    forms = [{"window_size": "1024,0"}, {"window_size": (1024, 0)}, {"window_size": [1024, 0]},
             ["window_size=1024,0"], "window_size=1024,0"]
    for params in forms:
        p = resolve("swa", params, causal=True, seqlen=8192)
        assert p.params["window_size"] == (1024, 0), params
        assert p.mask.name == resolve("swa", forms[0], causal=True, seqlen=8192).mask.name
    assert resolve("swa", {"sink": None}).params["sink"] == 0  # None: not given, the default
    assert resolve("mla", {"absorb": "true"}).params["absorb"] == "true"
    assert resolve("moba", {"density": "0.25"}).params["density"] == 0.25


def test_varlen_lengths_from_a_string_or_a_list():
    for seqlens in ("100,200,300", [100, 200, 300], (100, 200, 300)):
        p = resolve("varlen", seqlens=seqlens)
        assert p.workload.seqlens == (100, 200, 300) and p.params["lengths"] == [100, 200, 300]
    p = resolve("varlen", seqlens="uniform:64:3000", batch=6)
    assert len(p.workload.seqlens) == 6
    assert p.notes == ("lengths sampled from uniform:64:3000 with seed 0",)


def test_layouts_eager_and_head_dims_from_params():
    p = resolve("mla", head_dim=64)
    assert p.layout is not None and p.notes == ("--head-dim 64 not used: mla's head dims come from its -p parameters",)
    assert resolve("eager").kernel == "eager"
    assert resolve("sqa").params["query_heads"] == 16  # the value used, not the placeholder 0
    assert resolve("mha", d_model=4096).d_model is None  # the default restated at attention scope


def test_a_variant_object_resolves_like_its_name():
    assert resolve(VARIANTS["swa"]).params == resolve("swa").params


# -- refusals: the CLI's messages, word for word ----------------------------------------------------------------
REFUSALS = [
    (["--variant", "nosuch"], dict(variant="nosuch")),
    (["--variant", "gqa", "--heads", "6"], dict(variant="gqa", heads=6)),
    (["--variant", "mqa", "--kv-heads", "2"], dict(variant="mqa", kv_heads=2)),
    (["--variant", "mha", "--kv-heads", "8"], dict(variant="mha", kv_heads=8)),
    (["-p", "q_per_step=2"], dict(params={"q_per_step": 2})),
    (["--variant", "swa", "-p", "sink=1", "-p", "sink=2"], dict(variant="swa", params=["sink=1", "sink=2"])),
    (["--variant", "swa", "-p", "window_size=nan"], dict(variant="swa", params={"window_size": "nan"})),
    (["--variant", "swa", "-p", "bogus=1"], dict(variant="swa", params={"bogus": 1})),
    (["--token-shape", "8x8"], dict(token_shape="8x8")),
    (["--variant", "na", "--token-shape", "8x8", "-p", "token_shape=8x8"],
     dict(variant="na", token_shape="8x8", params={"token_shape": "8x8"})),
    (["--variant", "na", "--token-shape", "4xq"], dict(variant="na", token_shape="4xq")),
    (["--variant", "na", "--token-shape", "8x8", "--seqlen", "100"], dict(variant="na", token_shape="8x8", seqlen=100)),
    (["--variant", "na", "--token-shape", "8x8", "--causal", "-p", "is_causal=true"],
     dict(variant="na", token_shape="8x8", causal=True, params={"is_causal": True})),
    (["--variant", "na"], dict(variant="na")),
    (["--variant", "varlen"], dict(variant="varlen")),
    (["--seqlens", "1,2"], dict(seqlens="1,2")),
    (["--variant", "varlen", "--seqlens", "1,2", "--batch", "3"], dict(variant="varlen", seqlens=[1, 2], batch=3)),
    (["--variant", "varlen", "--seqlens", "1,2", "--seqlen", "3"], dict(variant="varlen", seqlens="1,2", seqlen=3)),
    (["--phase", "decode", "--seqlen", "10", "--seqlen-kv", "20"], dict(phase="decode", seqlen=10, seqlen_kv=20)),
    (["--phase", "decode", "--seqlen-kv", "10", "-p", "q_per_step=11"],
     dict(phase="decode", seqlen_kv=10, params={"q_per_step": "11"})),
    (["--d-model", "100"], dict(d_model=100)),
    (["--scope", "layer", "--d-model", "0"], dict(scope="layer", d_model=0)),
    (["--rope-dim", "64"], dict(rope_dim=64)),
    (["--scope", "layer", "--rope-dim", "7"], dict(scope="layer", rope_dim=7)),
    (["--variant", "mla", "--scope", "layer", "--rope-dim", "32"], dict(variant="mla", scope="layer", rope_dim=32)),
    (["--variant", "eager", "--kernel", "fa2"], dict(variant="eager", kernel="fa2")),
    (["--kernel", " "], dict(kernel=" ")),
    (["--variant", "duplex"], dict(variant="duplex")),
    (["--variant", "prune"], dict(variant="prune")),
    (["--seqlen", "0"], dict(seqlen=0)),
    (["--dtype", "fp64"], dict(dtype="fp64")),
]


@pytest.mark.parametrize("args,kw", REFUSALS, ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_refusals_read_as_the_cli_says_them(args, kw):
    line = assert_one_line_error(invoke("predict", *args))
    with pytest.raises(AttnsimError) as e:
        resolve(**kw)
    assert line == f"error: {e.value}"


def test_the_hardware_is_loaded_where_the_cli_loads_it():
    """After the workload validates, before the mask: a bad workload is reported before a bad --hw,
    a bad --hw before a mask that cannot be built."""
    with pytest.raises(AttnsimError, match="seqlen_q=0"):
        resolve(seqlen=0, hw="nosuch")
    with pytest.raises(AttnsimError, match="unknown hardware"):
        resolve("duplex", hw="nosuch")
    assert resolve(hw="h100").hardware.key == attnsim.load_hardware("h100").key


# -- predict_problem / predict_variant: the CLI's answer ---------------------------------------------------------
CASES = [
    ("h100", "gqa", {}, {}, []),
    ("a100", "swa", {"window_size": "1024,0"}, {"causal": True, "seqlen": 8192}, ["-p", "window_size=1024,0"]),
    ("h100", "mla", {}, {"phase": "decode", "seqlen_kv": 32768}, []),
    ("mi300x", "mla", {}, {"phase": "decode", "seqlen_kv": 4096}, []),  # the default family falls back
    ("b200", "gna", {"kernel_size": (32, 32), "stride": "8x8"}, {"token_shape": "128x128"},
     ["-p", "kernel_size=32x32", "-p", "stride=8x8"]),
    ("h100", "eager", {}, {"phase": "train", "seqlen": 2048}, []),
    ("h100", "varlen", {"layout": "padded"}, {"seqlens": [100, 2000, 333]}, ["-p", "layout=padded"]),
    ("a100", "moh", {}, {"scope": "layer"}, []),
]


def _cli_args(kw):
    out = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            out.append(flag)
        else:
            out += [flag, ",".join(map(str, v)) if isinstance(v, list) else str(v)]
    return out


@pytest.mark.parametrize("hw,variant,params,kw,cli_params", CASES, ids=lambda x: x if isinstance(x, str) else None)
def test_predict_variant_is_the_clis_answer(hw, variant, params, kw, cli_params):
    r = invoke("predict", "--json", "--hw", hw, "--variant", variant, *_cli_args(kw), *cli_params)
    assert r.exit_code == 0, r.output
    cli = json.loads(r.stdout)
    pred = predict_variant(hw, variant, params, **kw)
    assert pred.time_s == cli["time_s"]
    ours = pred.to_json()
    ours["params"] = {k: list(v) if isinstance(v, tuple) else v for k, v in pred.params.items()}
    assert json.loads(json.dumps(ours)) == cli
    again = predict_problem(resolve(variant, params, **kw), attnsim.load_hardware(hw))
    assert again.time_s == pred.time_s and again.notes == pred.notes


def test_fallback_order_is_data_and_says_why():
    assert FALLBACK_FAMILIES == ("fa3", "fa2", "triton", "eager")
    pred = predict_variant("mi300x", "mla", phase="decode")
    assert any(n.startswith(f"kernel {pred.family.name}: the default ") for n in pred.notes)


def test_predict_problem_needs_a_hardware():
    with pytest.raises(AttnsimError, match="no hardware"):
        predict_problem(resolve())


def test_the_python_api_exports_resolve_lazily():
    assert {"resolve", "Problem", "predict_problem", "predict_variant"} <= set(attnsim.__all__)
    assert attnsim.resolve is resolve and attnsim.Problem is Problem and attnsim.predict_variant is predict_variant
    code = ("import sys, attnsim; assert 'numpy' not in sys.modules; "
            "p = attnsim.resolve('gqa', {'q_per_step': '2'}, phase='decode'); print(p.workload.seqlen_q)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "2", out.stdout + out.stderr


def test_the_cli_keeps_only_option_plumbing():
    import attnsim.cli as cli
    assert not hasattr(cli, "_build") and not hasattr(cli, "_fallback")


# -- `attnsim variants --json` ----------------------------------------------------------------------------------
NEEDS = {  # what a variant cannot do without (no default exists)
    "segment": {"segments": "1024"}, "duplex": {"segments": "2048,2048"}, "prune": {"pruned_heads": 8},
    "vmoba": {"token_shape": "16x16x16", "block": "4x4x4"}, "na": {"token_shape": "64x64"},
    "gna": {"token_shape": "64x64"}, "varlen": {"lengths": "100,200"},
}


def test_variants_json_lists_every_variant_with_its_params():
    r = invoke("variants", "--json")
    assert r.exit_code == 0, r.output
    listed = json.loads(r.stdout)
    assert [v["name"] for v in listed] == list(VARIANTS)
    for v in listed:
        var = VARIANTS[v["name"]]
        assert (v["description"], v["paper"], v["kernel"]) == (var.description, var.paper, var.kernel)
        assert [p["name"] for p in v["params"]] == [p.name for p in var.params]
        for pj, p in zip(v["params"], var.params):
            assert pj["type"] == p.type.__name__ in ("int", "float", "str", "list", "tuple", "bool")
            assert pj["default"] == (list(p.default) if isinstance(p.default, tuple) else p.default)
            assert pj["help"] == p.help and pj["phases"] == list(p.phases)


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_variants_json_defaults_resolve_back_to_the_defaults(phase):
    """Each variant's listed defaults (those of the phase), fed back through resolve(), give the same
    problem as giving nothing."""
    for v in json.loads(invoke("variants", "--json").stdout):
        name = v["name"]
        if phase == "decode" and name in ("na", "gna", "vmoba"):
            continue  # neighborhood attention is priced for prefill and train
        defaults = {p["name"]: p["default"] for p in v["params"] if phase in p["phases"]}
        base = resolve(name, NEEDS.get(name), phase=phase)
        again = resolve(name, {**defaults, **NEEDS.get(name, {})}, phase=phase)
        assert again.params == base.params and again.workload == base.workload, name
        assert again.mask.name == base.mask.name, name


# -- the kernels' mask_of resolves the same way ----------------------------------------------------------------
def test_mask_of_builds_the_resolved_mask():
    from attnsim.kernels.plan import mask_of
    for variant, params in (("swa", {"window_size": (20, 7)}), ("segment", {"segments": (30, 47)}),
                            ("moba", {"block_size": 16, "top_k": 2}), ("gna", {"token_shape": (8, 8), "kernel_size": 3})):
        n = 64 if variant == "gna" else 77
        assert mask_of(variant, params, True, n, n).name == resolve(variant, params, causal=True).mask.name
    for variant, params, match in (("varlen", {}, "cu_seqlens"), ("mla", {}, "changes the head layout"),
                                   ("duplex", {"segments": (30, 47)}, "several passes"),
                                   ("swa", {"q_per_step": 2}, "kernel call"),
                                   ("gna", {"token_shape": (8, 8)}, "holds 64 tokens"),
                                   ("swa", {"window_size": "x"}, "window_size")):
        with pytest.raises(AttnsimError, match=match):
            mask_of(variant, params, False, 70, 70)


# -- property: random parameters resolve or are refused ----------------------------------------------------------
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 5000), st.sampled_from([2 ** 25, 10 ** 40]),
    st.floats(-2, 2, allow_nan=False), st.sampled_from([float("nan"), float("inf"), 1e300]),
    st.sampled_from(["tiled", "rowmajor", "box", "live", "scores", "none", "auto", "true", "packed", "padded",
                     "masked", "ideal", "half", "full", "uniform:1:500", "1024,0", "4x4", "-1,7", "nan", "@@", ""]),
    st.lists(st.integers(-2, 600), min_size=1, max_size=4).map(tuple),
    st.lists(st.integers(-2, 600), min_size=1, max_size=4),
    st.lists(st.booleans(), min_size=1, max_size=3),
    st.lists(st.floats(0, 1), min_size=1, max_size=4))


@st.composite
def random_problem(draw):
    name = draw(st.sampled_from(sorted(VARIANTS)))
    names = [p.name for p in VARIANTS[name].params] + ["bogus"]
    params = draw(st.dictionaries(st.sampled_from(names), VALUES, max_size=4))
    kw = dict(phase=draw(st.sampled_from(["prefill", "decode", "train"])), causal=draw(st.booleans()),
              heads=draw(st.sampled_from([1, 6, 8, 32])), batch=draw(st.sampled_from([1, 3])))
    if name in ("na", "gna", "vmoba") and draw(st.booleans()):
        kw["token_shape"] = draw(st.sampled_from(["64", "16x16", "8x8x8"]))
    if name == "varlen" and draw(st.booleans()):
        kw["seqlens"] = draw(st.sampled_from(["100,200,300", "uniform:1:500", [7]]))
    if draw(st.booleans()):
        kw["seqlen"] = draw(st.sampled_from([1, 100, 4096]))
    if draw(st.booleans()):
        kw["scope"] = "layer"
    return name, params, kw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(random_problem())
def test_random_params_resolve_to_a_valid_problem_or_are_refused(case):
    name, params, kw = case
    try:
        p = resolve(name, params, **kw)
    except AttnsimError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert isinstance(p.workload, Workload) and dataclasses.replace(p.workload) == p.workload  # validates again
    assert set(p.params) == {q.name for q in p.variant.params}
    assert all(isinstance(n, str) for n in p.notes)
    assert p.mask is not None


# -- the published reference file --------------------------------------------------------------------------------
def _csv(path, value="203"):
    path.write_text("hardware,kernel,direction,causal,batch,heads_q,heads_kv,head_dim,seqlen_q,seqlen_kv,dtype,"
                    f"value,source_id\nA100 80GB SXM4,FlashAttention-2,fwd,false,8,32,32,64,2048,2048,fp16,{value},x\n")
    return path


def test_published_path_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(published.ENV_VAR, str(_csv(tmp_path / "mine.csv")))
    assert published.published_path() == tmp_path / "mine.csv"
    assert [r["value"] for r in published.load_published()] == ["203"]
    assert published.load_published(_csv(tmp_path / "other.csv", "99"))[0]["value"] == "99"  # an argument wins
    monkeypatch.setenv(published.ENV_VAR, str(tmp_path / "missing.csv"))
    with pytest.raises(FileNotFoundError, match=f"{published.ENV_VAR}=.*missing.csv"):
        published.load_published()


def test_published_path_not_found_says_where_it_looked(tmp_path, monkeypatch):
    if any((f / published.RELATIVE_PATH).is_file() for f in tmp_path.parents):
        pytest.skip(f"a shared/reference/ folder above {tmp_path} (this machine's): nothing can be missing here")
    monkeypatch.delenv(published.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(published, "_MODULE_DIR", tmp_path / "site-packages" / "attnsim" / "validation")
    with pytest.raises(FileNotFoundError) as e:
        published.published_path()
    msg = str(e.value)
    assert published.ENV_VAR in msg and str(tmp_path / "shared" / "reference" / "published_flashattention.csv") in msg
    assert str(tmp_path / "site-packages" / "shared" / "reference" / "published_flashattention.csv") in msg
    shared = tmp_path / "shared" / "reference"
    shared.mkdir(parents=True)
    _csv(shared / "published_flashattention.csv")
    (tmp_path / "checkout" / "tests").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "checkout" / "tests")  # walking up from the working directory finds ../shared
    assert published.published_path() == shared / "published_flashattention.csv"


def test_published_path_from_the_checkout():
    path = published.published_path()
    assert path.name == "published_flashattention.csv" and path.parent.parent.name == "shared"


def test_resolve_takes_numpy_integers_and_refuses_wrong_types():
    import numpy as np
    assert resolve("gqa", heads=np.int64(32)).workload.heads_kv == 8
    assert resolve("swa", {"window_size": np.array([512, 0])}, seqlen=4096).mask.name == "swa_l512_r0"
    assert resolve("gna", {"token_shape": np.array([16, 16]), "kernel_size": np.int64(7)}).workload.seqlen_q == 256
    for kw, words in ((dict(batch=2.5), "batch=2.5 must be an integer"), (dict(batch="2"), "must be an integer"),
                      (dict(dtype=None), "dtype=None"), (dict(kernel=3), "kernel=3"),
                      (dict(scope="layer", d_model="4096"), "d_model"), (dict(causal="no"), "causal")):
        with pytest.raises(AttnsimError, match=words):
            resolve("mha", **kw)
