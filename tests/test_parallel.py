"""Attention over several GPUs: collectives (α–β formulas written out by hand), the schemes' arithmetic,
and the CLI's refusals."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_checks import assert_one_line_error, invoke

from attnsim import predict_variant
from attnsim.simulator.cluster import Link, load_cluster
from attnsim.simulator.errors import AttnsimError
from attnsim.simulator.ops import Collective
from attnsim.simulator.parallel import SCHEMES, Scheme, parse_parallel, predict_parallel
from attnsim.simulator.pricing import collective_time
from attnsim.simulator.rates import LinkCalibration, link_rates

N, P, BW, A = 1e9, 4, 1e11, 1e-5


def _lr(p2p=True, sharp=False):
    return link_rates(Link(kind="nvlink", topology="switch", bandwidth_bytes_per_s=BW, latency_s=A, p2p=p2p,
                           in_switch_reduction=sharp))


@pytest.mark.parametrize("op, expected", [
    ("all_reduce", 2 * 3 / 4 * 1e9 / 1e11 + 2 * 3 * 1e-5),  # 0.01506
    ("all_gather", 3 / 4 * 1e9 / 1e11 + 3 * 1e-5),
    ("reduce_scatter", 3 / 4 * 1e9 / 1e11 + 3 * 1e-5),
    ("all_to_all", 3 / 4 * 1e9 / 1e11 + 3 * 1e-5),
    ("p2p", 1e9 / 1e11 + 1e-5),
])
def test_collective_formulas(op, expected):
    assert collective_time(Collective("x", op, N, P), _lr()) == pytest.approx(expected, rel=1e-12)


def test_in_switch_reduction_moves_each_byte_once():
    assert collective_time(Collective("x", "all_reduce", N, P), _lr(sharp=True)) == pytest.approx(1e9 / 1e11 + 2e-5)


def test_no_p2p_crosses_pcie_twice():
    """Through host memory: half the bandwidth and two latencies per step."""
    assert collective_time(Collective("x", "p2p", N, 2), _lr(p2p=False)) == pytest.approx(1e9 / 5e10 + 2e-5)
    assert collective_time(Collective("x", "all_reduce", N, P), _lr(p2p=False)) == pytest.approx(
        2 * 3 / 4 * 1e9 / 5e10 + 2 * 3 * 2e-5)


def test_peak_is_the_bandwidth_term_only_and_one_rank_is_free():
    assert collective_time(Collective("x", "all_reduce", N, P), _lr(), peak=True) == pytest.approx(2 * 3 / 4 * 1e-2)
    assert collective_time(Collective("x", "all_reduce", N, 1), _lr()) == 0.0


def test_link_calibration_scales_bandwidth_and_replaces_latency():
    lr = link_rates(Link("pcie", "pcie_tree", BW, A), LinkCalibration(bandwidth=0.8, latency_s=3e-5))
    assert collective_time(Collective("x", "p2p", N, 2), lr) == pytest.approx(1e9 / 8e10 + 3e-5)
    with pytest.raises(AttnsimError):
        LinkCalibration(bandwidth=0)


# -- schemes -----------------------------------------------------------------------------------------
SHAPE = dict(batch=1, seqlen=16384, heads=32, head_dim=128)


@pytest.mark.parametrize("text", ["tp=1", "cp=1", "ulysses=1"])
def test_one_rank_is_the_single_gpu_prediction(text):
    pp = predict_parallel("8xh100-nvlink", text, "mha", None, **SHAPE)
    single = predict_variant("h100_sxm5", "mha", None, **SHAPE)
    assert pp.time_s == pytest.approx(single.time_s, rel=1e-12)
    assert pp.comm_s == 0 and pp.exposed_comm_s == 0 and pp.collectives == []


def test_tensor_parallel_is_a_quarter_of_the_heads_plus_an_exposed_all_reduce():
    pp = predict_parallel("8xh100-nvlink", "tp=4", "mha", None, **SHAPE)
    rank = predict_variant("h100_sxm5", "mha", None, **dict(SHAPE, heads=8))
    n = 16384 * 32 * 128 * 2  # tokens x d_model x bf16 bytes
    (c,) = pp.collectives
    assert (c["op"], c["bytes"], c["group_size"], c["link"]) == ("all_reduce", n, 4, "intra_node")
    lat = load_cluster("8xh100-nvlink").intra.latency_s
    assert c["time_s"] == pytest.approx(n / 450e9 + 2 * lat)  # NVLink SHARP: each byte once up, once down
    assert pp.compute_s == pytest.approx(rank.time_s)
    assert pp.time_s == pytest.approx(rank.time_s + c["time_s"])


def test_ulysses_all_to_all_bytes_by_hand():
    pp = predict_parallel("8xh100-nvlink", "ulysses=4", "gqa", None, **dict(SHAPE, kv_heads=8))
    per = 16384 // 4  # tokens a rank holds before the exchange
    qkv = per * 32 * 128 * 2 + per * 8 * 256 * 2
    o = per * 32 * 128 * 2
    assert [(c["op"], c["bytes"]) for c in pp.collectives] == [("all_to_all", qkv), ("all_to_all", o)]
    assert pp.exposed_comm_s == pytest.approx(sum(c["time_s"] for c in pp.collectives))


def _slow_cluster(tmp_path, bw):
    p = tmp_path / "slow.yaml"
    p.write_text(f"""schema_version: 1
