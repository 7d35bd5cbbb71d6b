"""Hardware profiles: one YAML file per device, loaded into a frozen, validated `Hardware`.

Every figure in a profile is a mapping with a `value` and a `source` (document and table),
optionally the `raw` figure as printed and the `conversion` from it (e.g. "sparse / 2").
Keys carry their units. The loader adds no constant of its own: what the model needs, the
profile holds; what a profile lacks (an L2 bandwidth nobody publishes) the model leaves out.

A profile is untrusted input (`--hw my_gpu.yaml`): every key is validated and every bad file is
refused with one AttnsimError line naming the file, the key and what is allowed. The reader takes
regular files only, at most `MAX_PROFILE_BYTES`, and a restricted YAML: no aliases (a profile has
no use for them, and PyYAML expands them without a limit), no duplicate keys (PyYAML keeps the
last silently), no explicit tags or merge keys, dates kept as the text written, bounded nesting.
"""
from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .dtypes import ACCUM_TYPES, ARCHS, DTYPE_BYTES
from .errors import AttnsimError, suggest
from .families import FAMILIES

try:  # libyaml is ~10x faster than the pure-Python parser; cold start matters
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader


# name -> (python type, low, high, required). Ranges catch unit slips (GB/s written as B/s).
FIGURES = {
    "sm_count": (int, 1, 2048, True),
    "clock_max_hz": (float, 1e8, 5e9, True),
    "clock_sustained_hz": (float, 1e8, 5e9, True),
    "fp32_flops_per_clk_per_sm": (float, 16, 8192, True),
    "exp_ops_per_clk_per_sm": (float, 1, 1024, True),
    "exp2_emulation_fp32_ops": (float, 1, 64, True),
    "smem_bytes_per_clk_per_sm": (float, 16, 4096, True),
    "warp_issue_per_clk_per_sm": (float, 1, 64, False),
    "hbm_capacity_bytes": (float, 1e9, 1e13, True),
    "hbm_bandwidth_bytes_per_s": (float, 1e10, 1e14, True),
    "dram_latency_s": (float, 5e-8, 1e-5, True),
    "l2_bytes": (float, 1e5, 1e10, True),
    "l2_bandwidth_bytes_per_s": (float, 1e11, 1e15, False),
    "l2_fetch_granularity_bytes": (int, 8, 1024, False),
    "smem_per_sm_bytes": (int, 8192, 1 << 22, True),
    "smem_per_block_bytes": (int, 8192, 1 << 22, True),
    "tmem_per_sm_bytes": (int, 1024, 1 << 22, False),
    "registers_per_sm": (int, 1024, 1 << 22, True),
    "max_registers_per_thread": (int, 32, 1024, True),
    "max_threads_per_sm": (int, 256, 8192, True),
    "max_ctas_per_sm": (int, 1, 128, True),
    "kernel_launch_overhead_s": (float, 0.0, 1e-3, True),
    "nvlink_bandwidth_bytes_per_s_per_direction": (float, 1e9, 1e13, False),
    "pcie_bandwidth_bytes_per_s_per_direction": (float, 1e9, 1e12, False),
}
FIGURE_FIELDS = ("value", "source", "raw", "conversion", "note")
TENSOR_FIELDS = ("dtype", "accum", "flops_per_clk_per_sm", "datasheet_flops_per_s",
                 "datasheet_clock_hz", "source", "raw", "conversion", "note")
TENSOR_RANGES = (("flops_per_clk_per_sm", 64, 1 << 16), ("datasheet_flops_per_s", 1e12, 1e17),
                 ("datasheet_clock_hz", 1e8, 5e9))
TOP_FIELDS = ("schema_version", "name", "aliases", "vendor", "arch", "compute_capability",
              "default_kernel", "convention", "figures", "tensor", "measured")

