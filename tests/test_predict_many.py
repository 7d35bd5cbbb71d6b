"""predict_many takes every variant and returns what `attnsim predict --json` prints for each
configuration: time, bound, FLOPs, bytes, tiles, CTAs, waves, splits (to 1e-9), refusals included.
Random configurations per variant (seeded), through two independent doors: the CLI's option parsing
and predict_many's arrays."""
import json
import zlib

import numpy as np
import pytest

from attnsim.simulator.errors import AttnsimError
from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.variants import VARIANTS
from attnsim.simulator.vectorized import predict_many
from cli_checks import invoke

# each variant's -p values (strings as on the command line) and a token grid where it needs one
PARAMS = {
    "swa": {"window_size": "512,0", "sink": "4"}, "segment": {"segments": "1024"}, "moba": {"block_size": "256"},
    "vmoba": {"token_shape": "16x16x8", "block": "4x4x8"}, "moa": {"spans": "256,1024"},
    "sparse": {"density": "0.2", "clusters": "3"}, "topk": {"top_k": "32"}, "dma": {"top_k": "256"},
    "duplex": {"segments": "512,512,1024"}, "varlen": {"lengths": "100,900,2048"},
    "na": {"token_shape": "32x32", "kernel_size": "7x7"}, "gna": {"token_shape": "64x32", "kernel_size": "16x8",
                                                                "stride": "4x4"},
    "prune": {"pruned_heads": "4"}, "kvcompress": {"rank": "64"}, "shvit": {"qk_dim": "16"},
}
CLI_FLAG = {"seqlen_q": "--seqlen", "seqlen_kv": "--seqlen-kv", "heads_q": "--heads", "heads_kv": "--kv-heads",
            "head_dim_qk": "--head-dim", "batch": "--batch"}
KEYS = ("time_s", "bound_s", "flops", "useful_flops", "hbm_bytes", "ctas", "waves")


def configs(variant, rng, n=6):
    grid = "token_shape" in PARAMS.get(variant, {}) or variant == "varlen"
    for _ in range(n):
        phase = str(rng.choice(["prefill", "train", "decode"]))
        heads = int(rng.choice([8, 16, 32]))
        c = {"batch": int(rng.integers(1, 4)), "heads_q": heads, "head_dim_qk": int(rng.choice([64, 128])),
             "causal": bool(rng.integers(0, 2)), "phase": phase}
        if variant in ("gqa", "kvcompress", "ccgqa"):
            c["heads_kv"] = int(rng.choice([x for x in (1, 2, 4, 8) if heads % x == 0]))
        if not grid:
            if phase == "decode":
                c.update(seqlen_q=int(rng.integers(1, 3)), seqlen_kv=int(rng.integers(512, 8192)))
            else:
                c["seqlen_q"] = 2048 if variant in ("segment", "duplex") else int(rng.integers(256, 4097))
        yield c