name: "test: 4 H100 on a slow link"
device: h100_sxm5
gpus_per_node: 4
intra_node:
  kind: pcie
  topology: pcie_tree
  bandwidth_bytes_per_s_per_direction: {{value: {bw:e}, source: "a test figure"}}
  latency_s: {{value: 1.0e-06, source: "a test figure"}}
""")
    return str(p)


def test_ring_hides_transfer_when_compute_dominates():
    pp = predict_parallel("8xh100-nvlink", "cp=4", "mha", None, **dict(SHAPE, seqlen=65536))
    assert pp.exposed_comm_s == 0.0 and pp.comm_s > 0
    step = predict_variant("h100_sxm5", "mha", None, **dict(SHAPE, seqlen=16384))
    assert pp.time_s == pytest.approx(4 * step.time_s)


def test_ring_is_transfer_bound_on_a_slow_link(tmp_path):
    path = _slow_cluster(tmp_path, 1e9)
    pp = predict_parallel(path, "cp=4", "mha", None, **dict(SHAPE, seqlen=4096))
    step = predict_variant("h100_sxm5", "mha", None, **dict(SHAPE, seqlen=1024))
    kv = 1024 * 32 * 256 * 2  # one rank's K and V chunk
    t = kv / 1e9 + 1e-6
    assert t > step.time_s
    assert pp.collectives[0]["bytes"] == kv and pp.collectives[0]["count"] == 3
    assert pp.time_s == pytest.approx(3 * t + step.time_s)  # three steps wait for the transfer, the last computes
    assert pp.exposed_comm_s == pytest.approx(3 * (t - step.time_s))


def test_causal_ring_with_and_without_zigzag():
    shape = dict(SHAPE, seqlen=65536, causal=True)
    zig = predict_parallel("8xh100-nvlink", "cp=4", "mha", None, **shape)
    flat = predict_parallel("8xh100-nvlink", parse_parallel("cp=4", zigzag="false"), "mha", None, **shape)
    diag = predict_variant("h100_sxm5", "mha", None, **dict(SHAPE, seqlen=16384, causal=True))
    full = predict_variant("h100_sxm5", "mha", None, **dict(SHAPE, seqlen=16384))
    half = predict_variant("h100_sxm5", "mha", None, **dict(SHAPE, seqlen=8192, seqlen_kv=16384))
    assert flat.compute_s == pytest.approx(diag.time_s + 3 * full.time_s)  # the last rank's full blocks
    assert zig.compute_s == pytest.approx(diag.time_s + 3 * half.time_s)  # every rank the same half block
    assert zig.time_s < 0.7 * flat.time_s


def test_train_ring_sends_dk_dv_too():
    pp = predict_parallel("8xh100-nvlink", "cp=2", "mha", None, **dict(SHAPE, phase="train"))
    fwd, bwd = pp.collectives
    assert bwd["bytes"] == 2 * fwd["bytes"] and fwd["count"] == bwd["count"] == 1


def test_tpla_shards_the_latent_and_beats_mla_tp_in_decode():
    pp = predict_parallel("8xh100-nvlink", "tpla=4", "mla", None, batch=64, seqlen_kv=32768, heads=128,
                          phase="decode")
    c = pp.compared
    assert c["scheme"] == "tp=4"
    # MLA under tp: each rank reads the whole latent cache (512 + 64 dims); TPLA: 512/4 + 64
    assert c["kv_cache_bytes_per_gpu"] / c["tpla_kv_cache_bytes_per_gpu"] == pytest.approx(576 / 192, rel=1e-9)
    assert pp.time_s < c["time_s"]


def test_memory_per_gpu_falls_with_the_ring():
    m = [predict_parallel("8xh100-nvlink", f"cp={n}", "mha", None, **dict(SHAPE, seqlen=65536)).memory_bytes_per_gpu
         for n in (2, 4, 8)]
    assert m[0] > m[1] > m[2]


@pytest.mark.parametrize("text, msg", [
    ("tp=3", "does not divide the 32 query heads"),
    ("cp=16", "uses 16 GPUs"),
    ("tpla=2", "tpla shards MLA's latent cache"),
    ("tp=2,tpla=2", "choose one"),
    ("pp=2", "unknown scheme"),
    ("tp=2,tp=2", "given twice"),
    ("tp", "is not NAME=N"),
    ("tp=0", "ranks"),
])
def test_bad_schemes(text, msg):
    with pytest.raises(AttnsimError, match=msg):
        predict_parallel("8xh100-nvlink", text, "mha", None, **SHAPE)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_any_parallel_text_parses_or_says_why(text):
    try:
        sc = parse_parallel(text)
    except AttnsimError as e:
        assert "\n" not in str(e)
        return
    assert sc.ranks >= 1 and set(sc.sizes()) <= set(SCHEMES)


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.sampled_from(["tp", "cp", "ulysses"]), st.sampled_from([1, 2, 4, 8]), min_size=1))
def test_schemes_round_trip(sizes):
    sc = parse_parallel(",".join(f"{k}={v}" for k, v in sizes.items()))
    assert sc == Scheme(**sizes)
    assert parse_parallel(str(sc)) == sc if str(sc) != "none" else True


# -- CLI ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, needle", [
    (["--hw", "h100", "--parallel", "tp=2"], "needs a cluster --hw"),
    (["--hw", "8xh100-nvlink"], "add --parallel"),
    (["--hw", "8xh100-nvlink", "--parallel", "tp=3"], "does not divide"),
    (["--hw", "8xh100-nvlink", "--parallel", "cp=16"], "has 8"),
    (["--hw", "8xh100-nvlink", "--parallel", "cp=3", "--seqlen", "1000"], "do not divide by 3"),
    (["--hw", "8xh100-nvlink", "--parallel", "cp=2", "--phase", "decode", "--seqlen-kv", "4096"], "decode takes"),
    (["--hw", "8xh100-nvlink", "--parallel", "tp=2", "-p", "zigzag=true"], "zigzag applies"),
    (["--hw", "8xh100-nvlink", "--parallel", "cp=2", "-p", "zigzag=maybe"], "true or false"),
    (["--hw", "8xh100-nvlink", "--parallel", "tp=2,cp=2", "--ranks", "1,2"], "varies one scheme"),
    (["--hw", "8xh100-nvlink", "--parallel", "cp=2", "--ranks", "1,x"], "not a rank count"),
    (["--hw", "8xh100-nvlink", "--parallel", "cp=2", "--ranks", "1,16"], "has 8 GPUs"),
    (["--hw", "99xh100-nvlink", "--parallel", "tp=2"], "holds 1..8 GPUs"),
    (["--hw", "8xh100-xgmi", "--parallel", "tp=2"], "no shipped node"),
])
def test_cli_refusals_are_one_line(args, needle):
    r = invoke("predict", *args)
    assert_one_line_error(r, needle)


def test_cli_json_parallel_block():
    r = invoke(*["predict", "--hw", "8xh100-nvlink", "--parallel", "ulysses=2,cp=4", "--seqlen", "65536", "--causal",
                "--json"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.output)
    par = j["parallel"]
    for k in ("scheme", "ranks", "compute_s", "comm_s", "exposed_comm_s", "memory_bytes_per_gpu", "collectives"):
        assert k in par
    assert par["ranks"] == {"cp": 4, "ulysses": 2}
    assert j["time_s"] == pytest.approx(par["compute_s"] + par["exposed_comm_s"])
    assert {c["op"] for c in par["collectives"]} == {"p2p", "all_to_all"}
    for c in par["collectives"]:
        assert set(c) >= {"op", "bytes", "group_size", "link", "time_s"}
    assert j["bound_s"] <= j["time_s"]


def test_cli_scaling_table():
    r = invoke(*["predict", "--hw", "8xh100-nvlink", "--parallel", "cp=8", "--ranks", "1,2,4,8", "--seqlen", "65536",
                "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)["scaling"]
    assert [x["ranks"] for x in rows] == [1, 2, 4, 8]
    assert rows[0]["efficiency"] == pytest.approx(1.0)
    assert rows[0]["time_s"] > rows[1]["time_s"] > rows[2]["time_s"] > rows[3]["time_s"]


def test_multi_node_groups_cross_the_network():
    cl = load_cluster("2x8xh100-nvlink") if load_cluster("8xh100-nvlink").inter else None
    if cl is None:
        pytest.skip("the shipped H100 node has no inter-node network")
    assert cl.gpus == 16
    assert cl.link_for(8)[0] == "intra_node" and cl.link_for(16)[0] == "inter_node"
    assert cl.link_for(2, stride=8)[0] == "inter_node"
    nic = cl.inter.bandwidth_bytes_per_s  # 50 GB/s per GPU
    # 16 ranks, 8 per node: 8 rings side by side, one per NIC: min(NVLink 450, 8 x 50) per GPU
    assert cl.link_for(16)[1].bandwidth_bytes_per_s == min(cl.intra.bandwidth_bytes_per_s, 8 * nic)
    # a ring of 2 ranks 8 apart (cp over the nodes): one GPU per node, its own NIC
    assert cl.link_for(2, stride=8)[1].bandwidth_bytes_per_s == nic
    lr = link_rates(cl.link_for(16)[1])
    n = 1e9
    assert collective_time(Collective("x", "all_reduce", n, 16), lr) == pytest.approx(
        2 * 15 / 16 * n / min(450e9, 8 * nic) + 30 * cl.inter.latency_s)


def test_4090_ring_without_p2p_is_transfer_bound_at_8k_and_hides_it_at_128k():
    """The worked example of docs/claim_40x.md: no peer-to-peer halves PCIe's 32 GB/s per direction."""
    sh = dict(batch=1, heads=16, head_dim=64, dtype="fp16", kernel="fa2")
    cl = load_cluster("4xrtx4090-pcie")
    assert not cl.intra.p2p
    short = predict_parallel(cl, "cp=4", "mha", None, seqlen=8192, **sh)
    kv = 2048 * 16 * 128 * 2  # a rank's K and V chunk: 2048 tokens x 16 heads x (64 + 64) dims x 2 bytes
    (c,) = short.collectives
    assert c["bytes"] == kv
    assert c["time_s"] == pytest.approx(kv / (cl.intra.bandwidth_bytes_per_s / 2) + 2 * cl.intra.latency_s)
    assert short.exposed_comm_s > short.compute_s  # most of the ring's time is transfer
    long = predict_parallel(cl, "cp=4", "mha", None, seqlen=131072, **sh)
    assert long.exposed_comm_s == 0.0


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_cluster_name_loads_or_says_why(text):
    try:
        cl = load_cluster(text)
    except AttnsimError as e:
        assert "\n" not in str(e)
        return
    assert cl.gpus >= 1


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 12))
def test_composed_cluster_names(nodes, gpus):
    name = f"{nodes}x{gpus}xh100-nvlink" if nodes > 1 else f"{gpus}xh100-nvlink"
    if gpus > 8:
        with pytest.raises(AttnsimError, match="holds 1..8 GPUs"):
            load_cluster(name)
        return
    cl = load_cluster(name)
    assert (cl.nodes, cl.gpus_per_node, cl.gpus) == (nodes, gpus, nodes * gpus)