# A tensor row's flops_per_clk_per_sm x sm_count x datasheet_clock_hz must reproduce its own
# datasheet_flops_per_s within this fraction. The shipped profiles agree within 0.12% (printed
# figures are rounded); the slips this catches are 2x (sparse vs dense, FMA counted once), 4x
# (per tensor core vs per SM) and 8-25% (boost vs base clock).
TENSOR_TOLERANCE = 0.05
MAX_PROFILE_BYTES = 1 << 20  # 1 MiB; a shipped profile is about 10 kB
MAX_NODES = 20_000  # YAML values (keys count too) in one file; a shipped profile has about 400
MAX_DEPTH = 16  # nesting of mappings and lists (the shipped profiles nest 3 deep)
MAX_INT_DIGITS = 30  # an integer literal longer than this is no hardware figure
MEASURED_DEPTH = 4  # mappings inside `measured`

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # control characters but tab and line break
_CONTROL_ANY = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # in a name or key: no line break of any kind


@dataclass(frozen=True)
class TensorRate:
    """Dense MMA rate for one (input dtype, accumulate type), per SM per clock."""
    dtype: str
    accum: str
    flops_per_clk_per_sm: float
    datasheet_flops_per_s: float  # the vendor's dense figure ...
    datasheet_clock_hz: float  # ... at the clock the vendor quotes it at
    source: str


@dataclass(frozen=True)
class Hardware:
    key: str  # file stem, e.g. "h100_sxm5"
    name: str
    vendor: str
    arch: str
    compute_capability: str
    default_kernel: str
    aliases: tuple
    sm_count: int
    clock_max_hz: float
    clock_sustained_hz: float
    fp32_flops_per_clk_per_sm: float
    exp_ops_per_clk_per_sm: float
    exp2_emulation_fp32_ops: float
    smem_bytes_per_clk_per_sm: float
    hbm_capacity_bytes: float
    hbm_bandwidth_bytes_per_s: float
    dram_latency_s: float
    l2_bytes: float
    smem_per_sm_bytes: int
    smem_per_block_bytes: int
    registers_per_sm: int
    max_registers_per_thread: int
    max_threads_per_sm: int
    max_ctas_per_sm: int
    kernel_launch_overhead_s: float
    tensor: tuple  # of TensorRate
    l2_bandwidth_bytes_per_s: float | None = None
    l2_fetch_granularity_bytes: int | None = None  # bytes the L2 moves from device memory per miss (a sector)
    tmem_per_sm_bytes: int | None = None
    warp_issue_per_clk_per_sm: float | None = None  # warp instructions the SM's schedulers issue per clock
    nvlink_bandwidth_bytes_per_s_per_direction: float | None = None
    pcie_bandwidth_bytes_per_s_per_direction: float | None = None
    path: str = ""
    sources: dict = field(default_factory=dict, compare=False, hash=False)
    raw: dict = field(default_factory=dict, compare=False, hash=False)

    # -- derived rates -------------------------------------------------------------
    @property
    def dtypes(self) -> tuple:
        return tuple(sorted({t.dtype for t in self.tensor}))

    def tensor_rate(self, dtype: str, accum: str = "fp32") -> TensorRate:
        for t in self.tensor:
            if t.dtype == dtype and t.accum == accum:
                return t
        have = ", ".join(f"{t.dtype}/{t.accum}-accumulate" for t in self.tensor)
        raise AttnsimError(f"{self.name} has no tensor-core rate for {dtype} inputs with {accum} "
                           f"accumulation; it has: {have}")

    def mma_flops_per_clk_per_sm(self, dtype: str, accum: str = "fp32") -> float:
        return self.tensor_rate(dtype, accum).flops_per_clk_per_sm

    def peak_flops_per_s(self, dtype: str, accum: str = "fp32", clock_hz: float | None = None) -> float:
        clock_hz = self.clock_max_hz if clock_hz is None else clock_hz
        return self.mma_flops_per_clk_per_sm(dtype, accum) * self.sm_count * clock_hz