def cli_args(variant, c):
    args = ["predict", "--json", "--variant", variant, "--hw", "h100", "--phase", c["phase"]]
    args += ["--causal"] if c["causal"] else []
    for k, flag in CLI_FLAG.items():
        if k in c and not (k == "seqlen_q" and c["phase"] == "decode"):
            args += [flag, str(c[k])]
    p = dict(PARAMS.get(variant, {}))
    takes_steps = "q_per_step" in {x.name for x in VARIANTS[variant].params}
    if c["phase"] == "decode" and "seqlen_q" in c and (takes_steps or c["seqlen_q"] != 1):
        p["q_per_step"] = str(c["seqlen_q"])
    for k, v in p.items():
        args += (["--token-shape", v] if k == "token_shape" else ["--seqlens", v] if k == "lengths"
                 else ["-p", f"{k}={v}"])
    return args


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_predict_many_equals_the_cli_for_every_variant(variant):
    hw = load_hardware("h100")
    rng = np.random.default_rng(zlib.crc32(variant.encode()))
    cs = list(configs(variant, rng))
    answered = 0
    for c in cs:
        r = invoke(*cli_args(variant, c))
        arrays = {k: np.array([v]) for k, v in c.items() if k != "phase"}
        try:
            m = predict_many(hw, None, variant=variant, params=PARAMS.get(variant), phase=c["phase"], **arrays)
        except AttnsimError as e:
            assert r.exit_code == 2, (variant, c, str(e), r.stdout[:200])
            cli_line = r.stderr.strip().removeprefix("error: ")
            assert cli_line.split(";")[0] in str(e), (cli_line, str(e))
            continue
        assert r.exit_code == 0, (variant, c, r.stderr)
        j = json.loads(r.stdout)
        main = next((k for k in j["kernels"] if k["name"] in ("attn_fwd", "attn_decode", "qk_gemm")), None)
        want = {"time_s": j["time_s"], "bound_s": j["bound_s"], "flops": j["flops"], "useful_flops": j["useful_flops"],
                "hbm_bytes": j["hbm_bytes"], "ctas": main["ctas"] if main else 0, "waves": j["waves"]}
        for k in KEYS:
            assert float(m[k][0]) == pytest.approx(want[k], rel=1e-9, abs=0), (variant, c, k)
        assert (m["tiles_full"][0], m["tiles_partial"][0], m["tiles_empty"][0]) == tuple(j["tiles"].values())
        assert m["bound"][0] == j["bound"], (variant, c)
        assert m["memory_bytes"][0] == j["memory_bytes"], (variant, c)
        answered += 1
    assert answered >= 3, f"{variant}: {answered} of 6 random configurations answered"


def test_closed_forms_take_mha_gqa_mqa_as_resolve_does():
    hw = load_hardware("h100")
    mqa = predict_many(hw, None, variant="mqa", batch=2, seqlen_q=[1024, 4096], heads_q=16)
    gqa1 = predict_many(hw, None, heads_kv=1, batch=2, seqlen_q=[1024, 4096], heads_q=16)
    assert (mqa["time_s"] == gqa1["time_s"]).all()
    gqa = predict_many(hw, None, variant="gqa", batch=1, seqlen_q=2048, heads_q=32)  # resolve's default: 8 kv heads
    assert gqa["time_s"] == predict_many(hw, None, heads_kv=8, batch=1, seqlen_q=2048, heads_q=32)["time_s"]
    with pytest.raises(AttnsimError, match="kv-heads"):
        predict_many(hw, None, variant="mha", heads_kv=8, heads_q=32)
    with pytest.raises(AttnsimError, match="configuration 1"):
        predict_many(hw, None, variant="swa", params={"window_size": "64,0"}, seqlen_q=[4096, 0], heads_q=8)


def test_predict_many_over_a_grid_of_a_sparse_variant():
    """A grid (batch x length) of sliding windows: shaped like the broadcast inputs, time growing along both."""
    hw = load_hardware("h100")
    m = predict_many(hw, None, variant="swa", params={"window_size": "1024,0"}, batch=np.array([1, 4])[:, None],
                     seqlen_q=[4096, 16384], heads_q=16)
    assert m["time_s"].shape == (2, 2)
    assert (np.diff(m["time_s"], axis=0) > 0).all() and (np.diff(m["time_s"], axis=1) > 0).all()


# -- property: any input answers consistently or is refused in one line ---------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from attnsim.simulator.problem import predict_problem, resolve  # noqa: E402

PARAM_POOL = [("window_size", "512,0"), ("window_size", "nan"), ("sink", "4"), ("segments", "512"),
              ("block_size", "128"), ("top_k", "2.5"), ("density", "0.3"), ("kernel_size", "7"), ("stride", "2"),
              ("token_shape", "16x16"), ("token_shape", "0x4"), ("lengths", "100,300"), ("kv_lora_rank", "256"),
              ("pruned_heads", "8"), ("bogus", "1"), ("window_size", 7), ("density", None)]
INTS = st.integers(0, 9).flatmap(lambda i: st.sampled_from([0, -3, 2 ** 40, 4096.5]) if i == 9
                                 else st.integers(1, 3000))


