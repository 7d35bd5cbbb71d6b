"""Hardware profiles: one YAML file per device, loaded into a frozen, validated `Hardware`.

Every figure in a profile is a mapping with a `value` and a `source` (document and table),
optionally the `raw` figure as printed and the `conversion` from it (e.g. "sparse / 2").
Keys carry their units. The loader adds no constant of its own: what the model needs, the
profile holds; what a profile lacks (an L2 bandwidth nobody publishes) the model leaves out.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .errors import AttnsimError

try:  # libyaml is ~10x faster than the pure-Python parser; cold start matters
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader

DTYPE_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
ACCUM_TYPES = ("fp32", "fp16")
ARCHS = ("ampere", "ada", "hopper", "blackwell", "cdna3")

# name -> (python type, low, high, required). Ranges catch unit slips (GB/s written as B/s).
FIGURES = {
    "sm_count": (int, 1, 2048, True),
    "clock_max_hz": (float, 1e8, 5e9, True),
    "clock_sustained_hz": (float, 1e8, 5e9, True),
    "fp32_flops_per_clk_per_sm": (float, 16, 8192, True),
    "exp_ops_per_clk_per_sm": (float, 1, 1024, True),
    "exp2_emulation_fp32_ops": (float, 1, 64, True),
    "smem_bytes_per_clk_per_sm": (float, 16, 4096, True),
    "hbm_capacity_bytes": (float, 1e9, 1e13, True),
    "hbm_bandwidth_bytes_per_s": (float, 1e10, 1e14, True),
    "dram_latency_s": (float, 5e-8, 1e-5, True),
    "l2_bytes": (float, 1e5, 1e10, True),
    "l2_bandwidth_bytes_per_s": (float, 1e11, 1e15, False),
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
TOP_FIELDS = ("schema_version", "name", "aliases", "vendor", "arch", "compute_capability",
              "default_kernel", "convention", "figures", "tensor", "measured")


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
    tmem_per_sm_bytes: int | None = None
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


def _number(v):
    """YAML 1.1 reads `1.98e9` (no sign in the exponent) as a string: accept it as the number it is."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def _figure(path, key, entry):
    typ, lo, hi, _ = FIGURES[key]
    if not isinstance(entry, dict) or "value" not in entry or "source" not in entry:
        raise AttnsimError(f"{path}: figures.{key} must be a mapping with 'value' and 'source'")
    extra = set(entry) - set(FIGURE_FIELDS)
    if extra:
        raise AttnsimError(f"{path}: figures.{key} has unknown field(s) {sorted(extra)}; "
                           f"allowed: {', '.join(FIGURE_FIELDS)}")
    if not str(entry["source"]).strip():
        raise AttnsimError(f"{path}: figures.{key}.source is empty; every figure needs its source")
    value = _number(entry["value"])
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AttnsimError(f"{path}: figures.{key}.value must be a number, got {value!r}")
    if typ is int and float(value) != int(value):
        raise AttnsimError(f"{path}: figures.{key}.value must be an integer, got {value!r}")
    if not (lo <= value <= hi) or not math.isfinite(value):
        raise AttnsimError(f"{path}: figures.{key}.value={value!r} is outside [{lo:g}, {hi:g}] "
                           f"(check the unit in the key name)")
    return typ(value)


def _tensor(path, i, entry):
    where = f"{path}: tensor[{i}]"
    if not isinstance(entry, dict):
        raise AttnsimError(f"{where} must be a mapping")
    missing = [k for k in TENSOR_FIELDS[:6] if k not in entry]
    if missing:
        raise AttnsimError(f"{where} lacks {', '.join(missing)}")
    extra = set(entry) - set(TENSOR_FIELDS)
    if extra:
        raise AttnsimError(f"{where} has unknown field(s) {sorted(extra)}; allowed: {', '.join(TENSOR_FIELDS)}")
    if entry["dtype"] not in DTYPE_BYTES:
        raise AttnsimError(f"{where}.dtype={entry['dtype']!r}; allowed: {', '.join(DTYPE_BYTES)}")
    if entry["accum"] not in ACCUM_TYPES:
        raise AttnsimError(f"{where}.accum={entry['accum']!r}; allowed: {', '.join(ACCUM_TYPES)}")
    for k, lo, hi in (("flops_per_clk_per_sm", 64, 1 << 16), ("datasheet_flops_per_s", 1e12, 1e17),
                      ("datasheet_clock_hz", 1e8, 5e9)):
        v = entry[k] = _number(entry[k])
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi):
            raise AttnsimError(f"{where}.{k}={v!r} is not a number in [{lo:g}, {hi:g}]")
    return TensorRate(entry["dtype"], entry["accum"], float(entry["flops_per_clk_per_sm"]),
                      float(entry["datasheet_flops_per_s"]), float(entry["datasheet_clock_hz"]),
                      str(entry["source"]))