# -- validation ----------------------------------------------------------------------------
_LINE_BREAKS = re.compile(r"[ \t]*[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]+[ \t]*")  # what str.splitlines splits at


def _fail(msg) -> AttnsimError:
    """An AttnsimError whose message is one line: YAML errors and user text can carry line breaks."""
    return AttnsimError(_LINE_BREAKS.sub(" ", str(msg)).strip())


def _brief(v, limit=80) -> str:
    """repr(v) for a message: one line, at most `limit` characters, safe for any value."""
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 100:
        return f"<an integer of about {int(v.bit_length() * math.log10(2)) + 1} digits>"
    try:
        s = repr(v)
    except Exception:  # a structure too deep or holding a huge integer
        s = f"<a {type(v).__name__}>"
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _keys(keys) -> str:
    return "[" + ", ".join(_brief(k, 40) for k in sorted(keys, key=repr)) + "]"


def _fields(path, where, entry, allowed):
    extra = [k for k in entry if k not in allowed]
    if extra:
        raise _fail(f"{path}: {where} has unknown field(s) {_keys(extra)}; allowed: {', '.join(allowed)}")


def _text(path, where, v, *, one_line=False, empty=None):
    """A text field: a string, or a plain number YAML read as one (`compute_capability: 9.0`).

    one_line: a name or key (no tab or line break). empty: the message for an empty string
    (None: empty is allowed)."""
    if (isinstance(v, bool) or not isinstance(v, (str, int, float))
            or (isinstance(v, float) and not math.isfinite(v))
            or (isinstance(v, int) and abs(v) >= 10 ** MAX_INT_DIGITS)):
        raise _fail(f"{path}: {where} must be a {'' if empty is None else 'non-empty '}string, got {_brief(v)}")
    s = str(v)
    if empty is not None and not s.strip():
        raise _fail(f"{path}: {empty}")
    bad = (_CONTROL_ANY if one_line else _CONTROL).search(s)
    if bad:
        raise _fail(f"{path}: {where} contains the control character {bad.group()!r}; allowed: printable "
                    f"text{'' if one_line else ', tabs and line breaks'}")
    return s