@st.composite
def many_args(draw):
    n = draw(st.integers(1, 3))
    arrays = {"batch": st.integers(1, 4), "seqlen_q": INTS, "heads_q": st.sampled_from([8, 16, 12]),
              "head_dim_qk": st.sampled_from([64, 128, 100])}
    kw = {k: draw(st.lists(s, min_size=n, max_size=n)) for k, s in arrays.items() if draw(st.booleans()) or k == "heads_q"}
    kw["variant"] = draw(st.sampled_from([None, *sorted(VARIANTS)]))
    kw["params"] = dict(draw(st.lists(st.sampled_from(PARAM_POOL), max_size=2)))
    kw["phase"] = draw(st.sampled_from(["prefill", "train", "decode", "inference"]))
    kw["causal"] = draw(st.booleans())
    kw["kernel"] = draw(st.sampled_from([None, None, "fa2", "triton", "eager", "cudnn"]))
    return kw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(many_args())
def test_predict_many_answers_consistently_or_refuses_in_one_line(kw):
    hw = load_hardware("h100")
    kernel = kw.pop("kernel")
    try:
        m = predict_many(hw, kernel, **kw)
    except AttnsimError as e:
        assert "\n" not in str(e) and str(e), str(e)
        return
    shape = np.shape(kw.get("seqlen_q", kw["heads_q"]))
    assert all(np.shape(v) == shape for v in m.values()), {k: np.shape(v) for k, v in m.items()}
    assert np.isfinite(m["time_s"]).all() and (m["time_s"] >= m["bound_s"]).all() and (m["bound_s"] > 0).all()
    assert (m["flops"] >= m["useful_flops"]).all() and (m["useful_flops"] >= 0).all()
    # the first configuration, resolved and predicted on its own, gives the same numbers
    c = {k: v[0] for k, v in kw.items() if isinstance(v, list)}
    decode = kw["phase"] == "decode"
    params = dict(kw["params"])
    if decode:
        params.setdefault("q_per_step", c.get("seqlen_q", 1))
    variant = kw["variant"] or "gqa"
    prob = resolve(variant, params, batch=c.get("batch", 1), heads=c["heads_q"],
                   kv_heads=c["heads_q"] if kw["variant"] is None else None,
                   seqlen=None if decode else c.get("seqlen_q", 4096 if not {"token_shape", "lengths"} & set(params)
                                                   else None),
                   head_dim=c.get("head_dim_qk", 128), causal=kw["causal"], phase=kw["phase"], kernel=kernel)
    p = predict_problem(prob, hw, compare=False)
    assert float(m["time_s"][0]) == pytest.approx(p.time_s, rel=1e-9)
    assert int(m["flops"][0]) == p.flops and int(m["hbm_bytes"][0]) == p.hbm_bytes


# -- review findings: each input answers as the single prediction would, or is refused in one line -----------
from attnsim.simulator.rates import Calibration  # noqa: E402

H100 = load_hardware("h100")


@pytest.mark.parametrize("call,words", [
    (dict(variant="gqa", heads_q=32, heads_kv=-1), "heads_kv"),
    (dict(variant="swa", params={"window_size": "512,0", "q_per_step": "2"}, phase="decode", seqlen_q=[4, 1],
          seqlen_kv=1000), "once"),
    (dict(phase="decode", seqlen_q=4, seqlen_kv=2), "exceed the context"),
    (dict(variant="swa", params={"window_size": "64,0"}, phase="decode", seqlen_q=4, seqlen_kv=2), "exceed"),
    (dict(causal="no"), "causal"), (dict(causal=[0.5]), "causal"),
    (dict(scope="layer", d_model=[4096, 8192]), "d_model"),
    (dict(dtype="fp64"), "fp64"), (dict(kv_dtype="int4"), "int4"), (dict(dtype=None), "dtype"),
    (dict(variant="swa", params={"window_size": "64,0"}, seqlen_q=[4096.5]), "whole number"),
])
def test_bad_calls_are_refused_in_one_line(call, words):
    with pytest.raises(AttnsimError, match=words) as e:
        predict_many(H100, call.pop("kernel", None), **call)
    assert "\n" not in str(e.value)