def test_mesh_groups_use_only_their_direct_links():
    """MI300X: 7 xGMI links of 64 GB/s per direction each; a group of 4 GPUs has 3 of them (192 GB/s), a
    p2p transfer one (64 GB/s), all 8 GPUs all seven (448 GB/s)."""
    cl = load_cluster("8xmi300x-xgmi")
    lr = link_rates(cl.intra)
    a = cl.intra.latency_s
    assert collective_time(Collective("x", "all_reduce", N, 4), lr) == pytest.approx(2 * 3 / 4 * N / 192e9 + 6 * a)
    assert collective_time(Collective("x", "all_reduce", N, 8), lr) == pytest.approx(2 * 7 / 8 * N / 448e9 + 14 * a)
    assert collective_time(Collective("x", "p2p", N, 8), lr) == pytest.approx(N / 64e9 + a)


def test_variant_parameters_reach_every_rank():
    """-p values (as the CLI passes them: 'KEY=VALUE' strings) resolve on each rank as on one GPU."""
    pp = predict_parallel("8xh100-nvlink", "tp=4", "swa", ("window_size=1024,0",), seqlen=8192, heads=32)
    rank = predict_variant("h100_sxm5", "swa", {"window_size": "1024,0"}, seqlen=8192, heads=8)
    assert pp.compute_s == pytest.approx(rank.time_s)
    r = invoke("predict", "--hw", "8xh100-nvlink", "--variant", "gna", "--token-shape", "64x64", "-p",
               "kernel_size=16x16", "--parallel", "tp=4", "--json")
    assert r.exit_code == 0, r.output