def _number(v):
    """YAML 1.1 reads `1.98e9` (no sign in the exponent) as a string: accept it as the number it is."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _figure(path, key, entry):
    typ, lo, hi, _ = FIGURES[key]
    where = f"figures.{key}"
    if not isinstance(entry, dict) or "value" not in entry or "source" not in entry:
        raise _fail(f"{path}: {where} must be a mapping with 'value' and 'source'")
    _fields(path, where, entry, FIGURE_FIELDS)
    _text(path, f"{where}.source", entry["source"], empty=f"{where}.source is empty; every figure needs its source")
    for f in FIGURE_FIELDS[2:]:
        if f in entry:
            _text(path, f"{where}.{f}", entry[f])
    value = _number(entry["value"])
    if not _is_number(value):
        raise _fail(f"{path}: {where}.value must be a number, got {_brief(value)}")
    # finite first, then the range (exact for any int), then integrality: int(inf) and float(huge int) raise
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(f"{path}: {where}.value={_brief(entry['value'])} is not a finite number; "
                    f"allowed: [{lo:g}, {hi:g}]")
    if not lo <= value <= hi:
        raise _fail(f"{path}: {where}.value={_brief(value)} is outside [{lo:g}, {hi:g}] "
                    f"(check the unit in the key name)")
    if typ is int and not float(value).is_integer():
        raise _fail(f"{path}: {where}.value must be an integer, got {value!r}")
    return typ(value)


def _tensor(path, i, entry):
    where = f"{path}: tensor[{i}]"
    if not isinstance(entry, dict):
        raise _fail(f"{where} must be a mapping with {', '.join(TENSOR_FIELDS[:6])}, got {_brief(entry)}")
    missing = [k for k in TENSOR_FIELDS[:6] if k not in entry]
    if missing:
        raise _fail(f"{where} lacks {', '.join(missing)}")
    _fields(path, f"tensor[{i}]", entry, TENSOR_FIELDS)
    if not isinstance(entry["dtype"], str) or entry["dtype"] not in DTYPE_BYTES:
        raise _fail(f"{where}.dtype={_brief(entry['dtype'])}; allowed: {', '.join(DTYPE_BYTES)}")
    if not isinstance(entry["accum"], str) or entry["accum"] not in ACCUM_TYPES:
        raise _fail(f"{where}.accum={_brief(entry['accum'])}; allowed: {', '.join(ACCUM_TYPES)}")
    for k, lo, hi in TENSOR_RANGES:
        v = _number(entry[k])
        if not _is_number(v) or not lo <= v <= hi:  # also refuses nan and inf
            raise _fail(f"{where}.{k}={_brief(v)} is not a number in [{lo:g}, {hi:g}]")
        entry[k] = v
    source = _text(path, f"tensor[{i}].source", entry["source"],
                   empty=f"tensor[{i}].source is empty; every tensor rate needs its source")
    for f in TENSOR_FIELDS[6:]:
        if f in entry:
            _text(path, f"tensor[{i}].{f}", entry[f])
    return TensorRate(entry["dtype"], entry["accum"], float(entry["flops_per_clk_per_sm"]),
                      float(entry["datasheet_flops_per_s"]), float(entry["datasheet_clock_hz"]), source)


def _check_tensor_rows(path, tensor, sm_count):
    """Each (dtype, accum) once; each row's per-clock rate reproduces its own datasheet figure."""
    first = {}
    for i, t in enumerate(tensor):
        j = first.setdefault((t.dtype, t.accum), i)
        if j != i:
            raise _fail(f"{path}: tensor[{i}] repeats dtype={t.dtype}, accum={t.accum} of tensor[{j}]; "
                        f"each (dtype, accum) pair is given once")
        derived = t.flops_per_clk_per_sm * sm_count * t.datasheet_clock_hz
        ratio = derived / t.datasheet_flops_per_s
        if abs(ratio - 1) > TENSOR_TOLERANCE:
            raise _fail(
                f"{path}: tensor[{i}] ({t.dtype}/{t.accum}-accumulate) contradicts itself: flops_per_clk_per_sm "
                f"x figures.sm_count x datasheet_clock_hz = {t.flops_per_clk_per_sm:g} x {sm_count} x "
                f"{t.datasheet_clock_hz:g} = {derived / 1e12:.1f} TFLOP/s, {ratio:.3g}x its datasheet_flops_per_s "
                f"({t.datasheet_flops_per_s / 1e12:.1f} TFLOP/s); allowed: agreement within "
                f"{TENSOR_TOLERANCE:.0%} (check dense vs sparse, FMA = 2 FLOPs, per SM, the datasheet's clock)")


_MEASURED_ALLOWED = (f"a finite number, a string, a list of those, or a mapping with string keys of those "
                     f"(at most {MEASURED_DEPTH} levels deep)")


def _measured(path, block, where="measured", depth=1):
    """`measured`: calibration results, e.g. `{hbm_bandwidth_bytes_per_s: {value: 3.0e12, source: ...,
    date: "2025-01-31"}}`; string keys, leaves numbers or strings (or lists of them), bounded depth."""
    if not isinstance(block, dict):
        raise _fail(f"{path}: {where} must be a mapping (name: value, or name: {{value, unit, source, date}}), "
                    f"got {_brief(block)}")
    for k, v in block.items():
        if not isinstance(k, str) or not k.strip() or _CONTROL_ANY.search(k):
            raise _fail(f"{path}: {where} has the key {_brief(k)}; keys must be non-empty one-line strings "
                        f"(quote a date or a number used as a key)")
        at = f"{where}.{k}"
        if isinstance(v, dict):
            if depth >= MEASURED_DEPTH:
                raise _fail(f"{path}: {at} nests mappings deeper than {MEASURED_DEPTH} levels; "
                            f"allowed: {_MEASURED_ALLOWED}")
            _measured(path, v, at, depth + 1)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                _measured_leaf(path, f"{at}[{i}]", x)
        else:
            _measured_leaf(path, at, v)