def test_the_two_paths_read_the_same_inputs_the_same_way():
    """Whole floats, upper-case dtypes, causal=None and a hardware named by a string: the closed
    forms and the per-configuration path give the same numbers."""
    fast = predict_many("h100", None, seqlen_q=[4096.0, 1000], heads_q=16, dtype="BF16", causal=None)
    slow = predict_many(H100, None, variant="swa", params={"window_size": "-1,-1"}, seqlen_q=[4096, 1000],
                        heads_q=16, dtype="bf16", causal=False)  # a window reaching every key is dense
    assert fast["time_s"] == pytest.approx(slow["time_s"], rel=1e-9)


def test_a_variant_without_steps_decodes_one_token():
    """shvit declares no q_per_step: one token per step answers (as the CLI does), more is refused."""
    one = predict_many(H100, None, variant="shvit", params={"qk_dim": "16"}, phase="decode", heads_q=1,
                       scope="layer", d_model=512)
    assert one["time_s"] > 0
    with pytest.raises(AttnsimError, match="q_per_step"):
        predict_many(H100, None, variant="shvit", params={"qk_dim": "16"}, phase="decode", seqlen_q=2, heads_q=1,
                     scope="layer", d_model=512)


def test_a_calibration_reaches_both_paths():
    cal = Calibration(tensor=0.5, launch_overhead_s=1e-5)
    for kw in (dict(), dict(variant="swa", params={"window_size": "512,0"})):
        base = predict_many(H100, "fa3", seqlen_q=[4096, 8192], heads_q=32, **kw)
        slow = predict_many(H100, "fa3", seqlen_q=[4096, 8192], heads_q=32, calibration=cal, **kw)
        assert (slow["time_s"] > base["time_s"]).all() and (slow["bound_s"] == base["bound_s"]).all()
    from attnsim.simulator.problem import predict_variant
    p = predict_variant("h100", "swa", {"window_size": "512,0"}, kernel="fa3", calibration=cal, seqlen=8192, heads=32)
    m = predict_many(H100, "fa3", variant="swa", params={"window_size": "512,0"}, seqlen_q=8192, heads_q=32,
                     calibration=cal)
    assert p.calibrated and float(m["time_s"]) == pytest.approx(p.time_s, rel=1e-9)


GROUPED = {"swa": {"window_size": "300,100", "sink": "4"}, "segment": {"segments": "512"},
           "gna": {"token_shape": "64x32", "kernel_size": "16x8", "stride": "4x4"},
           "na": {"token_shape": "8x16x16", "kernel_size": "4x8x8", "dilation": "1x2x1"},
           "sparse": {"density": "0.2", "clusters": "3", "predictor_flops_per_query": "1e6"}}


@pytest.mark.parametrize("hw_name", ["h100", "a100", "b200"])
@pytest.mark.parametrize("variant", sorted(GROUPED))
@pytest.mark.parametrize("phase", ["prefill", "train"])
def test_grouped_geometries_equal_the_per_configuration_loop(hw_name, variant, phase, monkeypatch):
    """Mask variants priced once per geometry over their batches equal the configurations priced one
    at a time (the loop's own answers are `predict`'s: test_predict_many_equals_the_cli_for_every_variant)."""
    from attnsim.simulator import vectorized
    hw = load_hardware(hw_name)
    rng = np.random.default_rng(zlib.crc32(f"{hw_name}{variant}{phase}".encode()))
    n = 40
    kw = dict(batch=rng.integers(1, 17, n), heads_q=rng.choice([8, 16], n), head_dim_qk=rng.choice([64, 128], n),
              causal=rng.integers(0, 2, n).astype(bool))
    if "token_shape" not in GROUPED[variant]:
        kw["seqlen_q"] = rng.choice([1000, 2048], n)
    grouped = predict_many(hw, None, variant=variant, params=GROUPED[variant], phase=phase, **kw)
    monkeypatch.setattr(vectorized, "_by_geometry", lambda *a, **k: None)  # the loop
    loop = predict_many(hw, None, variant=variant, params=GROUPED[variant], phase=phase, **kw)
    for k in grouped:
        if k == "bound":  # the limiting unit's name
            np.testing.assert_array_equal(grouped[k], loop[k], err_msg=k)
        else:
            np.testing.assert_allclose(grouped[k], loop[k], rtol=1e-9, atol=0, err_msg=k)
