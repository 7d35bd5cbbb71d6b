"""Published FlashAttention throughputs (a labelled reference set, not our measurements).

The rows live in `shared/reference/published_flashattention.csv` beside the project (its README
names each figure's source: the FlashAttention-2 and -3 papers' benchmark plots); `published_path`
finds the file (an explicit path, else $ATTNSIM_PUBLISHED_CSV, else the checkout's ../shared/). This module
turns a row into a Workload and a time with the FlashAttention benchmark convention:
FLOPs fwd = 4*B*S^2*H*D (halved when causal), fwd+bwd = 3.5 x fwd; time = FLOPs / throughput.
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

from attnsim.simulator.workload import Workload

ENV_VAR = "ATTNSIM_PUBLISHED_CSV"
RELATIVE_PATH = Path("shared") / "reference" / "published_flashattention.csv"  # from the folder holding the checkout
_MODULE_DIR = Path(__file__).resolve().parent
HARDWARE = {"A100 80GB SXM4": "a100_sxm4_80gb", "H100 80GB SXM5": "h100_sxm5"}
# the published kernel names -> attnsim kernel families (None: no family models it)
FAMILY = {"FlashAttention-2": "fa2", "FlashAttention-3": "fa3", "Triton": "triton",
          "FlashAttention Triton": "triton", "PyTorch standard attention": "eager",
          "Standard attention (PyTorch)": "eager"}


def search_paths() -> list:
    """Where the reference file is looked for without an explicit path or $ATTNSIM_PUBLISHED_CSV:
    shared/reference/published_flashattention.csv in the current directory and each folder above it,
    then in the folders above this module (a source checkout's ../shared/); first found wins."""
    out = []
    for start in (Path.cwd().resolve(), _MODULE_DIR):
        for folder in (start, *start.parents):
            if folder / RELATIVE_PATH not in out:
                out.append(folder / RELATIVE_PATH)
    return out


def published_path(path: str | Path | None = None) -> Path:
    """The published reference CSV: `path` when given, else $ATTNSIM_PUBLISHED_CSV, else the first of
    `search_paths()` that exists. FileNotFoundError says where it looked and how to point at the file."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"published reference file {path} does not exist")
        return path
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env)
        if not path.is_file():
            raise FileNotFoundError(f"${ENV_VAR}={env}: no such file (it should name published_flashattention.csv)")
        return path
    tried = search_paths()
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"published_flashattention.csv not found: ${ENV_VAR} is not set and none of these exists: "
        f"{', '.join(map(str, tried))}. It ships in the project's shared/reference/ (beside a source checkout, "
        f"not in the wheel): set {ENV_VAR}=/path/to/published_flashattention.csv or pass the path")


def load_published(path: str | Path | None = None, include_oom: bool = False) -> list:
    """The rows as dicts; OOM rows (no time) are left out unless asked for. `path`: see `published_path`."""
    with open(published_path(path), newline="") as f:
        rows = list(csv.DictReader(f))
    return rows if include_oom else [r for r in rows if r["value"] != "OOM"]


def fa_convention_flops(r: dict) -> float:
    b, h, d, s = (int(r[k]) for k in ("batch", "heads_q", "head_dim", "seqlen_q"))
    flops = 4.0 * b * s * s * h * d
    if r["causal"] == "true":
        flops /= 2
    if r["direction"] == "fwd+bwd":
        flops *= 3.5
    return flops


def published_time_s(r: dict) -> float:
    """The row's time: FlashAttention-convention FLOPs / the published TFLOP/s."""
    return fa_convention_flops(r) / (float(r["value"]) * 1e12)


def workload_of(r: dict) -> Workload:
    return Workload(batch=int(r["batch"]), seqlen_q=int(r["seqlen_q"]), seqlen_kv=int(r["seqlen_kv"]),
                    heads_q=int(r["heads_q"]), heads_kv=int(r["heads_kv"]), head_dim_qk=int(r["head_dim"]),
                    dtype=r["dtype"], causal=r["causal"] == "true",
                    phase="train" if r["direction"] == "fwd+bwd" else "prefill")


# -- every published row, both files, as one labelled reference set ----------------------------------
MORE_RELATIVE_PATH = Path("shared") / "reference" / "published_kernels_more.csv"
MI300X_PATH = _MODULE_DIR / "reference" / "published_mi300x.csv"  # ships with the package, not in shared/
# qualities of printed numbers (a bar label, a number in a text, a third party's checked transcription);
# approx_* are pixel readings of charts: shown, never fitted unless asked for
EXACT_QUALITIES = ("exact_bar_label", "exact_bar_label_faint", "exact_text", "secondary_transcription")
# the sources' hardware names -> (attnsim profile key, clock regime); None: no profile models the card
REFERENCE_HARDWARE = {
    "A100 80GB SXM4": ("a100_sxm4_80gb", ""), "H100 80GB SXM5": ("h100_sxm5", ""),
    "RTX 4090": ("rtx4090", ""), "H100 SXM 80GB": ("h100_sxm5", ""), "H100 SXM5 (CUDA 12.4)": ("h100_sxm5", ""),
    "A100 PCIe 80GB": ("a100_pcie_80gb", ""),
    # SageAttention's A100 (memory and form factor not stated): taken as the SXM4 80 GB part, stated
    "A100 (memory/form factor not stated)": ("a100_sxm4_80gb", "assumed SXM4 80GB"),
    "B200": ("b200", ""), "B200 (SM100)": ("b200", ""), "B200 (clocks locked 1965 MHz)": ("b200", "locked 1965 MHz"),
    "B200 (clocks unlocked, sustained load at 1000 W cap)": ("b200", "sustained"),
    "B200 (clocks unlocked, bursty execution with idle gaps)": ("b200", "burst"),
    "SM100 (B200-class; SKU not named in the PR text)": ("b200", "assumed B200"),
    "RTX 6000 Ada": (None, ""),
    # validation/reference/published_mi300x.csv (in the package, beside this module)
    "AMD Instinct MI300X": ("mi300x", ""), "AMD Instinct MI300X (ROCm 6.3.2, Xeon 8460Y+ host)": ("mi300x", ""),
}
# the sources' kernel names -> attnsim family (None: no family models that implementation, or a build
# the sources themselves call a regression or a misconfiguration)
REFERENCE_FAMILY = {
    "FlashAttention-2": "fa2", "FlashAttention-2 (PyTorch SDPA flash backend)": "fa2",
    "FlashAttention 2.4.2 (flash_attn_with_kvcache / Flash-Decoding)": "fa2",
    "FlashAttention-3": "fa3", "FlashAttention-3 (FP8)": "fa3",
    "Triton": "triton", "FlashAttention Triton": "triton", "Triton (FP8)": "triton",
    "cuDNN": "cudnn", "cuDNN (FP8)": "cudnn",
    "PyTorch standard attention": "eager", "Standard attention (PyTorch)": "eager",
    "PyTorch standard attention (SDPA math backend)": "eager",
    "FA4 CuTe forward (BF16)": "fa4", "FA4 CuTe forward FP8 (ex2_emu_freq=8)": "fa4",
    "FA4 CuTe hd256 2CTA forward (with exp2 FMA emulation, freq=4/res=3)": "fa4",
    "FA4 CuTe forward 2CTA hd128 (ex2_emu_freq=16 + fused scale/exp2)": "fa4",
    "FA4 CuTe forward 2CTA hd128, built with CUDA 13.x": "fa4",
    "FA4 CuTe (\"FA Python\") forward": "fa4", "FA4 CuTe backward [1CTA]": "fa4",
    "FA4 CuTe backward hd64 1CTA (split_P_dS dealiased TMEM + per-warp signaling)": "fa4",
    # MI300X: the ROCm port's backend is not printed; CK is its default build (validation/reference/README.md)
    "ROCm/flash-attention flash_attn_qkvpacked_func ('Flash2' of benchmarks/benchmark_flash_attention.py; "
    "backend not stated: the default build of the ROCm port is CK, the Triton backend is opt-in via "
    "FLASH_ATTENTION_TRITON_AMD_ENABLE)": "ck",
    # AOTriton before pytorch/pytorch#122857, the regression that PR fixes
    "torch.nn.functional.scaled_dot_product_attention, ROCm flash backend (AOTriton kernels, per "
    "pytorch/pytorch#135431), torch-2.4.0a0+gite6ee832, before the PR's fix": None,
}
_PHASES = {"fwd": "prefill", "fwd+bwd": "train", "bwd": "backward", "fwd (decode)": "decode",
           "fwd (batch prefill)": "prefill"}
_DTYPES = {"fp16": "fp16", "bf16": "bf16", "fp8_e4m3": "fp8", "fp8_e4m3fn": "fp8"}


@dataclass(frozen=True)
class Measurement:
    """A measured attention kernel time and the workload it ran (a published row or one of our records)."""
    phase: str  # prefill | train | backward | decode
    causal: bool
    dtype: str
    batch: int
    heads_q: int
    heads_kv: int
    head_dim: int
    seqlen_q: int
    seqlen_kv: int
    time_s: float

    def workload(self, phase: str | None = None) -> Workload:
        """The row's workload (`phase` overrides: a backward row is priced as train minus prefill)."""
        ph = phase or ("train" if self.phase == "backward" else self.phase)
        return Workload(batch=self.batch, seqlen_q=self.seqlen_q, seqlen_kv=self.seqlen_kv, heads_q=self.heads_q,
                        heads_kv=self.heads_kv, head_dim_qk=self.head_dim, dtype=self.dtype,
                        causal=self.causal and ph != "decode", phase=ph)


@dataclass(frozen=True)
class ReferenceRow(Measurement):
    """One published measurement as attnsim reads it: the workload, the measured kernel time, where
    it comes from (`where`: file and line) and how it was read (`quality`)."""
    source: str = ""  # source_id (the README of shared/reference names each)
    where: str = ""  # "file.csv:line"
    hardware: str = ""  # the source's name for the card
    hw: str | None = None  # attnsim profile key (None: no profile)
    regime: str = ""  # the clock regime the source states ("locked 1965 MHz", "sustained", "burst") or an assumption
    kernel: str = ""  # the source's name for the implementation
    family: str | None = None  # attnsim kernel family (None: not modeled)
    quality: str = ""

    @property
    def exact(self) -> bool:
        return self.quality in EXACT_QUALITIES


def _lead_int(text: str) -> int:
    m = re.match(r"\s*(\d+)", text or "")
    if not m:
        raise ValueError(f"not a whole number: {text!r}")
    return int(m.group(1))


def _row_time(r: dict, file_kind: str) -> float:
    """The measured kernel time of a row, with its source's own FLOP convention."""
    unit, value = r.get("unit", "TFLOP/s"), r["value"]
    if unit == "ms":
        return float(value) / 1e3
    if unit == "us":
        return float(value) / 1e6
    if unit == "% of peak DRAM BW":  # bytes read / latency / peak bandwidth (the blog's own peak)
        notes = r["notes"]
        kv = re.search(r"= (\d+) B\b", notes)
        bw = re.search(r"peak BW (\d+(?:\.\d+)?) GB/s", notes)
        if not (kv and bw):
            raise ValueError("a bandwidth-utilisation row needs its bytes and peak bandwidth in the notes")
        return int(kv.group(1)) / (float(value) / 100 * float(bw.group(1)) * 1e9)
    if file_kind == "fa":  # the FlashAttention benchmark convention
        return published_time_s(r)
    m = re.search(r"flops=(\d+)", r.get("notes", ""))
    if not m:
        raise ValueError("a throughput row needs flops=N in its notes")
    return int(m.group(1)) / (float(value) * 1e12)


def reference_paths() -> list:
    """The three published files: shared/'s two and the package's MI300X file (the last two optional:
    a checkout with only the first still loads)."""
    first = published_path()
    more = first.parent / MORE_RELATIVE_PATH.name
    return [first] + [p for p in (more, MI300X_PATH) if p.is_file()]


def load_reference(paths=None) -> tuple:
    """(rows, skipped): every published measurement with a time and a full shape as ReferenceRow, and
    (where, why) for each row left out (OOM, no shape stated, no metric attnsim converts)."""
    rows, skipped = [], []
    for path in (reference_paths() if paths is None else [Path(p) for p in paths]):
        kind = "fa" if path.name == RELATIVE_PATH.name else "more"
        with open(path, newline="") as f:
            for line, r in enumerate(csv.DictReader(f), start=2):
                where = f"{path.name}:{line}"
                if r["value"] == "OOM":
                    skipped.append((where, "out of memory (no time)"))
                    continue
                try:
                    hw, regime = REFERENCE_HARDWARE[r["hardware"]]
                    row = ReferenceRow(
                        source=r["source_id"], where=where, hardware=r["hardware"], hw=hw, regime=regime,
                        kernel=r["kernel"], family=REFERENCE_FAMILY.get(r["kernel"]), phase=_PHASES[r["direction"]],
                        causal=r["causal"] == "true", dtype=_DTYPES[r["dtype"].split(" ")[0]],
                        batch=_lead_int(r["batch"]), heads_q=_lead_int(r["heads_q"]),
                        heads_kv=_lead_int(r["heads_kv"]), head_dim=_lead_int(r["head_dim"]),
                        seqlen_q=_lead_int(r["seqlen_q"]), seqlen_kv=_lead_int(r["seqlen_kv"]),
                        time_s=_row_time(r, kind), quality=r["value_quality"])
                except (KeyError, ValueError) as e:
                    skipped.append((where, f"{r['source_id']} {r['kernel']!r}: {e}"))
                    continue
                rows.append(row)
    return rows, skipped