def _measured_leaf(path, where, v):
    if isinstance(v, str):
        _text(path, where, v)
    elif not _is_number(v) or (isinstance(v, float) and not math.isfinite(v)) or \
            (isinstance(v, int) and abs(v) >= 10 ** MAX_INT_DIGITS):
        raise _fail(f"{path}: {where}={_brief(v)}; allowed: {_MEASURED_ALLOWED}")


def parse_profile(data, path: str, key: str) -> Hardware:
    """Validate a parsed YAML document and build a `Hardware`. Errors name the file and key."""
    if not isinstance(data, dict):
        raise _fail(f"{path}: a hardware profile must be a YAML mapping, got {_brief(data)}")
    extra = [k for k in data if k not in TOP_FIELDS]
    if extra:
        raise _fail(f"{path}: unknown top-level key(s) {_keys(extra)}; allowed: {', '.join(TOP_FIELDS)}")
    for k in ("name", "vendor", "arch", "compute_capability", "default_kernel", "figures", "tensor"):
        if k not in data:
            raise _fail(f"{path}: missing required key {k!r}")
    version = data.get("schema_version", 1)
    if not _is_number(version) or version != 1:
        raise _fail(f"{path}: schema_version={_brief(version)}; allowed: 1")
    text = {k: _text(path, k, data[k], one_line=True, empty=f"{k} must be a non-empty string, got {_brief(data[k])}")
            for k in ("name", "vendor", "compute_capability", "default_kernel")}
    if not isinstance(data["arch"], str) or data["arch"] not in ARCHS:
        raise _fail(f"{path}: arch={_brief(data['arch'])}; allowed: {', '.join(ARCHS)}")
    fam = FAMILIES.get(text["default_kernel"])
    if fam is None or data["arch"] not in fam.archs:
        ok = sorted(n for n, f in FAMILIES.items() if data["arch"] in f.archs)
        raise _fail(f"{path}: default_kernel={text['default_kernel']!r} does not run on arch "
                    f"{data['arch']!r}; allowed: {', '.join(ok)}")
    if "convention" in data:
        if not isinstance(data["convention"], str):
            raise _fail(f"{path}: convention must be a string (the profile's conventions, in words), "
                        f"got {_brief(data['convention'])}")
        _text(path, "convention", data["convention"])
    if "measured" in data:
        _measured(path, data["measured"])
    figures = data["figures"]
    if not isinstance(figures, dict):
        raise _fail(f"{path}: 'figures' must be a mapping, got {_brief(figures)}")
    for k in figures:
        if k not in FIGURES:
            raise _fail(f"{path}: unknown figure {_brief(k, 60)}{_near(k)}; allowed: {', '.join(FIGURES)}")
    values = {}
    for k, (_, _, _, required) in FIGURES.items():
        if k in figures:
            values[k] = _figure(path, k, figures[k])
        elif required:
            raise _fail(f"{path}: missing required figure figures.{k}")
    if values["clock_sustained_hz"] > values["clock_max_hz"]:
        raise _fail(f"{path}: figures.clock_sustained_hz exceeds figures.clock_max_hz")
    if values["smem_per_block_bytes"] > values["smem_per_sm_bytes"]:
        raise _fail(f"{path}: figures.smem_per_block_bytes exceeds figures.smem_per_sm_bytes")
    if not isinstance(data["tensor"], list) or not data["tensor"]:
        raise _fail(f"{path}: 'tensor' must be a non-empty list of MMA rates, got {_brief(data['tensor'])}")
    tensor = tuple(_tensor(path, i, e) for i, e in enumerate(data["tensor"]))
    _check_tensor_rows(path, tensor, values["sm_count"])
    aliases = data.get("aliases")
    aliases = [] if aliases is None else aliases
    if not isinstance(aliases, list):
        raise _fail(f"{path}: 'aliases' must be a list of strings, got {_brief(aliases)}")
    for i, a in enumerate(aliases):
        if not isinstance(a, str):
            raise _fail(f"{path}: aliases[{i}]={_brief(a)}; 'aliases' must be a list of strings")
        _text(path, f"aliases[{i}]", a, one_line=True, empty=f"aliases[{i}] is empty")
    return Hardware(
        key=key, name=text["name"], vendor=text["vendor"], arch=data["arch"],
        compute_capability=text["compute_capability"], default_kernel=text["default_kernel"],
        aliases=tuple(a.lower() for a in aliases), tensor=tensor, path=str(path),
        sources={k: figures[k]["source"] for k in figures}, raw=data, **values)


