"""Every bad input of the public kernel API (`attention`, `decode`) is refused before launch with a
TypeError (the argument's kind) or a ValueError (its value) that names the argument; `decode` refuses
what `attention` refuses. The reproducers of issue 9's "Kernels" bullet, each a test, on tiny shapes
under the interpreter (conftest.py sets TRITON_INTERPRET=1 without a GPU)."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

import attnsim.kernels.triton_attention as ta  # noqa: E402
from attnsim.kernels import attention, decode, decode_reference, reference  # noqa: E402

GPU = torch.cuda.is_available()
DEV = "cuda" if GPU else "cpu"


@pytest.fixture
def no_launch(monkeypatch):
    """Any plan build or kernel launch fails the test: a refusal must come before both."""
    def boom(*a, **k):
        raise AssertionError("reached a plan build or a kernel launch")

    class Unlaunchable:
        def __getitem__(self, grid):
            return boom

    for name in ("build_plan", "_fwd", "_bwd"):
        monkeypatch.setattr(ta, name, boom)
    for name in ("_decode_split_kernel", "_decode_combine_kernel"):
        monkeypatch.setattr(ta, name, Unlaunchable())


def test_the_no_launch_guard_bites(no_launch):
    """The guard the refusal tests run under does stop a valid call (else they would prove nothing)."""
    for call in (lambda: attention_call()(), lambda: decode_call()()):
        with pytest.raises(AssertionError, match="reached a plan build or a kernel launch"):
            call()


def r(*shape, dtype=torch.float32):
    return torch.randn(*shape, device=DEV, dtype=dtype)


def attention_call(**over):
    """attention on (batch 1, heads 2/1, 8 tokens, d 16, dv 8) operands, any of them replaced."""
    args = dict(q=r(1, 2, 8, 16), k=r(1, 1, 8, 16), v=r(1, 1, 8, 8))
    args.update(over)
    return lambda **kw: attention(args.pop("q"), args.pop("k"), args.pop("v"), **args, **kw)


def decode_call(**over):
    """decode on (batch 1, heads 2/1, 1 step token, d 16, dv 8, context 8) operands, any replaced."""
    args = dict(q=r(1, 2, 1, 16), k_cache=r(1, 1, 8, 16), v_cache=r(1, 1, 8, 8))
    args.update(over)
    return lambda **kw: decode(args.pop("q"), args.pop("k_cache"), args.pop("v_cache"), **args, **kw)


ENTRY = {"attention": (attention_call, ("q", "k", "v")), "decode": (decode_call, ("q", "k_cache", "v_cache"))}
SHAPES = {"attention": {"q": (1, 2, 8, 16), "k": (1, 1, 8, 16), "v": (1, 1, 8, 8)},
          "decode": {"q": (1, 2, 1, 16), "k_cache": (1, 1, 8, 16), "v_cache": (1, 1, 8, 8)}}


# -- the operands: kind, data, dtype -------------------------------------------------------------------
BAD_OPERANDS = [
    ("numpy", lambda s: np.zeros(s, dtype=np.float32), TypeError, "expected torch.Tensor"),
    ("list", lambda s: np.zeros(s).tolist(), TypeError, "expected torch.Tensor"),
    ("meta", lambda s: torch.empty(s, device="meta"), ValueError, "meta tensor"),
    ("int32", lambda s: torch.ones(s, dtype=torch.int32, device=DEV), TypeError, "dtype torch.int32"),
    ("int64", lambda s: torch.ones(s, dtype=torch.int64, device=DEV), TypeError, "dtype torch.int64"),
    ("bool", lambda s: torch.ones(s, dtype=torch.bool, device=DEV), TypeError, "dtype torch.bool"),
    ("float64", lambda s: torch.randn(s, dtype=torch.float64, device=DEV), TypeError, "dtype torch.float64"),
    ("complex", lambda s: torch.randn(s, dtype=torch.complex64, device=DEV), TypeError, "dtype torch.complex64"),
    ("3-d", lambda s: torch.randn(s[1:], device=DEV), ValueError, "must have 4 dimensions"),
]


@pytest.mark.parametrize("kind,make,exc,what", BAD_OPERANDS, ids=[c[0] for c in BAD_OPERANDS])
@pytest.mark.parametrize("entry", ENTRY)
def test_bad_operands_are_refused_naming_the_argument(entry, kind, make, exc, what, no_launch):
    call, names = ENTRY[entry]
    for name in names:
        with pytest.raises(exc, match=rf"^{name}\b.*{what}|^{name}: {what}"):
            call(**{name: make(SHAPES[entry][name])})()


@pytest.mark.parametrize("entry", ENTRY)
def test_mixed_dtypes_are_refused_not_cast(entry, no_launch):
    call, names = ENTRY[entry]
    for name in names:
        s = SHAPES[entry][name]
        with pytest.raises(TypeError, match=rf"mixed dtypes: .*{name} torch.float16"):
            call(**{name: r(*s, dtype=torch.float16)})()


def test_mixed_devices_are_refused(no_launch):
    if not GPU:
        pytest.skip("one device only")
    with pytest.raises(ValueError, match="different devices.*k on cpu"):
        attention_call(k=torch.randn(1, 1, 8, 16))()


# -- sizes -----------------------------------------------------------------------------------------------
ZERO = {"attention": [("batch", {"q": (0, 2, 8, 16), "k": (0, 1, 8, 16), "v": (0, 1, 8, 8)}),
                      ("heads_q", {"q": (1, 0, 8, 16)}),
                      ("heads_kv", {"k": (1, 0, 8, 16), "v": (1, 0, 8, 8)}),
                      ("head_dim", {"q": (1, 2, 8, 0), "k": (1, 1, 8, 0)}),
                      ("head_dim_v", {"v": (1, 1, 8, 0)})],
        "decode": [("batch", {"q": (0, 2, 1, 16), "k_cache": (0, 1, 8, 16), "v_cache": (0, 1, 8, 8)}),
                   ("heads_q", {"q": (1, 0, 1, 16)}),
                   ("heads_kv", {"k_cache": (1, 0, 8, 16), "v_cache": (1, 0, 8, 8)}),
                   ("step_tokens", {"q": (1, 2, 0, 16)}),
                   ("head_dim", {"q": (1, 2, 1, 0), "k_cache": (1, 1, 8, 0)}),
                   ("head_dim_v", {"v_cache": (1, 1, 8, 0)})]}


@pytest.mark.parametrize("entry,label,shapes", [(e, lab, s) for e, cases in ZERO.items() for lab, s in cases],
                         ids=[f"{e}-{lab}" for e, cases in ZERO.items() for lab, _ in cases])
def test_zero_sizes_are_refused_naming_the_dimension(entry, label, shapes, no_launch):
    """Batch 0 (was StopIteration), zero heads and head dims 0 (ZeroDivisionError, a reshape's
    RuntimeError), decode with zero step tokens (ZeroDivisionError)."""
    call, _ = ENTRY[entry]
    with pytest.raises(ValueError, match=rf"'s {label} is 0: it must be at least 1"):
        call(**{n: r(*s) for n, s in shapes.items()})()


def test_mismatched_sizes_name_both_operands(no_launch):
    with pytest.raises(ValueError, match="k's batch is 2 but q's is 1"):
        attention_call(k=r(2, 1, 8, 16), v=r(2, 1, 8, 8))()
    with pytest.raises(ValueError, match="v_cache's context is 7 but k_cache's is 8"):
        decode_call(v_cache=r(1, 1, 7, 8))()


def test_empty_sequences_stay_allowed():
    """Sequence lengths of 0 are not refused: no queries give an empty output; no keys give 0, as the
    reference defines a row without a live key."""
    q, k, v = r(1, 2, 0, 16), r(1, 1, 8, 16), r(1, 1, 8, 8)
    assert attention(q, k, v).shape == (1, 2, 0, 8)
    q, k, v = r(1, 2, 5, 16), r(1, 1, 0, 16), r(1, 1, 0, 8)
    out = attention(q, k, v)
    assert out.shape == (1, 2, 5, 8) and torch.all(out == 0) and torch.all(reference(q, k, v) == 0)


def test_a_cache_too_short_for_the_step_is_refused(no_launch):
    with pytest.raises(ValueError, match="k_cache's context is 0"):
        decode_call(k_cache=r(1, 1, 0, 16), v_cache=r(1, 1, 0, 8))()
    with pytest.raises(ValueError, match="k_cache's context is 2: it must hold at least 3"):
        decode_call(q=r(1, 2, 3, 16), k_cache=r(1, 1, 2, 16), v_cache=r(1, 1, 2, 8))()


# -- flags and the scale -----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["x", 1, 0, None, "False"], ids=repr)
@pytest.mark.parametrize("entry", ENTRY)
def test_causal_must_be_a_bool(entry, value, no_launch):
    with pytest.raises(TypeError, match=r"^causal=.* must be True or False"):
        ENTRY[entry][0]()(causal=value)


@pytest.mark.parametrize("value,exc", [(math.nan, ValueError), (math.inf, ValueError), (-math.inf, ValueError),
                                       (np.float32("nan"), ValueError), ("0.1", TypeError), (True, TypeError),
                                       (torch.tensor(0.1), TypeError)], ids=repr)
@pytest.mark.parametrize("entry", ENTRY)
def test_scale_must_be_a_finite_real_number(entry, value, exc, no_launch):
    with pytest.raises(exc, match=r"^scale=.* must be (finite|a real number)"):
        ENTRY[entry][0]()(scale=value)


def test_finite_scales_of_any_real_kind_run():
    q, k, v = r(1, 2, 8, 16), r(1, 1, 8, 16), r(1, 1, 8, 8)
    want = reference(q, k, v, scale=0.5)
    for s in (0.5, np.float32(0.5), np.float64(0.5)):
        assert (attention(q, k, v, scale=s).double() - want).abs().max() < 1e-5
    qd, kc, vc = r(1, 2, 1, 16), r(1, 1, 8, 16), r(1, 1, 8, 8)
    assert (decode(qd, kc, vc, scale=2) - decode_reference(qd, kc, vc, scale=2)).abs().max() < 1e-5


def test_variant_must_be_a_name(no_launch):
    with pytest.raises(TypeError, match="variant=.* must be a variant name"):
        attention_call()(variant=3)


# -- integers: offsets, context lengths, decode's integer arguments ---------------------------------------
def varlen_call(cu_q, cu_k=None):
    q, k, v = r(24, 2, 16), r(24, 1, 16), r(24, 1, 8)
    return lambda: attention(q, k, v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k)


@pytest.mark.parametrize("which", ["cu_seqlens_q", "cu_seqlens_k"])
@pytest.mark.parametrize("cu,exc,what", [
    ([0, 10.5, 24], TypeError, r"\[1\]=10.5 must be an integer"),  # ran as 10
    ([0, 10.0, 24], TypeError, r"\[1\]=10.0 must be an integer"),  # a float, even whole
    ([0, True, 24], TypeError, r"\[1\]=True must be an integer"),
    (torch.tensor([0.0, 10.0, 24.0]), TypeError, "dtype torch.float32: it must hold integers"),
    (np.array([0.0, 10.5, 24.0]), TypeError, "dtype float64: it must hold integers"),
    (torch.tensor([[0, 10, 24]]), ValueError, "must be 1-D"),
    ("0,10,24", TypeError, "expected a list of integers"),
], ids=["fraction", "whole-float", "bool", "float-tensor", "float-numpy", "2-d", "str"])
def test_cu_seqlens_must_be_integers(which, cu, exc, what, no_launch):
    good = [0, 10, 24]
    call = varlen_call(cu, good) if which == "cu_seqlens_q" else varlen_call(good, cu)
    with pytest.raises(exc, match=f"^{which}{what}|^{which} .*{what}|^{which}: {what}"):
        call()


def test_integer_cu_seqlens_of_any_kind_run_alike():
    q, k, v = r(24, 2, 16), r(24, 1, 16), r(24, 1, 8)
    outs = [attention(q, k, v, cu_seqlens_q=cu, causal=True)
            for cu in ([0, 10, 24], torch.tensor([0, 10, 24], dtype=torch.int32), np.array([0, 10, 24]),
                       (np.int64(0), 10, torch.tensor(24)))]
    ref = reference(q, k, v, cu_seqlens_q=[0, 10, 24], causal=True)
    assert all((o.double() - ref).abs().max() < 1e-5 for o in outs)


@pytest.mark.parametrize("lens,exc,what", [
    ([5.7, 8], TypeError, r"ctx_lens\[0\]=5.7 must be an integer"),  # ran as 5
    (torch.tensor([5.0, 8.0]), TypeError, "ctx_lens has dtype torch.float32"),
    (np.array([5.7, 8.0]), TypeError, "ctx_lens has dtype float64"),
    ([0, 8], ValueError, "ctx_lens: one context length per sequence"),
    ([5], ValueError, "ctx_lens: one context length per sequence"),
    ([5, 9], ValueError, "ctx_lens: one context length per sequence"),
    (5, TypeError, "ctx_lens: expected a list of integers"),
], ids=["fraction", "float-tensor", "float-numpy", "zero", "count", "past-cache", "scalar"])
def test_ctx_lens_must_be_integers_in_range(lens, exc, what, no_launch):
    q, kc, vc = r(2, 2, 1, 16), r(2, 1, 8, 16), r(2, 1, 8, 8)
    with pytest.raises(exc, match=what):
        decode(q, kc, vc, ctx_lens=lens)


def test_integer_ctx_lens_of_any_kind_run_alike():
    q, kc, vc = r(2, 2, 1, 16), r(2, 1, 40, 16), r(2, 1, 40, 8)
    ref = decode_reference(q, kc, vc, ctx_lens=[5, 40])
    for lens in ([5, 40], torch.tensor([5, 40]), np.array([5, 40], dtype=np.int32)):
        assert (decode(q, kc, vc, ctx_lens=lens).double() - ref).abs().max() < 1e-5


@pytest.mark.parametrize("kw,exc,what", [
    ({"rope_dim": 2.5}, TypeError, r"^rope_dim=2.5 must be an integer"),
    ({"rope_dim": -1}, ValueError, r"^rope_dim=-1 must be in 0..15"),
    ({"rope_dim": 16}, ValueError, r"^rope_dim=16 must be in 0..15"),
    ({"splits": 2.0}, TypeError, r"^splits=2.0 must be an integer"),
    ({"splits": True}, TypeError, r"^splits=True must be an integer"),
    ({"splits": 0}, ValueError, r"^splits=0 must be at least 1"),
], ids=["rope-fraction", "rope-negative", "rope-too-wide", "splits-float", "splits-bool", "splits-zero"])
def test_decode_integer_arguments(kw, exc, what, no_launch):
    q, cache = r(1, 2, 1, 16), r(1, 1, 8, 16)
    with pytest.raises(exc, match=what):
        decode(q, cache, None, **kw)


# -- no GPU and no interpreter ------------------------------------------------------------------------------
def test_without_a_gpu_or_the_interpreter_the_error_says_how_to_run():
    """Without TRITON_INTERPRET=1 on a CPU, Triton said "0 active drivers"; now a RuntimeError says no
    GPU is present and how to run under the interpreter, before any launch — also when the variable is
    set too late (after triton was imported), which it names."""
    if GPU:
        pytest.skip("a GPU is present")
    code = ("import os, torch\n"
            "from attnsim.kernels import attention, decode\n"
            "x = torch.randn(1, 1, 8, 16)\n"
            "for i, f in enumerate((lambda: attention(x, x, x), lambda: decode(x[:, :, :1], x, x))):\n"
            "    if i: os.environ['TRITON_INTERPRET'] = '1'\n"
            "    try:\n        f()\n    except RuntimeError as e:\n        print('ERR', e)\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("ERR ")]
    assert len(lines) == 2, out.stdout + out.stderr
    for ln in lines:
        assert ln.startswith("ERR no GPU is present") and "TRITON_INTERPRET=1" in ln and "float32" in ln, ln
        assert "active drivers" not in ln
    assert "was not when triton was imported" in lines[1] and "was not when" not in lines[0]
