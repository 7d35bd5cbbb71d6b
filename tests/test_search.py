"""attnsim search: the smallest fully block-sparse stride against brute-force tile classification, every
printed candidate equal to predict, illegal combinations counted and never printed, the Pareto front by
brute-force dominance, reach by hand, and the refusals (exit 2, one line)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_checks import assert_one_line_error, invoke
from test_na import brute_rows, dense_reference, tiled_boxes

from attnsim import predict_variant
from attnsim.simulator import search as Q


def _brute_min_stride(shape, ks, ds, cs, q_tile, kv_tile, strides):
    """(The smallest stride (fewest product, then as written) whose mask has no partial tile, and every such
    stride no other one is <= in every dimension), classifying every (q box, kv box) pair of NATTEN's tiled
    order by counting live pairs (test_na's brute force)."""
    ok = []
    for ss in strides:
        coords, live = dense_reference(shape, ks, ss, ds, cs)
        full, nonempty = brute_rows(live, coords, tiled_boxes(shape, ds, q_tile), tiled_boxes(shape, ds, kv_tile))
        if all(f == n for f, n in zip(full, nonempty)):
            ok.append(ss)
    if not ok:
        return None, []
    fmt = lambda s: "x".join(map(str, s))  # noqa: E731
    minimal = [s for s in ok if not any(o != s and all(a <= b for a, b in zip(o, s)) for o in ok)]
    return fmt(min(ok, key=lambda s: (math.prod(s), fmt(s)))), sorted(map(fmt, minimal))


BRUTE_CASES = [  # (shape, kernel, dilation, causal, q_tile, kv_tile)
    ((64,), (16,), (1,), (False,), (16,), (16,)),
    ((48,), (12,), (1,), (False,), (16,), (16,)),
    ((128,), (64,), (1,), (False,), (16,), (16,)),  # stride 32 < kernel 64: windows start on tile edges
    ((128,), (48,), (1,), (False,), (16,), (32,)),
    ((64,), (16,), (2,), (False,), (16,), (16,)),
    ((64,), (16,), (1,), (True,), (16,), (16,)),
    ((8, 16), (4, 8), (1, 1), (False, False), (4, 4), (4, 4)),
    ((8, 16), (4, 8), (1, 2), (False, True), (2, 8), (4, 4)),
    ((4, 8, 8), (2, 4, 4), (1, 1, 1), (False, False, False), (2, 2, 4), (1, 4, 4)),
    ((4, 8, 8), (2, 4, 2), (1, 1, 2), (True, False, False), (2, 2, 4), (2, 2, 4)),
]


@pytest.mark.parametrize("case", BRUTE_CASES, ids=str)
def test_min_block_sparse_stride_matches_brute_force(case):
    shape, ks, ds, cs, qt, kt = case
    fmt = lambda v: "x".join(map(str, v))  # noqa: E731
    spec = Q.Spec(variant="gna", hardware="h100", kernel="fa2", vary={"stride": None},
                  fixed={"token_shape": fmt(shape), "kernel_size": fmt(ks), "dilation": fmt(ds),
                         "is_causal": ",".join(str(c).lower() for c in cs), "q_tile": fmt(qt), "kv_tile": fmt(kt)},
                  workload={"heads": 2, "head_dim": 64})
    res = Q.run(spec)
    strides = [tuple(int(x) for x in s.split("x")) for s in Q.space("gna", "stride", spec.fixed, shape)]
    assert res.evaluated == len(strides) and not res.illegal  # every stride 1..k per dimension is legal
    smallest, minimal = _brute_min_stride(shape, ks, ds, cs, qt, kt, strides)
    assert res.fully_block_sparse_min_stride == smallest
    assert sorted(res.minimal_strides) == minimal


@pytest.mark.parametrize("hw", ["h100", "b200"])
def test_gna_paper_example_stride_256(hw):
    """GNA paper: a 32K-token 1-D sequence with a 2K window is fully block-sparse from stride 256 on, for
    both Hopper and Blackwell tile sizes."""
    spec = Q.Spec(variant="gna", hardware=hw, vary={"stride": [str(s) for s in range(1, 300)]},
                  fixed={"token_shape": "32768", "kernel_size": "2048"}, workload={"heads": 8})
    res = Q.run(spec)
    assert res.fully_block_sparse_min_stride == "256"
    assert res.candidates[0]["fully_block_sparse"] and res.candidates[0]["params"]["stride"] == "256"


def test_every_printed_candidate_equals_predict():
    res = invoke("search", "--variant", "gna", "--hw", "h100", "--token-shape", "16x32", "-p", "kernel_size=8x16",
                 "--vary", "stride,q_tile,kv_tile", "-p", "stride=1x1;4x8;8x16", "--heads", "4", "--json", "--top", "50")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert set(doc) >= {"evaluated", "illegal", "candidates", "pareto", "fully_block_sparse_min_stride"}
    assert doc["candidates"] and doc["evaluated"] >= len(doc["candidates"])
    times = [c["time_s"] for c in doc["candidates"]]
    assert times == sorted(times)
    for c in doc["candidates"]:
        assert all(isinstance(v, str) for v in c["params"].values())
        p = predict_variant("h100", "gna", {"token_shape": "16x32", "kernel_size": "8x16", **c["params"]}, heads=4)
        assert c["time_s"] == pytest.approx(p.time_s, rel=1e-12)
        assert c["bound_s"] == pytest.approx(p.bound.time_s, rel=1e-12)
        for k in ("time", "useful_flops", "live_tiles", "iterated_tiles"):
            assert c["speedup"][k] == pytest.approx(p.speedup[k], rel=1e-12), k
        assert c["tiles"] == p.tiles and c["fully_block_sparse"] == (p.tiles["partial"] == 0)
        assert c["useful_fraction"] == pytest.approx(p.useful_flops / p.flops, rel=1e-12)


def test_illegal_combinations_are_counted_never_printed():
    ks = ["3", "5", "8"]
    ss = ["1", "4", "6"]
    res = Q.run(Q.Spec(variant="gna", hardware="h100", vary={"kernel_size": ks, "stride": ss},
                       fixed={"token_shape": "64"}, workload={"heads": 2}, top=100))
    bad = sum(int(s) > int(k) for k in ks for s in ss)  # NATTEN: stride <= kernel_size
    assert bad == 3 and sum(res.illegal.values()) == bad and res.evaluated == 9 - bad
    assert all(int(c["params"]["stride"]) <= int(c["params"]["kernel_size"]) for c in res.candidates)
    assert len(res.candidates) == 9 - bad
    (reason,) = res.illegal
    assert "stride" in reason and "kernel_size=3, stride=4" in res.illegal_examples[reason]
    assert res.fully_block_sparse_min_stride is None and res.minimal_strides is None  # the window varies


def test_pareto_front_and_reach_by_hand():
    """Causal sliding windows on 4096 tokens: a query at i sees min(i, w) + 1 keys; the front keeps every
    candidate no other is both faster and reaching further (brute-force dominance)."""
    n, windows = 4096, [128, 512, 1024, 2048]
    res = Q.run(Q.Spec(variant="swa", hardware="h100", vary={"window_size": [f"{w},0" for w in windows]},
                       workload={"seqlen": n, "causal": True, "heads": 8}, top=10))
    assert res.evaluated == 4
    for c in res.candidates:
        w = int(c["params"]["window_size"].split(",")[0])
        keys = sum(min(i, w) + 1 for i in range(n))
        assert c["reach"]["keys_per_query"] == pytest.approx(keys / n, rel=1e-12)
        assert c["reach"]["fraction"] == pytest.approx(keys / (n * n), rel=1e-12)
    cands = res.candidates
    dominated = lambda a: any(b["speedup"]["time"] >= a["speedup"]["time"] and b["reach"]["fraction"] >=  # noqa: E731
                              a["reach"]["fraction"] and (b["speedup"]["time"] > a["speedup"]["time"] or
                                                          b["reach"]["fraction"] > a["reach"]["fraction"]) for b in cands)
    want = sorted(c["params"]["window_size"] for c in cands if not dominated(c))
    assert sorted(c["params"]["window_size"] for c in res.pareto) == want
    assert len(want) >= 2  # a real trade-off: shorter windows are faster, longer ones reach further


def test_constraints_filter_and_an_unmet_constraint_is_an_empty_table():
    args = ["search", "--variant", "swa", "--seqlen", "4096", "--causal", "--vary", "window_size",
            "-p", "window_size=128,0;1024,0"]
    res = invoke(*args, "--min-reach", "50%", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["candidates"] == [] and "meets --min-reach 50%" in doc["reason"] and doc["constrained_out"] == 2
    res = invoke(*args, "--min-reach", "500")  # keys per query: only the 1024 window reaches 500 on average
    assert res.exit_code == 0 and "1024,0" in res.stdout and "128,0" not in res.stdout.split("Pareto")[0]
    res = invoke(*args, "--max-time", "1e-9")
    assert res.exit_code == 0 and "no candidate" in res.stdout


def test_moba_and_segment_search_run():
    res = Q.run(Q.Spec(variant="moba", hardware="h100", vary={"block_size": ["256", "1024"], "top_k": ["2", "4"]},
                       workload={"seqlen": 16384, "causal": True, "heads": 8}))
    assert res.evaluated == 4 and not res.illegal
    assert res.candidates[0]["time_s"] == min(c["time_s"] for c in res.candidates)
    res = Q.run(Q.Spec(variant="segment", hardware="h100", vary={"segments": None}, workload={"seqlen": 4096}))
    assert res.evaluated == len(Q.space("segment", "segments", {}, None, 4096)) == 7  # 64 .. 4096


def test_moa_spans_under_a_budget():
    """Spans per head group, powers of two 64..seqlen in increasing order, mean within the budget (by hand: 4
    groups of 64..1024 on 1024 tokens with mean <= 256), each priced; the widest reach costs the most."""
    spans = Q.space("moa", "spans", {"budget": 256, "groups": 4}, None, 1024)
    sizes = [64, 128, 256, 512, 1024]
    import itertools
    want = [c for c in itertools.combinations_with_replacement(sizes, 4) if sum(c) <= 1024]
    assert [tuple(map(int, s.split(","))) for s in spans] == want
    res = Q.run(Q.Spec(variant="moa", hardware="h100", vary={"spans": None}, budget=256, groups=4,
                       workload={"seqlen": 1024, "causal": True, "heads": 8}, top=1000))
    assert res.evaluated + sum(res.illegal.values()) == len(want) and res.evaluated > 10
    reach = {c["params"]["spans"]: c["reach"]["fraction"] for c in res.candidates}
    assert reach["64,64,64,64"] == min(reach.values())


@pytest.mark.parametrize("args, needle", [
    (["--variant", "gna", "--token-shape", "64", "--vary", "nope"], "searches"),
    (["--variant", "mha", "--vary", "stride"], "no parameters to vary"),
    (["--variant", "gna", "--token-shape", "64", "--vary", "stride", "-p", "stride=5..1"], "is empty"),
    (["--variant", "gna", "--token-shape", "64", "--vary", "stride", "-p", "kernel_size=3;5"], "not varied"),
    (["--variant", "swa", "--vary", "window_size", "--min-reach", "lots"], "--min-reach"),
    (["--variant", "gna", "--token-shape", "64", "--vary", ""], "empty name"),
    (["--variant", "gna", "--token-shape", "64", "--vary", "stride", "-o", "/nonexistent/x.csv"], "does not exist"),
    (["--variant", "gna", "--token-shape", "64x64x64", "-p", "kernel_size=64x64x64", "--vary", "stride,q_tile"],
     "--force"),
    (["--variant", "moa", "--vary", "spans"], "--budget"),
    (["--variant", "gna", "--token-shape", "64", "-p", "kernel_size=15", "--vary", "stride", "-p", "foo=3"],
     "unknown parameter"),
    (["--variant", "gna", "--token-shape", "64", "-p", "kernel_size=15", "--vary", "stride", "-p", "stride=0;2"],
     "not a value of stride"),
    (["--variant", "gna", "--token-shape", "64", "-p", "kernel_size=15", "--vary", "stride", "--kv-heads", "5"],
     "not divisible"),
    (["--variant", "gna", "--seqlen", "4096", "--vary", "dilation"], "token grid"),
    (["--variant", "swa", "--vary", "window_size", "--budget", "3"], "--budget"),
    (["--variant", "gna", "--token-shape", "64x64", "--vary", "stride", "-p", "stride=1x1..8x8"], "one number"),
])
def test_refusals(args, needle):
    assert_one_line_error(invoke("search", *args), needle)


def test_csv_output(tmp_path):
    out = tmp_path / "s.csv"
    res = invoke("search", "--variant", "gna", "--token-shape", "256", "-p", "kernel_size=64", "--vary", "stride",
                 "-p", "stride=1;32;64", "-o", out)
    assert res.exit_code == 0, res.output
    lines = out.read_text().strip().split("\n")
    assert lines[0].startswith("stride,kernel,time_s") and len(lines) == 4


@settings(max_examples=40, deadline=None)
@given(vary=st.text(alphabet="stridekvq_l,x;.0123456789", max_size=20),
       value=st.text(alphabet="0123456789x,;.:-", max_size=12))
def test_any_vary_and_values_exit_cleanly(vary, value):
    """Arbitrary --vary lists and -p values: a result or one line with exit 2, never a traceback."""
    res = invoke("search", "--variant", "gna", "--token-shape", "32", "-p", "kernel_size=8", "--vary", vary,
                 "-p", f"stride={value}", "--json")
    assert res.exit_code in (0, 2), (res.exit_code, res.output)
    if res.exit_code == 2:
        assert_one_line_error(res)
    assert "Traceback" not in res.output


FAST_CASES = [
    dict(hardware="h100", vary={"stride": None}, fixed={"token_shape": "4096", "kernel_size": "512"}),
    dict(hardware="b200", vary={"stride": None}, fixed={"token_shape": "16x32x32", "kernel_size": "8x16x16"}),
    dict(hardware="h100", vary={"stride": None, "q_tile": None, "kv_tile": None},
         fixed={"token_shape": "16x32", "kernel_size": "8x16"}),
    dict(hardware="h100", kernel="fa2", vary={"stride": None}, fixed={"token_shape": "64x48", "kernel_size": "16x12",
                                                                       "dilation": "2x2"}),
    dict(hardware="a100", vary={"stride": ["1x1", "4x8", "8x16"], "kv_tile": None},
         fixed={"token_shape": "32x64", "kernel_size": "8x16", "q_tile": "8x16"}),
]


@pytest.mark.parametrize("case", FAST_CASES, ids=lambda c: c["fixed"]["token_shape"])
def test_fast_path_equals_the_general_path(case):
    """The neighborhood fast path (arrays over candidates, per-dimension tables) gives exactly what pricing
    each candidate with predict gives: the whole result, byte for byte as JSON."""
    spec = Q.Spec(variant="gna", workload={"heads": 8}, top=100_000, **case)
    fast, slow = Q.run(spec, fast=True), Q.run(spec, fast=False)
    assert fast.evaluated > 30
    assert json.dumps(fast.to_json(), sort_keys=True) == json.dumps(slow.to_json(), sort_keys=True)


def test_non_causal_live_pairs_closed_form():
    """NADim.live_pairs without causality is n k (every query sees exactly k keys): against the window
    summed query by query, for every extent < 40, dilation, kernel and stride."""
    from attnsim.simulator.na import NADim
    for n in range(1, 40):
        for d in range(1, 4):
            for k in range(1, n // d + 1):
                for s in range(1, k + 1):
                    dim = NADim(n, k, s, d, False)
                    total = 0
                    for g in range(d):
                        n_g = int(dim.group_extent(g))
                        lo, hi = dim.window(np.arange(n_g), n_g)
                        total += int((hi - lo + 1).sum())
                    assert dim.live_pairs() == total == n * k


def test_help_describes_the_command_and_its_examples_run():
    res = invoke("search", "--help")
    assert res.exit_code == 0 and "Enumerate every legal combination" in res.output and "Examples:" in res.output
    examples = [ln.strip()[len("attnsim "):] for ln in res.output.splitlines() if ln.strip().startswith("attnsim search")]
    assert len(examples) >= 4
    import shlex
    for ex in examples:
        run = invoke(*shlex.split(ex)[:], "--top", "1")
        assert run.exit_code == 0, (ex, run.output)
        assert "candidates priced" in run.stdout


def test_groups_needs_a_budget():
    assert_one_line_error(invoke("search", "--variant", "moa", "--vary", "spans", "--groups", "3"), "--budget")