def _near(k):
    return suggest(k, FIGURES)


# -- reading the file ----------------------------------------------------------------------
class _Refused(Exception):
    """The restricted YAML reader refuses the document; the message lacks only the file name."""


_TAG = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ, _MERGE = _TAG + "str", _TAG + "map", _TAG + "seq", _TAG + "merge"
_INT, _FLOAT = _TAG + "int", _TAG + "float"


def _profile_loader(base):
    """The restricted loader on top of `base` (libyaml's CSafeLoader; PyYAML's SafeLoader without it)."""

    class ProfileLoader(base):
        """A safe loader with a check between composing and constructing.

        Composing a document is cheap even for an alias bomb (an alias is the same node object again);
        expanding it is what explodes. So the composed graph is walked once, iteratively, before any
        Python object is built: a node reached twice is an alias (refused, as is a self-reference),
        duplicate keys, merge keys and explicit tags are refused, nesting and node count are bounded,
        and every non-string scalar is constructed under a guard (a 5,000-digit integer, `0x_`)."""

        _composed = 0

        def get_single_node(self):
            node = super().get_single_node()
            if node is not None:
                self._check(node)
            return node

        def resolve(self, kind, value, implicit):
            """Called for each node as it is composed: the count stops a 1 MiB list of numbers early."""
            self._composed += 1
            if self._composed > MAX_NODES:
                raise _Refused(f"more than {MAX_NODES:,} values; a hardware profile holds a few hundred")
            return super().resolve(kind, value, implicit)

        def _scalar(self, node, where):
            """A scalar that is not a string: the tag YAML infers (no explicit tag), readable, bounded."""
            tag = node.tag
            # plain style: None from PyYAML's composer, "" from libyaml's; a quoted scalar is a string
            implicit = _STR if node.style else self.resolve(_yaml_nodes().ScalarNode, node.value, (True, False))
            line = node.start_mark.line + 1
            if tag != implicit:
                raise _Refused(f"{_where(where)} (line {line}) carries the explicit YAML tag {tag!r}; a hardware "
                               f"profile allows plain values only")
            if tag == _INT:
                digits = len(node.value.lstrip("+-").replace("_", ""))
                if digits > MAX_INT_DIGITS:
                    raise _Refused(f"{_where(where)} (line {line}) is an integer of {digits} digits; allowed: at "
                                   f"most {MAX_INT_DIGITS} digits")
            try:
                return self.construct_object(node)  # cached: constructing the document reuses it
            except Exception:  # the constructors trust the resolver's patterns, which admit `0b_`, `0x_`
                kind = {_INT: "an integer", _FLOAT: "a number", _TAG + "bool": "a boolean"}.get(tag, tag)
                raise _Refused(f"{_where(where)} (line {line}): YAML cannot read {_brief(node.value, 40)} "
                               f"as {kind}") from None

        def _check(self, root):
            nodes = _yaml_nodes()
            scalar, mapping = nodes.ScalarNode, nodes.MappingNode
            seen = set()
            count = 1
            stack = [(root, None, 0)]  # (node, where, depth); where: None or (parent's where, key or index)
            while stack:
                node, where, depth = stack.pop()
                if id(node) in seen:
                    raise _Refused(f"{_where(where)} reuses the value at line {node.start_mark.line + 1} through a "
                                   f"YAML alias; a hardware profile allows no aliases (write the value out)")
                seen.add(id(node))
                tag = node.tag
                if tag == _STR:
                    continue
                if isinstance(node, scalar):
                    self._scalar(node, where)
                    continue
                count += len(node.value) * (1 if tag == _SEQ else 2)  # before walking them
                if count > MAX_NODES:
                    raise _Refused(f"{_where(where)} (line {node.start_mark.line + 1}) brings the file to more than "
                                   f"{MAX_NODES:,} values; a hardware profile holds a few hundred")
                if depth >= MAX_DEPTH:
                    raise _Refused(f"{_where(where)} (line {node.start_mark.line + 1}) nests more than {MAX_DEPTH} "
                                   f"levels deep")
                if tag == _SEQ:
                    stack.extend((item, (where, i), depth + 1) for i, item in enumerate(node.value))
                    continue
                if tag != _MAP or not isinstance(node, mapping):
                    raise _Refused(f"{_where(where)} (line {node.start_mark.line + 1}) carries the explicit YAML "
                                   f"tag {tag!r}; a hardware profile allows plain mappings and lists only")
                first = {}
                for k, v in node.value:
                    if not isinstance(k, scalar) or id(k) in seen:
                        raise _Refused(f"{_where(where)}: the key at line {k.start_mark.line + 1} is a list, a "
                                       f"mapping or an alias; keys are plain names")
                    seen.add(id(k))
                    if k.tag == _STR:
                        name = k.value
                    elif k.tag == _MERGE:
                        raise _Refused(f"{_where(where)}: the merge key '<<' (line {k.start_mark.line + 1}) is not "
                                       f"allowed in a hardware profile (write the keys out)")
                    else:
                        name = self._scalar(k, (where, f"<key {_brief(k.value, 40)}>"))
                    if name in first:
                        a, b = first[name].start_mark, k.start_mark
                        raise _Refused(f"{_where(where)}: duplicate key {_brief(k.value, 40)} (line {a.line + 1}, "
                                       f"column {a.column + 1} and line {b.line + 1}, column {b.column + 1}); YAML "
                                       f"would keep only the last: give each key once")
                    first[name] = k
                    if isinstance(v, scalar):  # most values: checked here, without a trip through the stack
                        if id(v) in seen:
                            stack.append((v, (where, k.value), depth + 1))  # the alias message
                        else:
                            seen.add(id(v))
                            if v.tag != _STR:
                                self._scalar(v, (where, k.value))
                    else:
                        stack.append((v, (where, k.value), depth + 1))

    # Dates stay the text written ("2025-01-31"): no datetime objects, which JSON cannot print.
    ProfileLoader.add_constructor(_TAG + "timestamp", base.construct_yaml_str)
    return ProfileLoader


