"""The shipped cluster profiles (hardware_profiles/clusters/*.yaml): every link figure is sourced, the
NVLink / PCIe figures agree with the device profiles, names compose, and bad names and files are refused
with a one-line AttnsimError."""
import pytest

from attnsim.simulator.cluster import builtin_clusters, load_cluster
from attnsim.simulator.errors import AttnsimError

SHIPPED = ("8xa100-nvlink", "8xh100-nvlink", "8xb200-nvlink", "8xmi300x-xgmi", "4xrtx4090-pcie")
DATACENTER = ("8xa100-nvlink", "8xh100-nvlink", "8xb200-nvlink", "8xmi300x-xgmi")


def _links(cluster):
    yield "intra_node", cluster.intra
    if cluster.inter is not None:
        yield "inter_node", cluster.inter


def test_every_shipped_cluster_loads():
    clusters = builtin_clusters()
    assert set(SHIPPED) <= set(clusters)
    for key, c in clusters.items():
        assert c.key == key
        assert c.gpus == c.gpus_per_node * c.nodes


@pytest.mark.parametrize("key", sorted(builtin_clusters()))
def test_link_figures_have_sources(key):
    c = builtin_clusters()[key]
    for where, link in _links(c):
        for fig in ("bandwidth", "latency"):
            src = link.sources.get(fig)
            assert isinstance(src, str) and src.strip(), f"{key}.{where}: {fig} has no source"
            assert "PLACEHOLDER" not in src.upper(), f"{key}.{where}: {fig} source is a placeholder"
        assert link.bandwidth_bytes_per_s > 0 and link.latency_s > 0


@pytest.mark.parametrize("key", sorted(builtin_clusters()))
def test_nvlink_bandwidth_matches_device(key):
    c = builtin_clusters()[key]
    if c.intra.kind != "nvlink":
        pytest.skip("not an NVLink node")
    dev = c.device.nvlink_bandwidth_bytes_per_s_per_direction
    assert dev is not None, f"{c.device.key} has no NVLink figure"
    assert c.intra.bandwidth_bytes_per_s == dev


def test_nvlink_nodes_are_the_expected_ones():
    clusters = builtin_clusters()
    for key in ("8xa100-nvlink", "8xh100-nvlink", "8xb200-nvlink"):
        assert clusters[key].intra.kind == "nvlink"
        assert clusters[key].intra.bandwidth_bytes_per_s == \
            clusters[key].device.nvlink_bandwidth_bytes_per_s_per_direction


def test_rtx4090_pcie_matches_device_and_has_no_p2p():
    c = load_cluster("4xrtx4090-pcie")
    assert c.intra.kind == "pcie"
    assert c.intra.topology == "pcie_tree"
    assert c.intra.p2p is False
    assert c.intra.bandwidth_bytes_per_s == c.device.pcie_bandwidth_bytes_per_s_per_direction
    # the reason for p2p false is written down with the link (its `note`)
    assert "P2P" in c.intra.sources.get("note", "")


def test_in_switch_reduction_only_on_nvswitch_with_sharp():
    clusters = builtin_clusters()
    assert clusters["8xh100-nvlink"].intra.in_switch_reduction is True
    assert clusters["8xb200-nvlink"].intra.in_switch_reduction is True
    assert clusters["8xa100-nvlink"].intra.in_switch_reduction is False
    assert clusters["8xmi300x-xgmi"].intra.in_switch_reduction is False
    assert clusters["8xmi300x-xgmi"].intra.topology == "mesh"


@pytest.mark.parametrize("key", DATACENTER)
def test_datacenter_nodes_have_a_network(key):
    c = builtin_clusters()[key]
    assert c.nodes == 1
    assert c.inter is not None
    assert c.inter.kind in ("infiniband", "ethernet")
    assert c.inter.topology == "switch"
    # the NIC is far slower than the node's own link
    assert c.inter.bandwidth_bytes_per_s < c.intra.bandwidth_bytes_per_s


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_names_load(name):
    c = load_cluster(name)
    assert c.key == name


def test_composed_names():
    two = load_cluster("2x8xh100-nvlink")
    assert two.gpus == 16
    assert two.nodes == 2 and two.gpus_per_node == 8
    assert two.link_for(16)[0] == "inter_node"
    assert two.link_for(8)[0] == "intra_node"
    four = load_cluster("4xh100-nvlink")
    assert four.gpus == 4
    assert four.intra == builtin_clusters()["8xh100-nvlink"].intra


def test_aliases_resolve():
    assert load_cluster("hgx-h100").key == "8xh100-nvlink"


def _one_line_error(call):
    with pytest.raises(AttnsimError) as info:
        call()
    msg = str(info.value)
    assert msg and "\n" not in msg and "\r" not in msg
    return msg


def test_refuses_more_gpus_than_the_node_holds():
    msg = _one_line_error(lambda: load_cluster("9xh100-nvlink"))
    assert "1..8" in msg


def test_refuses_a_link_no_shipped_node_has():
    msg = _one_line_error(lambda: load_cluster("4xh100-pcie"))
    assert "pcie" in msg


def test_refuses_several_nodes_without_a_network():
    _one_line_error(lambda: load_cluster("2x4xrtx4090-pcie"))


GOOD_LINK = """\
  kind: nvlink
  topology: switch
  bandwidth_bytes_per_s_per_direction: {value: 450000000000.0, source: "a datasheet"}
  latency_s: {value: 6.0e-07, source: "a paper"}
"""


def _write(tmp_path, text):
    p = tmp_path / "my_cluster.yaml"
    p.write_text(text)
    return str(p)


def test_user_cluster_yaml_loads(tmp_path):
    path = _write(tmp_path, "schema_version: 1\nname: mine\ndevice: h100_sxm5\ngpus_per_node: 2\n"
                            "intra_node:\n" + GOOD_LINK)
    c = load_cluster(path)
    assert c.gpus == 2 and c.intra.latency_s == 6.0e-07


def test_refuses_a_figure_without_source(tmp_path):
    path = _write(tmp_path, "schema_version: 1\nname: mine\ndevice: h100_sxm5\ngpus_per_node: 2\n"
                            "intra_node:\n  kind: nvlink\n  topology: switch\n"
                            "  bandwidth_bytes_per_s_per_direction: {value: 450000000000.0}\n"
                            "  latency_s: {value: 6.0e-07, source: \"a paper\"}\n")
    msg = _one_line_error(lambda: load_cluster(path))
    assert "source" in msg


def test_refuses_an_empty_source(tmp_path):
    path = _write(tmp_path, "schema_version: 1\nname: mine\ndevice: h100_sxm5\ngpus_per_node: 2\n"
                            "intra_node:\n" + GOOD_LINK.replace('"a paper"', '"  "'))
    msg = _one_line_error(lambda: load_cluster(path))
    assert "source" in msg


def test_refuses_several_nodes_without_inter_node(tmp_path):
    path = _write(tmp_path, "schema_version: 1\nname: mine\ndevice: h100_sxm5\ngpus_per_node: 8\nnodes: 2\n"
                            "intra_node:\n" + GOOD_LINK)
    msg = _one_line_error(lambda: load_cluster(path))
    assert "inter_node" in msg
