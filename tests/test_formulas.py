"""Formulas (simulator/formulas.py): a prediction priced on symbolic inputs gives the same numbers, and its
trees recompute what predict computes on a changed hardware profile or calibration with the same discrete
choices. The reference is always `predict` itself run on a Hardware and a Calibration with the changed
figures (dataclasses.replace), never a captured number."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from attnsim.simulator import formulas as F
from attnsim.simulator.calibrations import choose
from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.problem import predict_problem, resolve
from attnsim.simulator.rates import Calibration


# -- the expression type, by hand ----------------------------------------------------------------------
def test_arithmetic_values_and_formula_text():
    a, b = F.Expr.input("a", 3.0), F.Expr.input("b", 4.0)
    e = (a + 2) * b / (a - 1) - -b
    assert e.value == (3.0 + 2) * 4.0 / (3.0 - 1) - -4.0
    refs = {"a": "Inputs!$B$2", "b": "Inputs!$B$3"}
    assert e.formula(refs.get) == "(Inputs!$B$2+2)*Inputs!$B$3/(Inputs!$B$2-1)--Inputs!$B$3"
    assert e.evaluate({"a": 5.0}) == (5.0 + 2) * 4.0 / (5.0 - 1) + 4.0


def test_right_operands_keep_their_grouping():
    a, b, c = (F.Expr.input(n, v) for n, v in (("a", 7.0), ("b", 5.0), ("c", 2.0)))
    assert (a - (b - c)).formula(str) == "a-(b-c)"
    assert (a / (b * c)).formula(str) == "a/(b*c)"
    assert ((a - b) - c).formula(str) == "a-b-c"
    assert (a * (b / c)).formula(str) == "a*(b/c)"
    assert (a - (b - c)).value == 7.0 - (5.0 - 2.0)


def test_numpy_maximum_and_minimum_build_max_and_min():
    a, b = F.Expr.input("a", 1.0), F.Expr.input("b", 2.0)
    m = np.maximum(a, np.maximum(b, 0.5))
    assert m.value == 2.0 and m.formula(str) == "MAX(a,b,0.5)"  # nested maxima flatten
    n = np.minimum(a * 2, b)
    assert n.value == 2.0 and n.formula(str) == "MIN(a*2,b)"
    assert m.evaluate({"a": 9.0}) == 9.0
    assert F.largest([1.0, 3.0]) == 3.0 and F.smallest([1.0, 3.0]) == 1.0  # numbers stay numbers


def test_exact_simplifications_and_shared_nodes():
    a = F.Expr.input("a", 3.0)
    assert a + 0 is a and a * 1 is a and a / 1 is a and 0 + a is a and 1 * a is a and a - 0 is a
    F.clear_interned()
    assert (a * 2) is (a * 2)  # one node per computation


def test_numbers_render_exactly():
    a = F.Expr.input("a", 1.0)
    for c in (0.1, 1 / 3, 1e-7, 123456789.123, 2.5e20, 6.02e23, 3, 2 ** 60):
        text = (a * c).formula(str)
        assert float(text.split("*", 1)[1].strip("()")) == float(c)
    assert (a * -2.5).formula(str) == "a*(-2.5)"


def test_renderer_gives_shared_subexpressions_their_own_cells():
    F.clear_interned()
    a, b = F.Expr.input("a", 3.0), F.Expr.input("b", 4.0)
    shared = a * b + a / b
    root1, root2 = shared * 2 + 1, shared * 3
    cells = {}
    r = F.Renderer({"a": "Inputs!$B$2", "b": "Inputs!$B$3"}.get, lambda i: f"S{i}")
    steps, cells = r.layout([root1, root2])
    assert [s[:2] for s in steps] == [("S0", "Inputs!$B$2*Inputs!$B$3+Inputs!$B$2/Inputs!$B$3")]
    assert r.formula(root1) == "S0*2+1" and r.formula(root2) == "S0*3"
    assert steps[0][2] == 3.0 * 4.0 + 3.0 / 4.0


# -- the model on symbolic inputs --------------------------------------------------------------------------
CASES = [("mha", {}), ("mha", {"causal": True}), ("gqa", {"kv_heads": 8, "phase": "decode", "seqlen": 8192, "batch": 4}),
         ("mha", {"phase": "train", "causal": True, "seqlen": 2048}), ("mla", {}), ("mla", {"phase": "decode"}),
         ("eager", {"causal": True, "seqlen": 1024}), ("swa", {"seqlen": 8192}), ("gna", {"params": {"token_shape": "32x32"}}),
         ("moba", {"seqlen": 8192}), ("duplex", {"seqlen": 4096}), ("sqa", {}), ("moh", {"seqlen": 2048}),
         ("varlen", {"params": {"lengths": "1000,3000,200"}})]
HARDWARE = ("h100", "a100", "b200", "mi300x", "rtx4090")


def _priced(variant, kw, hw_name):
    kw = dict(kw)
    params = kw.pop("params", None)
    hw = load_hardware(hw_name)
    prob = resolve(variant, params, heads=32, hw=hw, **kw)
    num = predict_problem(prob, hw, compare=False)
    cal, _ = choose("default", hw, num.family, prob.workload.dtype, prob.workload.phase)
    cal = cal or Calibration()
    sym = predict_problem(prob, F.symbolic_hardware(hw), compare=False,
                          calibration=F.symbolic_calibration(cal, "cal"))
    return hw, cal, prob, num, sym


def _changed(hw, cal, env):
    """The Hardware and Calibration with the figures of `env` (input name -> value) put in."""
    hw_kw, cal_kw, tensor = {}, {}, {}
    for name, v in env.items():
        head, _, field = name.partition(".")
        if head == "cal":
            cal_kw[field] = v
        elif field.startswith("mma."):
            _, dt, acc = field.split(".")
            tensor[(dt, acc)] = v
        else:
            hw_kw[field] = v
    if tensor:
        hw_kw["tensor"] = tuple(replace(t, flops_per_clk_per_sm=tensor.get((t.dtype, t.accum), t.flops_per_clk_per_sm))
                                for t in hw.tensor)
    return replace(hw, **hw_kw), replace(cal, **cal_kw)


def _choices(pred):
    return [(k.name, k.tile, k.splits, k.ctas_per_sm, k.ctas) for k in pred.kernels]


@pytest.mark.parametrize("hw_name", HARDWARE)
@pytest.mark.parametrize("variant, kw", CASES, ids=[f"{v}-{i}" for i, (v, _) in enumerate(CASES)])
def test_symbolic_prediction_is_the_prediction(variant, kw, hw_name):
    try:
        hw, cal, prob, num, sym = _priced(variant, kw, hw_name)
    except Exception as e:  # a configuration the GPU refuses (fp8, a kernel it lacks): nothing to compare
        pytest.skip(f"{variant} on {hw_name}: {e}")
    assert [float(k.time_s) for k in sym.kernels] == [k.time_s for k in num.kernels]  # the same operations
    assert float(sym.bound.time_s) == num.bound.time_s
    assert F.is_expr(sym.time_s) and F.is_expr(sym.bound.time_s)
    names = set(sym.time_s.inputs()) | set(sym.bound.time_s.inputs())
    assert f"{hw.key}.hbm_bandwidth_bytes_per_s" in names and f"{hw.key}.clock_max_hz" in names


EDITS = [f"{{hw}}.{n}" for n in ("hbm_bandwidth_bytes_per_s", "clock_sustained_hz", "clock_max_hz", "dram_latency_s",
                                  "kernel_launch_overhead_s", "exp_ops_per_clk_per_sm", "fp32_flops_per_clk_per_sm",
                                  "smem_bytes_per_clk_per_sm", "l2_bandwidth_bytes_per_s", "mma.bf16.fp32")] + \
        [f"cal.{n}" for n in ("tensor", "exp", "fp32", "smem", "hbm", "cta_io", "partial_tile", "causal", "backward",
                              "smem_exposed")]
FRACTIONS = {"cal.smem_exposed"}  # inputs a Calibration holds to [0, 1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(CASES), hw_name=st.sampled_from(HARDWARE),
       edits=st.dictionaries(st.sampled_from(EDITS), st.floats(0.25, 4.0), min_size=1, max_size=4))
def test_formulas_recompute_predict_with_changed_figures(case, hw_name, edits):
    """Any figures changed by any factors: the trees' values equal predict run on the changed profile and
    calibration, whenever predict makes the same discrete choices there (tiles, splits, CTAs per SM)."""
    try:
        hw, cal, prob, num, sym = _priced(*case, hw_name)
    except Exception:
        assume(False)
    inputs = {**sym.time_s.inputs(), **sym.bound.time_s.inputs()}
    env = {}
    for pattern, factor in edits.items():
        name = pattern.format(hw=hw.key)
        if name in inputs:
            base = inputs[name]
            env[name] = base * factor if base else factor - 0.25  # a factor at 0 (cta_io...) moves off 0
            if name in FRACTIONS:
                env[name] = min(env[name], 1.0)
    assume(env)
    hw2, cal2 = _changed(hw, cal, env)
    num2 = predict_problem(prob, hw2, compare=False, calibration=cal2)
    assume(_choices(num2) == _choices(num))
    got = sym.time_s.evaluate(env)
    assert math.isclose(got, num2.time_s, rel_tol=1e-12), (got, num2.time_s)
    assert math.isclose(sym.bound.time_s.evaluate(env), num2.bound.time_s, rel_tol=1e-12)


def test_a_changed_figure_changes_the_time():
    """Not a vacuous check: halving HBM bandwidth slows a memory-bound decode, quartering the tensor factor
    slows a compute-bound prefill, and each equals predict on the changed figures."""
    hw, cal, prob, num, sym = _priced("gqa", {"kv_heads": 8, "phase": "decode", "seqlen": 32768, "batch": 8}, "h100")
    env = {f"{hw.key}.hbm_bandwidth_bytes_per_s": hw.hbm_bandwidth_bytes_per_s / 2}
    slow = sym.time_s.evaluate(env)
    assert slow > 1.6 * num.time_s
    assert math.isclose(slow, predict_problem(prob, _changed(hw, cal, env)[0], compare=False, calibration=cal).time_s,
                        rel_tol=1e-12)
    hw, cal, prob, num, sym = _priced("mha", {"seqlen": 8192}, "h100")
    env = {"cal.tensor": cal.tensor / 4}
    slow = sym.time_s.evaluate(env)
    assert slow > 2 * num.time_s
    assert math.isclose(slow, predict_problem(prob, hw, compare=False, calibration=_changed(hw, cal, env)[1]).time_s,
                        rel_tol=1e-12)


def test_class_extremes_match_the_maximum_over_every_class():
    """The longest and shortest CTA over the non-dominated (full, partial) classes equal the maximum and
    minimum over every class, at any tile times (brute force over random classes and times)."""
    from attnsim.simulator.model import _class_extremes, cta_duration
    from attnsim.simulator.rates import rates
    hw = load_hardware("h100")
    shw = F.symbolic_hardware(hw)
    r = rates(shw)
    rng = np.random.default_rng(7)
    for _ in range(50):
        full = rng.integers(0, 30, size=rng.integers(1, 40))
        partial = rng.integers(0, 4, size=full.size)
        a, b = F.Expr.input("a", 1.0), F.Expr.input("b", 1.0)
        hi, lo = _class_extremes(r, a, b, full, partial, 0.0)
        for av, bv in ((1.0, 2.0), (3.0, 0.1), (1e-6, 5e-6)):
            env = {"a": av, "b": bv}
            dur = [cta_duration(rates(hw), av, bv, f, p) for f, p in zip(full.tolist(), partial.tolist())]
            assert hi.evaluate(env) == max(dur) and lo.evaluate(env) == min(dur)