_ProfileLoader = _profile_loader(_Loader)


def _yaml_nodes():
    import yaml.nodes
    return yaml.nodes


def _where(where) -> str:
    """The key path of a node, built only for a message: `figures.sm_count.value`, `tensor[2].dtype`."""
    parts = []
    while where is not None:
        where, label = where
        if isinstance(label, int):
            parts.append(f"[{label}]")
        else:
            label = label if len(label) <= 40 and label.isprintable() else _brief(label, 40)
            parts.append(f".{label}")
    return "".join(reversed(parts)).lstrip(".") or "the top level"


def _file_kind(mode) -> str:
    for test, what in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def _read_profile(path) -> bytes:
    """The file's bytes: a regular file (a pipe would block), at most MAX_PROFILE_BYTES."""
    limit = f"a hardware profile is a regular YAML file of at most {MAX_PROFILE_BYTES:,} bytes"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _fail(f"hardware profile file {str(path)!r} does not exist") from None
    except OSError as e:
        raise _fail(f"{path}: cannot read hardware profile ({e.strerror})") from None
    except ValueError:  # an embedded NUL byte
        raise _fail(f"hardware profile path {str(path)!r} is not a valid file name") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(f"{path}: is a directory, not a hardware profile file")
    if not stat.S_ISREG(st.st_mode):
        raise _fail(f"{path}: is {_file_kind(st.st_mode)}; {limit}")
    if st.st_size > MAX_PROFILE_BYTES:
        raise _fail(f"{path}: is {st.st_size:,} bytes; {limit}")
    try:  # non-blocking: should the path become a pipe after the stat, open() still returns
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise _fail(f"{path}: cannot read hardware profile ({e.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _fail(f"{path}: is {_file_kind(os.fstat(fd).st_mode)}; {limit}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as e:
        raise _fail(f"{path}: cannot read hardware profile ({e.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_PROFILE_BYTES:
        raise _fail(f"{path}: is over {MAX_PROFILE_BYTES:,} bytes; {limit}")
    return data


def _load_yaml(path):
    import yaml
    data = _read_profile(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _fail(f"{path}: not UTF-8 text (byte {e.start}); a hardware profile is a YAML file") from None
    loader = None
    try:
        loader = _ProfileLoader(text)  # PyYAML's own reader checks the characters here already
        return loader.get_single_data()
    except _Refused as e:
        raise _fail(f"{path}: {e}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" at line {mark.line + 1}" if mark else ""
        raise _fail(f"{path}: not valid YAML{where}: {e.problem or e.context or e}") from None
    except yaml.reader.ReaderError as e:
        char = f"#x{e.character:04x}" if isinstance(e.character, int) else repr(e.character)
        raise _fail(f"{path}: not valid YAML: the character {char} at offset {e.position} ({e.reason}); "
                    f"a hardware profile is printable text") from None
    except yaml.YAMLError as e:
        raise _fail(f"{path}: not valid YAML: {e}") from None
    except RecursionError:  # the pure-Python parser, without libyaml's own nesting limit
        raise _fail(f"{path}: nested too deeply; a hardware profile nests at most {MAX_DEPTH} levels") from None
    finally:
        if loader is not None:
            loader.dispose()


def _builtin_dir() -> Path:
    return Path(str(resources.files("attnsim.hardware_profiles")))


@lru_cache(maxsize=None)
def builtin_profiles() -> dict:
    """key -> Hardware for every shipped profile."""
    out = {}
    for p in sorted(_builtin_dir().glob("*.yaml")):
        out[p.stem] = parse_profile(_load_yaml(p), str(p), p.stem)
    return out


def alias_table() -> dict:
    """Every accepted name (file stem and alias, lower case) -> profile key."""
    return name_table(builtin_profiles())


def name_table(profiles: dict) -> dict:
    """{key: a profile with `aliases`} -> every accepted name (the key and each alias) -> key."""
    table = {}
    for key, p in profiles.items():
        table[key] = key
        for a in p.aliases:
            table[a] = key
    return table


def load_hardware(name_or_path: str) -> Hardware:
    """A shipped profile by key or alias (`h100`, `a100`, `b200`, ...) or a user's YAML file by path."""
    s = str(name_or_path)
    if s.endswith((".yaml", ".yml")) or os.sep in s or "/" in s:
        p = Path(s)
        return parse_profile(_load_yaml(p), str(p), p.stem)
    table = alias_table()
    key = table.get(s.lower())
    if key is None:
            raise _fail(f"unknown hardware {_brief(s)}{suggest(s, table)}; allowed: "
                    f"{', '.join(sorted(builtin_profiles()))} (aliases: {', '.join(sorted(set(table) - set(builtin_profiles())))})"
                    f" or a path to a YAML profile")
    return builtin_profiles()[key]
