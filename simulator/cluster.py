"""Clusters: a device profile plus the links between its GPUs.

A cluster profile (YAML, hardware_profiles/clusters/) names a device profile and describes one node
(GPUs per node, the intra-node link) and, for several nodes, the inter-node network (NIC bandwidth per
GPU, latency). Every link figure carries its source, as a device figure does.

    load_cluster("8xh100-nvlink")        a shipped cluster by name or alias
    load_cluster("4xh100-nvlink")        the shipped 8-GPU node cut to 4 GPUs (`<n>x<device>-<link>`)
    load_cluster("2x8xh100-nvlink")      two of those nodes over the node type's network (`<m>x<n>x...`)
    load_cluster("my_cluster.yaml")      a user's file; its `device` is a profile name or a path

Link semantics (docs/design.md, "Clusters and collectives"): `bandwidth_bytes_per_s_per_direction` is
what one GPU can send (and, at the same time, receive) on that link; `latency_s` the per-step latency
α of a collective's step; `p2p: false` means the GPUs cannot read or write each other's memory (GeForce
cards: the driver disables PCIe peer-to-peer), so every transfer is staged through host memory and
crosses PCIe twice; `in_switch_reduction` (NVLink SHARP on NVSwitch systems) lets the switch reduce, so
an all-reduce moves each byte once up and once down.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from .errors import AttnsimError, suggest
from .hardware import Hardware, _brief, _fail, _load_yaml, _number, builtin_profiles, load_hardware, name_table

TOPOLOGIES = ("switch", "ring", "mesh", "pcie_tree")
LINK_KINDS = ("nvlink", "pcie", "xgmi", "infiniband", "ethernet")
LINK_FIELDS = ("kind", "topology", "p2p", "in_switch_reduction", "bandwidth_bytes_per_s_per_direction",
               "peer_bandwidth_bytes_per_s_per_direction", "latency_s", "note")
LINK_FIGURES = {"bandwidth_bytes_per_s_per_direction": (1e8, 1e14), "peer_bandwidth_bytes_per_s_per_direction": (1e8, 1e14),
                "latency_s": (1e-8, 1e-2)}
TOP_FIELDS = ("schema_version", "name", "aliases", "device", "gpus_per_node", "nodes", "intra_node", "inter_node",
              "note")
MAX_GPUS = 1 << 20
_NAME = re.compile(r"^(?:(\d+)x)?(\d+)x([a-z0-9_.]+)-([a-z0-9_]+)$")


@dataclass(frozen=True)
class Link:
    kind: str  # nvlink, pcie, xgmi, infiniband, ethernet
    topology: str  # switch, ring, mesh, pcie_tree
    bandwidth_bytes_per_s: float  # per direction, per GPU
    latency_s: float  # α: one step of a collective
    p2p: bool = True  # False: transfers staged through host memory (cross PCIe twice)
    in_switch_reduction: bool = False  # NVLink SHARP: the switch reduces
    peer_bandwidth_bytes_per_s: float | None = None  # mesh: one direct link to each peer (a group of k GPUs
    # reaches at most (k - 1) x this, a single peer this)
    sources: dict = field(default_factory=dict, compare=False, hash=False)

    def describe(self) -> str:
        gbs = self.bandwidth_bytes_per_s / 1e9
        extra = (f", {self.peer_bandwidth_bytes_per_s / 1e9:g} GB/s per peer" if self.peer_bandwidth_bytes_per_s else "") + \
                ("" if self.p2p else ", no peer-to-peer (through host memory)") + \
                (", in-switch reduction" if self.in_switch_reduction else "")
        return f"{self.kind} {self.topology}, {gbs:g} GB/s per direction per GPU, {self.latency_s * 1e6:g} us{extra}"


@dataclass(frozen=True)
class Cluster:
    key: str
    name: str
    device: Hardware
    gpus_per_node: int
    nodes: int
    intra: Link
    inter: Link | None = None
    aliases: tuple = ()
    path: str = ""

    @property
    def gpus(self) -> int:
        return self.gpus_per_node * self.nodes

    def link_for(self, group_size: int, stride: int = 1) -> tuple:
        """(name, Link) that a collective among `group_size` ranks spaced `stride` apart crosses: the
        intra-node link when the group fits in one node, else the network. A group with k GPUs in each
        node runs k rings side by side, one per GPU's NIC (NCCL's channels), each crossing the network
        once per node: per GPU it reaches min(intra-node bandwidth, k x NIC), at the network's latency; a
        point-to-point transfer across nodes has its one NIC (`peer_bandwidth_bytes_per_s`)."""
        span = (group_size - 1) * stride + 1
        if span <= self.gpus_per_node or self.inter is None:
            return "intra_node", self.intra
        k = max(1, min(group_size, self.gpus_per_node // max(1, stride)))  # the group's GPUs in one node
        nic = self.inter.bandwidth_bytes_per_s
        return "inter_node", replace(self.inter, bandwidth_bytes_per_s=min(self.intra.bandwidth_bytes_per_s, k * nic),
                                     peer_bandwidth_bytes_per_s=nic if k > 1 else None)

    def with_size(self, nodes: int, gpus_per_node: int, key: str) -> "Cluster":
        return Cluster(key=key, name=f"{self.device.name}: {nodes} x {gpus_per_node} GPUs ({self.intra.kind})",
                       device=self.device, gpus_per_node=gpus_per_node, nodes=nodes, intra=self.intra,
                       inter=self.inter, aliases=(), path=self.path)


def _figure(path, where, entry):
    lo, hi = LINK_FIGURES[where.rsplit(".", 1)[-1]]
    if not isinstance(entry, dict) or "value" not in entry or "source" not in entry:
        raise _fail(f"{path}: {where} must be a mapping with 'value' and 'source'")
    extra = set(entry) - {"value", "source", "raw", "conversion", "note"}
    if extra:
        raise _fail(f"{path}: {where} has unknown field(s) {', '.join(sorted(map(str, extra)))}; "
                    f"allowed: value, source, raw, conversion, note")
    if not isinstance(entry["source"], str) or not entry["source"].strip():
        raise _fail(f"{path}: {where}.source must be non-empty text; every link figure needs its source")
    v = _number(entry["value"])
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise _fail(f"{path}: {where}.value={_brief(v)} must be a number in [{lo:g}, {hi:g}] "
                    f"(check the unit in the key name)")
    return float(v), entry["source"]


def _link(path, where, block) -> Link:
    if not isinstance(block, dict):
        raise _fail(f"{path}: {where} must be a mapping with fields {', '.join(LINK_FIELDS)}")
    extra = set(block) - set(LINK_FIELDS)
    if extra:
        raise _fail(f"{path}: {where} has unknown field(s) {', '.join(sorted(map(str, extra)))}; "
                    f"allowed: {', '.join(LINK_FIELDS)}")
    for k in ("kind", "topology", "bandwidth_bytes_per_s_per_direction", "latency_s"):
        if k not in block:
            raise _fail(f"{path}: {where}.{k} is missing")
    if block["kind"] not in LINK_KINDS:
        raise _fail(f"{path}: {where}.kind={_brief(block['kind'])}; allowed: {', '.join(LINK_KINDS)}")
    if block["topology"] not in TOPOLOGIES:
        raise _fail(f"{path}: {where}.topology={_brief(block['topology'])}; allowed: {', '.join(TOPOLOGIES)}")
    flags = {}
    for k, default in (("p2p", True), ("in_switch_reduction", False)):
        v = block.get(k, default)
        if not isinstance(v, bool):
            raise _fail(f"{path}: {where}.{k}={_brief(v)} must be true or false")
        flags[k] = v
    bw, bw_src = _figure(path, f"{where}.bandwidth_bytes_per_s_per_direction", block["bandwidth_bytes_per_s_per_direction"])
    lat, lat_src = _figure(path, f"{where}.latency_s", block["latency_s"])
    if flags["in_switch_reduction"] and block["topology"] != "switch":
        raise _fail(f"{path}: {where}.in_switch_reduction needs topology 'switch'")
    if "note" in block and (not isinstance(block["note"], str) or not block["note"].strip()):
        raise _fail(f"{path}: {where}.note must be non-empty text")
    peer = None
    if "peer_bandwidth_bytes_per_s_per_direction" in block:
        if block["topology"] != "mesh":
            raise _fail(f"{path}: {where}.peer_bandwidth_bytes_per_s_per_direction applies to topology 'mesh' "
                        f"(one direct link per peer)")
        peer, peer_src = _figure(path, f"{where}.peer_bandwidth_bytes_per_s_per_direction",
                                 block["peer_bandwidth_bytes_per_s_per_direction"])
        if peer > bw:
            raise _fail(f"{path}: {where}: a peer link ({peer:g} B/s) cannot be faster than the GPU's aggregate "
                        f"({bw:g} B/s)")
    return Link(kind=block["kind"], topology=block["topology"], bandwidth_bytes_per_s=bw, latency_s=lat,
                p2p=flags["p2p"], in_switch_reduction=flags["in_switch_reduction"], peer_bandwidth_bytes_per_s=peer,
                sources={"bandwidth": bw_src, "latency": lat_src, **({"peer_bandwidth": peer_src} if peer else {}),
                         **({"note": block["note"]} if "note" in block else {})})


def _count(path, where, v, hi):
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
        raise _fail(f"{path}: {where}={_brief(v)} must be an integer in [1, {hi}]")
    return v


def parse_cluster(data, path: str, key: str) -> Cluster:
    if not isinstance(data, dict):
        raise _fail(f"{path}: a cluster profile is a mapping with fields {', '.join(TOP_FIELDS)}")
    extra = set(data) - set(TOP_FIELDS)
    if extra:
        raise _fail(f"{path}: unknown field(s) {', '.join(sorted(map(str, extra)))}; allowed: {', '.join(TOP_FIELDS)}")
    for k in ("schema_version", "name", "device", "gpus_per_node", "intra_node"):
        if k not in data:
            raise _fail(f"{path}: '{k}' is missing")
    if data["schema_version"] != 1:
        raise _fail(f"{path}: schema_version={_brief(data['schema_version'])}; this attnsim reads 1")
    if not isinstance(data["name"], str) or not data["name"].strip():
        raise _fail(f"{path}: name must be non-empty text")
    aliases = data.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise _fail(f"{path}: aliases must be a list of names")
    if not isinstance(data["device"], str) or not data["device"].strip():
        raise _fail(f"{path}: device must name a device profile (a name such as h100 or a path)")
    dev = data["device"]
    if (dev.endswith((".yaml", ".yml")) or "/" in dev) and not os.path.isabs(dev):
        dev = str(Path(path).parent / dev)  # a relative device path is relative to the cluster file
    device = load_hardware(dev)
    gpn = _count(path, "gpus_per_node", data["gpus_per_node"], 1024)
    nodes = _count(path, "nodes", data.get("nodes", 1), MAX_GPUS // gpn)
    intra = _link(path, "intra_node", data["intra_node"])
    inter = _link(path, "inter_node", data["inter_node"]) if data.get("inter_node") is not None else None
    if nodes > 1 and inter is None:
        raise _fail(f"{path}: nodes={nodes} needs an inter_node link (the network between nodes)")
    return Cluster(key=key, name=data["name"].strip(), device=device, gpus_per_node=gpn, nodes=nodes, intra=intra,
                   inter=inter, aliases=tuple(a.lower() for a in aliases), path=str(path))


@lru_cache(maxsize=None)
def builtin_clusters() -> dict:
    from importlib import resources
    base = Path(str(resources.files("attnsim.hardware_profiles"))) / "clusters"
    out = {}
    for p in sorted(base.glob("*.yaml")):
        out[p.stem] = parse_cluster(_load_yaml(p), str(p), p.stem)
    return out


def cluster_table() -> dict:
    return name_table(builtin_clusters())


def is_cluster_name(name) -> bool:
    """A name that reads as a cluster (`4xrtx4090-pcie`, `2x8xh100-nvlink`, an alias) or a cluster YAML.
    A device's name or alias answers False without reading the cluster profiles (predict's start-up)."""
    s = str(name).lower()
    if s.endswith((".yaml", ".yml")):
        return _is_cluster_file(s)
    if _NAME.match(s):
        return True
    from .hardware import alias_table
    return s not in alias_table() and s in cluster_table()


def _is_cluster_file(path) -> bool:
    try:
        data = _load_yaml(Path(path))
    except AttnsimError:
        return False
    return isinstance(data, dict) and "gpus_per_node" in data


def load_cluster(name_or_path) -> Cluster:
    """A shipped cluster by name or alias, a `[<nodes>x]<gpus>x<device>-<link>` name composed from a
    shipped node of that device and link, or a user's cluster YAML."""
    s = str(name_or_path)
    if s.endswith((".yaml", ".yml")) or "/" in s or os.sep in s:
        p = Path(s)
        return parse_cluster(_load_yaml(p), str(p), p.stem)
    table = cluster_table()
    low = s.lower()
    if low in table:
        return builtin_clusters()[table[low]]
    m = _NAME.match(low)
    shipped = sorted(builtin_clusters())
    if not m:
        raise _fail(f"unknown cluster {_brief(s)}{suggest(s, table)}; allowed: {', '.join(shipped)}, "
                    f"'<gpus>x<device>-<link>' or '<nodes>x<gpus>x<device>-<link>' of those, or a cluster YAML")
    nodes, gpus, device, link = int(m.group(1) or 1), int(m.group(2)), m.group(3), m.group(4)
    try:
        dev_key = load_hardware(device).key
    except AttnsimError:
        raise _fail(f"cluster {_brief(s)}: unknown device {device!r}; allowed: "
                    f"{', '.join(sorted(builtin_profiles()))}") from None
    base = [c for c in builtin_clusters().values() if c.device.key == dev_key and c.intra.kind == link
            or c.device.key == dev_key and link in c.aliases]
    if not base:
        have = sorted({f"{c.device.key}-{c.intra.kind}" for c in builtin_clusters().values()})
        raise _fail(f"cluster {_brief(s)}: no shipped node of {dev_key} with a {link!r} link; allowed device-link "
                    f"pairs: {', '.join(have)} (or write a cluster YAML)")
    node = max(base, key=lambda c: c.gpus_per_node)
    if not 1 <= gpus <= node.gpus_per_node:
        raise _fail(f"cluster {_brief(s)}: a {node.intra.kind} node of {dev_key} holds 1..{node.gpus_per_node} GPUs, "
                    f"not {gpus}")
    if nodes > 1 and node.inter is None:
        raise _fail(f"cluster {_brief(s)}: the shipped {node.key} node has no inter-node network; write a cluster "
                    f"YAML with inter_node for several nodes")
    if nodes * gpus > MAX_GPUS:
        raise _fail(f"cluster {_brief(s)}: {nodes * gpus} GPUs is more than {MAX_GPUS}")
    return node.with_size(nodes, gpus, low)