def test_ulysses_counts_mla_core_dims():
    """MLA prefill runs an up-projected core: Q and K of 192 dims (128 + 64 RoPE), V and O of 128."""
    pp = predict_parallel("8xh100-nvlink", "ulysses=4", "mla", None, batch=4, seqlen=4096, heads=128)
    per = 4 * 4096 // 4
    qkv, o = [c["bytes"] for c in pp.collectives]
    assert qkv == per * 128 * (192 + 192 + 128) * 2 and o == per * 128 * 128 * 2


@pytest.mark.parametrize("phase", ["prefill", "train"])
def test_tpla_is_for_decode(phase):
    with pytest.raises(AttnsimError, match="tpla shards MLA's latent cache in decode"):
        predict_parallel("8xh100-nvlink", "tpla=4", "mla", None, seqlen=4096, heads=128, phase=phase)


@pytest.mark.parametrize("args, needle", [
    (["predict", "--hw", "8xh100-nvlink", "--parallel", "tp=2", "--explain"], "--explain"),
    (["compare", "--hw", "8xh100-nvlink"], "compare runs on one GPU"),
    (["predict", "--hw", "8xh100-nvlink", "--parallel", "ulysses=2", "--ranks", "1,2,4,8", "--heads", "4"],
     "--ranks 1,2,4,8: ulysses=8"),
    (["predict", "--hw", "8xh100-nvlink", "--parallel", "tp=99999999999999999999"], "whole number of ranks"),
    (["predict", "--hw", "8xh100-nvlink", "--parallel", "tp=-2"], "whole number of ranks"),
    (["predict", "--hw", "/nonexistent/cluster.yaml", "--parallel", "tp=2"], "cluster.yaml"),
])
def test_more_cli_refusals(args, needle):
    assert_one_line_error(invoke(*args), needle)


def test_cluster_yaml_defects_are_said_with_parallel(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("schema_version: 1\nname: x\ndevice: h100\ngpu_per_node: 8\n")
    r = invoke("predict", "--hw", str(p), "--parallel", "tp=2")
    assert_one_line_error(r, "gpu_per_node")