def parse_profile(data, path: str, key: str) -> Hardware:
    """Validate a parsed YAML document and build a `Hardware`. Errors name the file and key."""
    if not isinstance(data, dict):
        raise AttnsimError(f"{path}: a hardware profile must be a YAML mapping")
    extra = set(data) - set(TOP_FIELDS)
    if extra:
        raise AttnsimError(f"{path}: unknown top-level key(s) {sorted(extra)}; allowed: {', '.join(TOP_FIELDS)}")
    for k in ("name", "vendor", "arch", "compute_capability", "default_kernel", "figures", "tensor"):
        if k not in data:
            raise AttnsimError(f"{path}: missing required key {k!r}")
    if data.get("schema_version", 1) != 1:
        raise AttnsimError(f"{path}: schema_version={data['schema_version']!r}; allowed: 1")
    for k in ("name", "vendor", "compute_capability", "default_kernel"):
        if not isinstance(data[k], (str, int, float)) or isinstance(data[k], bool) or not str(data[k]).strip():
            raise AttnsimError(f"{path}: {k} must be a non-empty string, got {data[k]!r}")
    if data["arch"] not in ARCHS:
        raise AttnsimError(f"{path}: arch={data['arch']!r}; allowed: {', '.join(ARCHS)}")
    from .families import FAMILIES  # families import this module: import here
    fam = FAMILIES.get(str(data["default_kernel"]))
    if fam is None or data["arch"] not in fam.archs:
        ok = sorted(n for n, f in FAMILIES.items() if data["arch"] in f.archs)
        raise AttnsimError(f"{path}: default_kernel={data['default_kernel']!r} does not run on arch "
                           f"{data['arch']!r}; allowed: {', '.join(ok)}")
    figures = data["figures"]
    if not isinstance(figures, dict):
        raise AttnsimError(f"{path}: 'figures' must be a mapping")
    for k in figures:
        if k not in FIGURES:
            raise AttnsimError(f"{path}: unknown figure {k!r}{_near(k)}; allowed: {', '.join(FIGURES)}")
    values = {}
    for k, (_, _, _, required) in FIGURES.items():
        if k in figures:
            values[k] = _figure(path, k, figures[k])
        elif required:
            raise AttnsimError(f"{path}: missing required figure figures.{k}")
    if values["clock_sustained_hz"] > values["clock_max_hz"]:
        raise AttnsimError(f"{path}: figures.clock_sustained_hz exceeds figures.clock_max_hz")
    if values["smem_per_block_bytes"] > values["smem_per_sm_bytes"]:
        raise AttnsimError(f"{path}: figures.smem_per_block_bytes exceeds figures.smem_per_sm_bytes")
    if not isinstance(data["tensor"], list) or not data["tensor"]:
        raise AttnsimError(f"{path}: 'tensor' must be a non-empty list of MMA rates")
    tensor = tuple(_tensor(path, i, e) for i, e in enumerate(data["tensor"]))
    aliases = data.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise AttnsimError(f"{path}: 'aliases' must be a list of strings")
    return Hardware(
        key=key, name=str(data["name"]), vendor=str(data["vendor"]), arch=data["arch"],
        compute_capability=str(data["compute_capability"]), default_kernel=str(data["default_kernel"]),
        aliases=tuple(a.lower() for a in aliases), tensor=tensor, path=str(path),
        sources={k: figures[k]["source"] for k in figures}, raw=data, **values)


def _near(k):
    from .errors import suggest
    return suggest(k, FIGURES)


def _load_yaml(path):
    import yaml
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_Loader)
    except IsADirectoryError:
        raise AttnsimError(f"{path}: is a directory, not a hardware profile file") from None
    except OSError as e:
        raise AttnsimError(f"{path}: cannot read hardware profile ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise AttnsimError(f"{path}: not UTF-8 text (byte {e.start}); a hardware profile is a YAML file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise AttnsimError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None


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
    table = {}
    for key, hw in builtin_profiles().items():
        table[key] = key
        for a in hw.aliases:
            table[a] = key
    return table


def load_hardware(name_or_path: str) -> Hardware:
    """A shipped profile by key or alias (`h100`, `a100`, `b200`, ...) or a user's YAML file by path."""
    s = str(name_or_path)
    if s.endswith((".yaml", ".yml")) or os.sep in s or "/" in s:
        p = Path(s)
        if not p.exists():
            raise AttnsimError(f"hardware profile file {s!r} does not exist")
        return parse_profile(_load_yaml(p), str(p), p.stem)
    table = alias_table()
    key = table.get(s.lower())
    if key is None:
        from .errors import suggest
        raise AttnsimError(f"unknown hardware {s!r}{suggest(s, table)}; allowed: "
                           f"{', '.join(sorted(builtin_profiles()))} (aliases: {', '.join(sorted(set(table) - set(builtin_profiles())))})"
                           f" or a path to a YAML profile")
    return builtin_profiles()[key]
