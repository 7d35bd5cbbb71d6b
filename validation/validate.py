"""`attnsim validate`: time attention kernels and the hardware ceilings on the GPU in hand, next to
attnsim's prediction for each, as measurement records (`attnsim.validation.records`).

How a run goes:

1. No CUDA GPU (torch missing, or ``torch.cuda.is_available()`` false): exit 2 with one line.
2. The card: name, SMs, clocks, memory, L2, compute capability, driver, CUDA and library versions
   (``torch.cuda.get_device_properties`` and ``nvidia-smi``), matched to an attnsim hardware profile
   by name (or ``--hw``); a warning for each figure where the profile is off by more than 5%.
3. Ceilings: HBM copy bandwidth, a large bf16 matmul, ``exp`` throughput and L2 reads (the last two
   with the CUDA sources of ``attnsim.kernels.microbench``, which need CuPy).
4. The kernel suite (`suite_cases`): torch SDPA with its flash and cuDNN backends, attnsim's Triton
   kernels (and, in the full suite, CuPy eager attention) over prefill, decode and train shapes. Each
   output is checked against a float64 reference first; then warm-up, CUDA events around each run,
   L2 flushed before each run (a buffer of 2x L2 written), median of ``--repeats``.
5. Each record is appended (and fsynced) as soon as it is measured; with ``--resume`` a record
   already in the output file for the same (kernel, phase, shape, device) is not measured again.

The GPU side is one object (`TorchBackend`, made by `make_backend`); everything else — the grid,
resume, records, predictions, profile matching — is plain code that a fake backend drives in the
tests. torch, triton and cupy are imported inside `TorchBackend` and `gpu_missing` only.
"""
from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

from attnsim.simulator.errors import AttnsimError
from attnsim.simulator.families import FAMILIES as SIM_FAMILIES
from attnsim.simulator.hardware import Hardware, builtin_profiles, load_hardware
from attnsim.simulator.model import predict
from attnsim.simulator.workload import Workload

from . import records

SUITES = ("quick", "full")
MIN_REPEATS = 20
DEFAULT_REPEATS = 30
WARMUP = 5  # launches before timing (Triton compiles and autotunes on the first)
REL_TOL = 2e-2  # an output off by more than this (relative to the reference's largest entry) is flagged
PROFILE_TOL = 0.05  # a card figure this far from its profile's gets a warning

# implementation -> attnsim family (the `family` of its records)
IMPLEMENTATIONS = {
    "sdpa_flash": "fa2",  # torch SDPA's flash backend is FlashAttention-2 (torch vendors FA2)
    "sdpa_cudnn": "cudnn",  # cuDNN's fused attention: no family of its own in the simulator (see `prediction_of`)
    "triton_fwd": "triton",  # attnsim.kernels' fused forward (prepared_forward: the kernel alone)
    "triton_fwdbwd": "triton",  # the same forward plus its backward kernels (autograd), phase train
    "triton_decode": "triton",  # attnsim.kernels' split-KV decode (split + combine kernels)
    "cupy_eager": "eager",  # attnsim.kernels.cupy_eager: scores materialized (fp16: CuPy has no bf16)
}
CEILINGS = {  # name -> unit
    "hbm_copy": "bytes/s",  # device-to-device copy of a buffer far larger than L2: bytes read + written
    "matmul_bf16": "FLOP/s",  # cuBLAS bf16 GEMM, 8192^3: 2 n^3 FLOPs
    "exp": "ops/s",  # __expf chains on registers (microbench.SOURCES["exp"]): exps per second
    "l2_read": "bytes/s",  # ld.global.cg re-reads of a quarter of L2 (microbench.SOURCES["l2_read"])
}


class Unavailable(Exception):
    """A kernel or ceiling that cannot run here (a backend that refuses the shape, CuPy missing):
    skipped with a warning, not an error."""


# -- the grid -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One (implementation, phase, shape) to time. Layout (batch, heads, seqlen, head_dim) as SDPA
    takes it; prefill and train are self-attention (seqlen_q == seqlen_kv, causal top-left =
    bottom-right), decode is one query token per sequence over the whole context (not causal)."""
    kernel: str
    phase: str
    batch: int
    seqlen_q: int
    seqlen_kv: int
    heads_q: int
    heads_kv: int
    head_dim: int
    causal: bool
    dtype: str = "bf16"

    def __post_init__(self):
        if self.kernel not in IMPLEMENTATIONS:
            raise AttnsimError(f"kernel={self.kernel!r}; allowed: {', '.join(IMPLEMENTATIONS)}")
        if self.causal and self.seqlen_q != self.seqlen_kv:
            raise AttnsimError(f"causal with seqlen_q={self.seqlen_q} != seqlen_kv={self.seqlen_kv}: SDPA aligns "
                               f"causal masks top-left, attnsim bottom-right; allowed: equal lengths")

    @property
    def family(self) -> str:
        return IMPLEMENTATIONS[self.kernel]

    def shape(self) -> dict:
        return {"batch": self.batch, "seqlen_q": self.seqlen_q, "seqlen_kv": self.seqlen_kv,
                "heads_q": self.heads_q, "heads_kv": self.heads_kv, "head_dim": self.head_dim,
                "causal": self.causal, "dtype": self.dtype}

    def workload(self) -> Workload:
        return Workload(batch=self.batch, seqlen_q=self.seqlen_q, seqlen_kv=self.seqlen_kv, heads_q=self.heads_q,
                        heads_kv=self.heads_kv, head_dim_qk=self.head_dim, dtype=self.dtype, causal=self.causal,
                        phase=self.phase)

    def label(self) -> str:
        heads = f"h{self.heads_q}" if self.heads_q == self.heads_kv else f"h{self.heads_q}/{self.heads_kv}"
        seq = f"s{self.seqlen_q}" if self.seqlen_q == self.seqlen_kv else f"q{self.seqlen_q}/kv{self.seqlen_kv}"
        return (f"{self.kernel} {self.phase} b{self.batch} {seq} {heads} d{self.head_dim}"
                f"{' causal' if self.causal else ''} {self.dtype}")


TOKENS = 16384  # batch x seqlen of every prefill/train shape (FlashAttention's benchmark: 16k tokens)
HIDDEN = 2048  # heads x head_dim (FlashAttention's benchmark: dim 2048)
QUICK = {"seqlens": (512, 1024, 2048, 4096, 8192), "head_dims": (64, 128),
         "decode": [(b, ctx) for b in (1, 16, 64) for ctx in (4096, 32768)], "decode_dims": (128,),
         "train": False, "eager_max_seqlen": 0}
FULL = {"seqlens": (512, 1024, 2048, 4096, 8192, 16384), "head_dims": (64, 128, 256),
        "decode": [(b, ctx) for b in (1, 4, 16, 64) for ctx in (4096, 8192, 16384, 32768)], "decode_dims": (64, 128),
        "train": True, "eager_max_seqlen": 4096}
DECODE_HEADS = (32, 8)  # (query heads, kv heads): GQA as in Llama-3 8B / Mistral 7B


def suite_cases(suite: str) -> list:
    """The shapes of a suite, in the order they run.

    quick: dense and causal prefill, head dims 64 and 128, seqlens 512..8192 with batch x seqlen =
    16k tokens and heads = 2048 / head_dim (FlashAttention's benchmark grid), for SDPA flash, SDPA
    cuDNN and the Triton forward; and GQA decode (32 query heads, 8 kv heads, one query token;
    batch 1, 16, 64 over contexts 4k and 32k) for SDPA flash, SDPA cuDNN and the Triton decode.
    full: the same with seqlen 16k and head dim 256 added, train (forward + backward) on the prefill
    grid, decode over batch 1..64 x context 4k..32k and head dims 64 and 128, and CuPy eager
    attention (fp16) on prefill up to seqlen 4096.
    """
    if suite not in SUITES:
        raise AttnsimError(f"suite={suite!r}; allowed: {', '.join(SUITES)}")
    g = QUICK if suite == "quick" else FULL
    cases = []
    phases = [("prefill", ("sdpa_flash", "sdpa_cudnn", "triton_fwd"))]
    if g["train"]:
        phases.append(("train", ("sdpa_flash", "sdpa_cudnn", "triton_fwdbwd")))
    for phase, kernels in phases:
        for d in g["head_dims"]:
            for s in g["seqlens"]:
                for causal in (False, True):
                    for kernel in kernels:
                        cases.append(Case(kernel, phase, max(1, TOKENS // s), s, s, HIDDEN // d, HIDDEN // d, d,
                                          causal))
                    if phase == "prefill" and s <= g["eager_max_seqlen"]:
                        cases.append(Case("cupy_eager", phase, max(1, TOKENS // s), s, s, HIDDEN // d, HIDDEN // d, d,
                                          causal, dtype="fp16"))
    hq, hkv = DECODE_HEADS
    for d in g["decode_dims"]:
        for b, ctx in g["decode"]:
            for kernel in ("sdpa_flash", "sdpa_cudnn", "triton_decode"):
                cases.append(Case(kernel, "decode", b, 1, ctx, hq, hkv, d, False))
    return cases


# -- resume ---------------------------------------------------------------------------------

def record_key(rec: dict) -> tuple:
    """What makes two records the same measurement: (kernel, phase, shape, device name) for a
    kernel, (ceiling, device name) for a ceiling."""
    if rec["kind"] == "ceiling":
        return ("ceiling", rec["ceiling"], rec["device"]["name"])
    shape = tuple(rec["shape"][k] for k in records.SHAPE)
    return ("kernel", rec["kernel"], rec["phase"], shape, rec["device"]["name"])


def case_key(case: Case, device_name: str) -> tuple:
    return ("kernel", case.kernel, case.phase, tuple(case.shape()[k] for k in records.SHAPE), device_name)


def done_keys(path) -> tuple[set, list]:
    """Keys of the records already in `path` (none when it does not exist), and the reader's warnings."""
    if not Path(path).exists():
        return set(), []
    recs, warnings = records.read_records(path)
    return {record_key(r) for r in recs}, warnings


# -- the card and its profile ---------------------------------------------------------------

def _words(s: str) -> set:
    return {w for w in re.split(r"[\s_\-/()]+", s.lower()) if w}


def match_profile(device_name: str, profiles: dict | None = None) -> str | None:
    """The key of the shipped profile that names this card, or None.

    A profile matches when every word of its key or of one of its aliases is a word of the device
    name (spaces, '-' and '_' separate words; case ignored) and one of those words has 4 or more
    characters (so 'h100' counts, a bare '80gb' does not). The match with the most words wins:
    "NVIDIA H100 PCIe" -> h100_pcie (h100-pcie: 2 words) rather than h100_sxm5 (h100: 1 word);
    "NVIDIA A100 80GB PCIe" -> a100_pcie_80gb (3 words). "NVIDIA GH200" or "NVIDIA H20" match
    nothing ('gh200' and 'h20' are not 'h200').
    """
    words = _words(str(device_name))
    best, best_n = None, 0
    for key, hw in sorted((profiles if profiles is not None else builtin_profiles()).items()):
        for alias in (key, *hw.aliases):
            aw = _words(alias)
            if aw and aw <= words and any(len(w) >= 4 for w in aw) and len(aw) > best_n:
                best, best_n = key, len(aw)
    return best


def _gib(x):
    return f"{x / 2 ** 30:.1f} GiB"


def _mib(x):
    return f"{x / 2 ** 20:.1f} MiB"


def _mhz(x):
    return f"{x / 1e6:.0f} MHz"


def profile_warnings(device: dict, hw: Hardware, tol: float = PROFILE_TOL) -> list:
    """One line per figure (SM count, memory, L2, max clock) where the card and the profile differ by
    more than `tol` (relative to the profile); figures the card did not report are not compared."""
    out = []
    for what, got, want, fmt in (("SM count", device.get("sm_count"), hw.sm_count, str),
                                 ("memory", device.get("memory_bytes"), hw.hbm_capacity_bytes, _gib),
                                 ("L2", device.get("l2_bytes"), hw.l2_bytes, _mib),
                                 ("max SM clock", device.get("clock_max_hz"), hw.clock_max_hz, _mhz)):
        if got is None or not want:
            continue
        diff = (got - want) / want
        if abs(diff) > tol:
            out.append(f"{device['name']} has {what} {fmt(got)}, profile {hw.key} says {fmt(want)} ({diff:+.0%}); "
                       f"predictions use the profile's figures")
    return out


def choose_profile(device: dict, hw_name: str | None) -> tuple:
    """(Hardware or None, notes): the --hw profile, else the one `match_profile` finds; notes say
    which was used and how the card differs from it (`profile_warnings`)."""
    if hw_name is not None:
        hw = load_hardware(hw_name)
        how = f"--hw {hw_name}"
    else:
        key = match_profile(device["name"])
        if key is None:
            return None, [f"no attnsim profile matches {device['name']!r}: predictions are left null "
                          f"(pass --hw PROFILE; see attnsim hw list)"]
        hw = load_hardware(key)
        how = "matched by name"
    return hw, [f"{device['name']} -> profile {hw.key} ({how})"] + profile_warnings(device, hw)


def _quantity(text: str, units: dict):
    """'1980 MHz' -> 1.98e9 with units={'MHz': 1e6}; None for '[N/A]' or anything unreadable."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text or "")
    if not m or (m.group(2) and m.group(2) not in units):
        return None
    return float(m.group(1)) * units.get(m.group(2), 1.0) if m.group(2) else None


NVIDIA_SMI_QUERY = "clocks.max.sm,clocks.sm,driver_version,memory.total"


def parse_nvidia_smi(text: str) -> dict:
    """Parse ``nvidia-smi --query-gpu=clocks.max.sm,clocks.sm,driver_version,memory.total
    --format=csv,noheader`` for one GPU ('1980 MHz, 1755 MHz, 550.54.15, 81559 MiB') into
    {clock_max_hz, clock_sm_hz, driver, memory_bytes}; fields it cannot read are left out, and so
    is everything when the output has other than one GPU's line (which line is ours is unknown)."""
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    if len(lines) != 1:
        return {}
    fields = [f.strip() for f in lines[0].split(",")]
    if len(fields) != 4:
        return {}
    out = {}
    for key, f in (("clock_max_hz", fields[0]), ("clock_sm_hz", fields[1])):
        v = _quantity(f, {"MHz": 1e6, "GHz": 1e9})
        if v:
            out[key] = v
    if fields[2] and not re.search(r"N/A|not supported", fields[2], re.I):
        out["driver"] = fields[2]
    mem = _quantity(fields[3], {"MiB": 2 ** 20, "GiB": 2 ** 30, "MB": 2 ** 20})
    if mem:
        out["memory_bytes"] = int(mem)
    return out


def nvidia_smi(select: str | None) -> dict:
    """`parse_nvidia_smi` of this machine's nvidia-smi for GPU `select` (an index or UUID); {} when
    nvidia-smi is missing or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    cmd = [exe, f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader"] + (["-i", select] if select else [])
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_nvidia_smi(done.stdout)


# -- measurements -> record blocks ------------------------------------------------------------

def timing_stats(times_s, method: str) -> dict:
    """The record's timing block from the per-run times (seconds): median, p10, p90, min, max, n."""
    a = np.sort(np.asarray(list(times_s), dtype=float))
    if a.size == 0 or not np.all(np.isfinite(a)) or a[0] <= 0:
        raise Unavailable(f"timer gave {a.size} times, min {a.min() if a.size else None}: not positive and finite "
                          f"(nothing measurable)")
    lo, hi = float(a[0]), float(a[-1])
    med = min(max(float(np.median(a)), lo), hi)
    p10 = min(max(float(np.percentile(a, 10)), lo), med)
    p90 = min(max(float(np.percentile(a, 90)), med), hi)
    return {"median_s": med, "p10_s": p10, "p90_s": p90, "min_s": lo, "max_s": hi, "n": int(a.size), "method": method}


def error_block(pairs, reference: str, tol: float = REL_TOL) -> dict:
    """The record's error block from one (max |out - ref|, max |ref|, out is finite) per checked
    output (the forward's O; in train also dQ, dK, dV). max_rel = max |out - ref| / max |ref|, the
    largest over the outputs; ok = every output finite and max_rel <= tol."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("error_block needs at least one checked output")
    if not all(finite for _, _, finite in pairs):
        return {"max_abs": None, "max_rel": None, "reference": reference, "ok": False, "nonfinite": True}
    max_abs = max(float(a) for a, _, _ in pairs)
    max_rel = max(float(a) / float(r) if r > 0 else float(a) for a, r, _ in pairs)
    return {"max_abs": max_abs, "max_rel": max_rel, "reference": reference, "ok": bool(max_rel <= tol)}


def prediction_of(case: Case, hw: Hardware | None) -> dict:
    """attnsim's prediction for the case on `hw`, as the record's prediction block. A family the
    simulator does not model (cuDNN, where `simulator.families` has no entry for it) is predicted
    with the profile's default kernel instead, and `kernel_family` says which was used. A case the
    simulator refuses gets nulls and a `note`. Uncalibrated: the profile's datasheet figures."""
    block = {"time_s": None, "bound_s": None, "calibrated": False, "kernel_family": None}
    if hw is None:
        return block
    fam = case.family if case.family in SIM_FAMILIES else hw.default_kernel
    try:
        p = predict(case.workload(), hw, fam)
    except AttnsimError as e:
        return {**block, "kernel_family": fam, "note": " ".join(str(e).split())}
    return {"time_s": float(p.time_s), "bound_s": float(p.bound.time_s), "calibrated": bool(p.calibrated),
            "kernel_family": p.family.name}


@dataclass
class Measurement:
    """What the backend returns for one case: the timing and error blocks, and extra record keys."""
    timing: dict
    error: dict
    extra: dict = field(default_factory=dict)


@dataclass
class CeilingMeasurement:
    value: float
    timing: dict
    extra: dict = field(default_factory=dict)


# -- the run --------------------------------------------------------------------------------

@dataclass
class Summary:
    output: Path
    written: list = field(default_factory=list)  # records appended in this run
    skipped: int = 0  # already in the file (--resume)
    unavailable: list = field(default_factory=list)  # (label, reason)
    flagged: list = field(default_factory=list)  # labels of records written with error.ok false


def run_suite(backend, device: dict, hw: Hardware | None, cases: list, output, repeats: int = DEFAULT_REPEATS,
              resume: bool = True, warn=None, progress: bool = True, ceilings=None) -> Summary:
    """Measure the ceilings and `cases` with `backend` and append one record each to `output`.

    Args:
        backend: the GPU side: `ceiling(name, repeats) -> CeilingMeasurement` and
            `measure(case, repeats) -> Measurement`, each raising `Unavailable` to skip (`TorchBackend`).
        device: the records' device block (`TorchBackend.device()`); its hw_key is set from `hw`.
        hw: the profile predictions use (None: predictions left null).
        resume: skip what `output` already holds for this device (`record_key`).
        warn: called with each warning line (default: stderr).
        ceilings: ceiling names to measure (default: all of `CEILINGS`).
    """
    warn = warn or (lambda msg: click.echo(f"warning: {msg}", err=True))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    device = {**device, "hw_key": hw.key if hw is not None else None}
    name = device["name"]
    done, notes = done_keys(output) if resume else (set(), [])
    for n in notes:
        warn(n)
    summary = Summary(output=output)
    todo = [("ceiling", c) for c in (CEILINGS if ceilings is None else ceilings)] + [("kernel", c) for c in cases]
    pending = []
    for kind, item in todo:
        key = ("ceiling", item, name) if kind == "ceiling" else case_key(item, name)
        if key in done:
            summary.skipped += 1
        else:
            pending.append((kind, item))

    def show(entry):
        return "" if entry is None else (entry[1] if entry[0] == "ceiling" else entry[1].label())

    with click.progressbar(length=len(pending), label="attnsim validate", item_show_func=show,
                           file=sys.stderr if progress else _Null()) as bar:
        for entry in pending:
            bar.update(0, entry)
            kind, item = entry
            label = show(entry)
            try:
                rec = _ceiling(backend, item, device, repeats) if kind == "ceiling" else \
                    _kernel(backend, item, device, hw, repeats)
            except Unavailable as e:
                summary.unavailable.append((label, str(e)))
                warn(f"{label}: skipped ({_one_line(e)})")
                bar.update(1)
                continue
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:  # a kernel that crashes must not end the suite: say so and go on
                summary.unavailable.append((label, f"{type(e).__name__}: {_one_line(e)}"))
                warn(f"{label}: failed ({type(e).__name__}: {_one_line(e)}); skipped")
                _recover(backend)
                bar.update(1)
                continue
            mended = records.append_record(output, rec)
            if mended:
                warn(mended)
            summary.written.append(rec)
            if kind == "kernel" and not rec["error"].get("ok", True):
                summary.flagged.append(label)
                e = rec["error"]
                what = "non-finite values" if e["max_rel"] is None else f"max_rel {e['max_rel']:.2e} > {REL_TOL:g}"
                warn(f"{label}: output wrong against the {e['reference']} ({what}); record written with error.ok=false")
            bar.update(1)
    return summary


class _Null:
    """A text stream that drops everything (progress off)."""

    def write(self, s):
        return len(s)

    def flush(self):
        pass

    def isatty(self):
        return False


def _one_line(e) -> str:
    return " ".join(str(e).split())[:300] or type(e).__name__


def _recover(backend):
    free = getattr(backend, "recover", None)
    if free is not None:
        try:
            free()
        except Exception:
            pass


def _ceiling(backend, name: str, device: dict, repeats: int) -> dict:
    m = backend.ceiling(name, repeats)
    return records.ceiling_record(ceiling=name, value=float(m.value), unit=CEILINGS[name], device=device,
                                  timing=m.timing, **m.extra)


def _kernel(backend, case: Case, device: dict, hw, repeats: int) -> dict:
    m = backend.measure(case, repeats)
    return records.kernel_record(kernel=case.kernel, family=case.family, phase=case.phase, shape=case.shape(),
                                 device=device, timing=m.timing, error=m.error, prediction=prediction_of(case, hw),
                                 **m.extra)


# -- where records go -----------------------------------------------------------------------

def device_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-") or "unknown-device"


def measurements_dir() -> Path:
    """validation/measurements of the source checkout this module runs from; from an installed
    package (no checkout around it), ./validation/measurements."""
    here = Path(__file__).resolve().parent
    return here / "measurements" if (here.parent / "pyproject.toml").exists() else Path("validation") / "measurements"


def default_output(device_name: str, today: datetime.date | None = None) -> Path:
    today = today or datetime.datetime.now(datetime.timezone.utc).date()
    return measurements_dir() / device_slug(device_name) / f"{today.isoformat()}.jsonl"


# -- the GPU side ---------------------------------------------------------------------------

def gpu_missing() -> str | None:
    """Why there is no CUDA GPU to measure on (one line), or None when torch sees one."""
    try:
        import torch
    except ModuleNotFoundError as e:
        if (e.name or "torch").split(".")[0] == "torch":
            return "torch is not installed"
        return f"torch cannot be imported: {_one_line(e)}"
    except Exception as e:  # an ImportError, or a broken CUDA library under torch
        return f"torch cannot be imported: {_one_line(e)}"
    try:
        ok = torch.cuda.is_available()
    except Exception as e:
        return f"torch.cuda.is_available() failed: {_one_line(e)}"
    if ok:
        return None
    cuda = getattr(getattr(torch, "version", None), "cuda", None)
    if cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    return f"torch {torch.__version__} (CUDA {cuda}) sees no CUDA device"


def make_backend():
    """The GPU side of a run (tests replace this function)."""
    return TorchBackend()


def _version(module: str):
    try:
        mod = __import__(module)
        return str(mod.__version__)
    except Exception:  # not installed, or fails to import (e.g. CuPy without its CUDA libraries)
        return None


class TorchBackend:
    """Times kernels and ceilings on a CUDA device with torch (CUDA events), triton and cupy.

    Args:
        device: a torch device (default: the current CUDA device). Anything else than CUDA needs
            `timer` (tests run the kernels on the CPU with a wall-clock timer).
        timer: ``timer(fn, repeats, flush) -> list of seconds`` (default: CUDA events, see `_time_cuda`).
        warmup: launches before timing.
    """

    def __init__(self, device=None, timer=None, warmup: int = WARMUP):
        import torch

        self.torch = torch
        self.dev = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
        self.timer = timer or self._time_cuda
        self.warmup = warmup
        self._flush_buf = None
        self.method = (f"cuda_events; {warmup} warm-up runs, then one event pair per run with L2 flushed before it "
                       f"(a 2x L2 buffer written)")
        self.method_ceiling = f"cuda_events; {warmup} warm-up runs, then one event pair per run"

    # -- the card --
    def device(self) -> dict:
        torch = self.torch
        p = torch.cuda.get_device_properties(self.dev)
        uuid = str(getattr(p, "uuid", "") or "")
        if uuid:
            select = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
        else:
            select = None if os.environ.get("CUDA_VISIBLE_DEVICES") else str(self.dev.index or 0)
        smi = nvidia_smi(select)
        clock = smi.get("clock_max_hz") or (float(getattr(p, "clock_rate", 0) or 0) * 1e3 or None)  # kHz
        l2 = int(getattr(p, "L2_cache_size", 0) or 0) or None
        return {"name": str(p.name), "hw_key": None, "sm_count": int(p.multi_processor_count),
                "clock_max_hz": clock, "memory_bytes": int(p.total_memory), "l2_bytes": l2,
                "driver": smi.get("driver"), "cuda": torch.version.cuda or getattr(torch.version, "hip", None),
                "torch": str(torch.__version__), "triton": _version("triton"), "cupy": _version("cupy"),
                "cc": f"{p.major}.{p.minor}", "clock_sm_hz": smi.get("clock_sm_hz"),
                "memory_smi_bytes": smi.get("memory_bytes"), "uuid": uuid or None}

    # -- timing --
    def _flush_buffer(self):
        if self._flush_buf is None:
            l2 = int(getattr(self.torch.cuda.get_device_properties(self.dev), "L2_cache_size", 0) or 0) or 128 << 20
            self._flush_buf = self.torch.empty(2 * l2, dtype=self.torch.uint8, device=self.dev)
        return self._flush_buf

    def _time_cuda(self, fn, repeats: int, flush: bool) -> list:
        """Per-run seconds of `fn()`: warm-up, then an event pair around each run. Writing the flush
        buffer before a run evicts L2 and keeps the GPU busy while the CPU enqueues the run, so the
        events time the kernels, not the launch overhead."""
        torch = self.torch
        for _ in range(self.warmup):
            fn()
        torch.cuda.synchronize(self.dev)
        buf = self._flush_buffer() if flush else None
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
        sleep = getattr(torch.cuda, "_sleep", None)
        for s, e in zip(starts, ends):
            if sleep is not None:
                sleep(100_000)  # ~50 us of GPU spin: the CPU enqueues the run before the GPU gets to it
            if buf is not None:
                buf.zero_()
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize(self.dev)
        return [s.elapsed_time(e) * 1e-3 for s, e in zip(starts, ends)]

    def recover(self):
        self._flush_buf = None
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize(self.dev)
            self.torch.cuda.empty_cache()

    # -- ceilings --
    def ceiling(self, name: str, repeats: int) -> CeilingMeasurement:
        torch = self.torch
        method = self.method_ceiling
        if name == "hbm_copy":
            p = torch.cuda.get_device_properties(self.dev)
            nbytes = min(1 << 30, p.total_memory // 16) // 16 * 16  # 1 GiB: 8x the largest L2 profiled
            src = torch.empty(nbytes // 4, dtype=torch.float32, device=self.dev).uniform_()
            dst = torch.empty_like(src)
            t = timing_stats(self.timer(lambda: dst.copy_(src), repeats, False), method)
            return CeilingMeasurement(2 * nbytes / t["median_s"], t, {"params": {"buffer_bytes": nbytes}})
        if name == "matmul_bf16":
            n = 8192
            a, b = (torch.randn(n, n, device=self.dev, dtype=torch.bfloat16) for _ in range(2))
            c = torch.empty(n, n, device=self.dev, dtype=torch.bfloat16)
            t = timing_stats(self.timer(lambda: torch.matmul(a, b, out=c), repeats, False), method)
            return CeilingMeasurement(2.0 * n ** 3 / t["median_s"], t, {"params": {"n": n, "library": "torch.matmul"}})
        if name in ("exp", "l2_read"):
            return self._cupy_ceiling(name, repeats, method)
        raise Unavailable(f"unknown ceiling {name!r}; allowed: {', '.join(CEILINGS)}")

    def _cupy_ceiling(self, name: str, repeats: int, method: str) -> CeilingMeasurement:
        try:
            import cupy as cp
        except Exception as e:
            raise Unavailable(f"needs CuPy for its CUDA source ({_one_line(e)})") from None
        from attnsim.kernels import microbench
        from attnsim.kernels.nvrtc import raw_function

        torch = self.torch
        p = torch.cuda.get_device_properties(self.dev)
        threads = 256
        blocks = p.multi_processor_count * (p.max_threads_per_multi_processor // threads)  # one full wave
        stream = cp.cuda.ExternalStream(torch.cuda.current_stream(self.dev).cuda_stream)  # the events' stream
        with cp.cuda.Device(self.dev.index or 0), stream:
            if name == "exp":
                iters = 4096
                kernel = raw_function(microbench.SOURCES["exp"], "exp_chains")
                out = cp.empty(blocks * threads, cp.float32)
                t = timing_stats(self.timer(lambda: kernel((blocks,), (threads,), (out, cp.int32(iters))), repeats,
                                            False), method)
                work = blocks * threads * 8 * iters  # 8 = CHAINS in microbench's exp source
                params = {"iters": iters, "threads": blocks * threads, "source": "microbench.exp_chains"}
                return CeilingMeasurement(work / t["median_s"], t, {"params": params})
            l2 = int(getattr(p, "L2_cache_size", 0) or 0) or 40 << 20
            n = l2 // 4 // 16  # float4s in a quarter of L2: resident even where L2 is split in two
            passes = max(1, (1 << 30) // (16 * n))
            kernel = raw_function(microbench.SOURCES["l2_read"], "l2_read")
            src = cp.ones(n * 4, cp.float32)
            acc = cp.zeros(1, cp.float32)
            args = (src, cp.uint64(n), cp.int32(passes), acc)
            t = timing_stats(self.timer(lambda: kernel((blocks,), (threads,), args), repeats, False), method)
            params = {"buffer_bytes": 16 * n, "passes": passes, "source": "microbench.l2_read"}
            return CeilingMeasurement(16 * n * passes / t["median_s"], t, {"params": params})

    # -- kernels --
    def _inputs(self, case: Case, grad: bool = False):
        torch = self.torch
        g = torch.Generator(device=self.dev).manual_seed(zlib.crc32(case.label().encode()))
        dt = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[case.dtype]
        q = torch.randn(case.batch, case.heads_q, case.seqlen_q, case.head_dim, device=self.dev, dtype=dt, generator=g)
        k, v = (torch.randn(case.batch, case.heads_kv, case.seqlen_kv, case.head_dim, device=self.dev, dtype=dt,
                            generator=g) for _ in range(2))
        do = torch.randn_like(q) if grad else None  # (no generator: randn_like takes none; values only need to be live)
        if grad:
            q, k, v = (x.requires_grad_() for x in (q, k, v))
        return q, k, v, do

    def _impl(self, case: Case):
        """(check, forward, launch, context) of the case's implementation:

        * ``check(q, k, v)``: the output as a user gets it (run once, before timing; a refusal here
          raises Unavailable);
        * ``forward(q, k, v)``: the same output, differentiable, for train's forward + backward;
        * ``launch(q, k, v)``: the zero-argument function that is timed (the kernel alone where the
          implementation can prepare its inputs once);
        * ``context()``: entered once around the timing (SDPA's backend choice), not in each run.
        """
        import contextlib

        torch = self.torch
        none = contextlib.nullcontext
        if case.kernel in ("sdpa_flash", "sdpa_cudnn"):
            import warnings

            from torch.nn.attention import SDPBackend, sdpa_kernel
            from torch.nn.functional import scaled_dot_product_attention as sdpa
            backend = SDPBackend.FLASH_ATTENTION if case.kernel == "sdpa_flash" else SDPBackend.CUDNN_ATTENTION
            gqa = {"enable_gqa": True} if case.heads_q != case.heads_kv else {}

            def forward(q, k, v):
                return sdpa(q, k, v, is_causal=case.causal, **gqa)

            def check(q, k, v):
                with sdpa_kernel(backend), warnings.catch_warnings(record=True) as seen:
                    warnings.simplefilter("always")
                    try:
                        return forward(q, k, v)
                    except (RuntimeError, TypeError) as e:  # "No available kernel": the reasons are warnings
                        why = "; ".join(_one_line(w.message) for w in seen) or _one_line(e)
                        raise Unavailable(f"SDPA {backend.name} refuses this shape: {why}") from None
            return check, forward, (lambda q, k, v: (lambda: forward(q, k, v))), (lambda: sdpa_kernel(backend))
        if case.kernel in ("triton_fwd", "triton_fwdbwd"):
            from attnsim.kernels import attention
            from attnsim.kernels.triton_attention import prepared_forward

            def forward(q, k, v):
                return attention(q, k, v, causal=case.causal)
            return forward, forward, (lambda q, k, v: prepared_forward(q, k, v, causal=case.causal)), none
        if case.kernel == "triton_decode":
            from attnsim.kernels import decode
            from attnsim.kernels.triton_attention import prepared_decode

            def forward(q, k, v):
                return decode(q, k, v, causal=False)
            return forward, forward, (lambda q, k, v: prepared_decode(q, k, v, causal=False)[0]), none
        if case.kernel == "cupy_eager":
            try:
                import cupy as cp
            except Exception as e:
                raise Unavailable(f"needs CuPy ({_one_line(e)})") from None
            from attnsim.kernels.cupy_eager import eager_attention
            cp.cuda.Device(self.dev.index or 0).use()
            stream = cp.cuda.ExternalStream(torch.cuda.current_stream(self.dev).cuda_stream)  # torch's events' stream

            def launch(q, k, v):
                qc, kc, vc = (cp.from_dlpack(x.detach()) for x in (q, k, v))
                return lambda: eager_attention(qc, kc, vc, causal=case.causal)[0]

            def forward(q, k, v):
                with stream:
                    return torch.from_dlpack(launch(q, k, v)())
            return forward, forward, launch, (lambda: stream)
        raise Unavailable(f"no implementation {case.kernel!r}")

    def measure(self, case: Case, repeats: int) -> Measurement:
        """Check the case's output against float64 (`_error`), then time it (`timer`, L2 flushed)."""
        torch = self.torch
        train = case.phase == "train"
        check, forward, launch, context = self._impl(case)
        if self.dev.type == "cuda":
            torch.cuda.empty_cache()  # the previous case's tensors, so a large shape finds room
        q, k, v, do = self._inputs(case, grad=train)
        o = check(q, k, v)
        if train:
            def fn():  # forward + backward; grads returned, not accumulated into .grad
                out = forward(q, k, v)
                return torch.autograd.grad(out, (q, k, v), do)
            with context():
                outs = (o, *torch.autograd.grad(o, (q, k, v), do))
        else:
            fn = launch(q, k, v)
            outs = (o,)
        error = self._error(case, q, k, v, do, outs)
        del o, outs
        with context():
            t = timing_stats(self.timer(fn, repeats, True), self.method)
        return Measurement(timing=t, error=error, extra={"seed": zlib.crc32(case.label().encode())})

    def _error(self, case: Case, q, k, v, do, outs) -> dict:
        """Check against attnsim.kernels.reference in float64 on batch 0 and one or two kv heads (with
        their query heads): the same shapes and mask, a slice small enough for any seqlen here."""
        torch = self.torch
        from attnsim.kernels.reference import reference

        group = case.heads_q // case.heads_kv
        nkv = 1 if (group > 1 or case.phase == "train") else min(2, case.heads_kv)
        nq = nkv * group
        qs, ks, vs = (x.detach()[:1, :n].to(torch.float64) for x, n in ((q, nq), (k, nkv), (v, nkv)))
        causal = case.causal and case.phase != "decode"
        if case.phase == "train":
            qs, ks, vs = (x.requires_grad_() for x in (qs, ks, vs))
            ref = reference(qs, ks, vs, causal=causal)
            refs = (ref, *torch.autograd.grad(ref, (qs, ks, vs), do[:1, :nq].to(torch.float64)))
            gots = (outs[0][:1, :nq], outs[1][:1, :nq], outs[2][:1, :nkv], outs[3][:1, :nkv])
            what = "O, dQ, dK, dV"
        else:
            refs = (reference(qs, ks, vs, causal=causal),)
            gots = (outs[0][:1, :nq],)
            what = "O"
        pairs = []
        for got, ref in zip(gots, refs):
            got = got.detach().to(torch.float64)
            finite = bool(torch.isfinite(got).all())
            diff = (got - ref.detach()).abs().max().item() if finite else float("nan")
            pairs.append((diff, ref.detach().abs().max().item(), finite))
        return error_block(pairs, f"float64 attnsim.kernels.reference ({what}; batch 0, {nq} of {case.heads_q} "
                                  f"query heads)")


# -- the command ----------------------------------------------------------------------------

def _fail(ctx, msg: str, code: int = 2):
    click.echo(" ".join(str(msg).split()), err=True)
    ctx.exit(code)


@click.command("validate")
@click.option("--suite", type=click.Choice(SUITES), default="quick", show_default=True,
              help="quick: FlashAttention's prefill grid (head dims 64, 128) and GQA decode; full: adds head dim 256, "
                   "seqlen 16k, train (forward + backward), more decode shapes and CuPy eager.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="the JSON Lines file to append to [default: validation/measurements/<device>/<date>.jsonl]")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="skip (kernel, phase, shape, device) and ceilings already in the output file")
@click.option("--repeats", type=click.IntRange(min=MIN_REPEATS), default=DEFAULT_REPEATS, show_default=True,
              help=f"timed runs per kernel (>= {MIN_REPEATS}); the record keeps median, p10, p90, min, max")
@click.option("--hw", "hw_name", default=None, metavar="PROFILE",
              help="the attnsim profile to predict with (default: matched by the card's name; see attnsim hw list)")
@click.pass_context
def validate(ctx, suite, output, resume, repeats, hw_name):
    """Measure attention kernels and hardware ceilings on this machine's GPU, next to attnsim's predictions.

    \b
    Each measurement is one JSON line (schema attnsim.measurement/1), appended and fsynced as soon as
    it is taken; an interrupted run resumes where it stopped. Needs an NVIDIA GPU and torch (triton
    for attnsim's kernels, cupy for the exp and L2 ceilings and eager attention).
    """
    why = gpu_missing()
    if why is not None:
        _fail(ctx, f"attnsim validate: no CUDA GPU here ({why}); run it on a machine with an NVIDIA GPU and torch "
                   f"installed")
    try:
        cases = suite_cases(suite)
        backend = make_backend()
        device = backend.device()
        hw, notes = choose_profile(device, hw_name)
        for i, note in enumerate(notes):
            click.echo(f"{'attnsim validate' if i == 0 and hw is not None else 'warning'}: {note}", err=True)
        out = output if output is not None else default_output(device["name"])
        summary = run_suite(backend, device, hw, cases, out, repeats=repeats, resume=resume)
    except AttnsimError as e:
        _fail(ctx, f"attnsim validate: {e}")
    _report(summary)


def _report(s: Summary):
    """One line per kernel record (measured, predicted, their ratio, error) and a summary, on stdout."""
    rows = [r for r in s.written if r["kind"] == "kernel"]
    for r in s.written:
        if r["kind"] == "ceiling":
            click.echo(f"{r['ceiling']:<14} {r['value']:.4g} {r['unit']}")
    if rows:
        click.echo(f"{'kernel':<14} {'phase':<8} {'shape':<34} {'measured':>11} {'predicted':>11} {'pred/meas':>9} "
                   f"{'max_rel':>8}")
    for r in rows:
        sh, t, p, e = r["shape"], r["timing"]["median_s"], r["prediction"]["time_s"], r["error"]
        shape = (f"b{sh['batch']} q{sh['seqlen_q']} kv{sh['seqlen_kv']} h{sh['heads_q']}/{sh['heads_kv']} "
                 f"d{sh['head_dim']}{' c' if sh['causal'] else ''}")
        pred = f"{p * 1e3:9.3f}ms" if p else f"{'-':>11}"
        ratio = f"{p / t:9.2f}" if p else f"{'-':>9}"
        err = f"{e['max_rel']:8.1e}" if e["max_rel"] is not None else f"{'nan':>8}"
        click.echo(f"{r['kernel']:<14} {r['phase']:<8} {shape:<34} {t * 1e3:9.3f}ms {pred} {ratio} {err}"
                   f"{'' if e.get('ok', True) else '  WRONG'}")
    click.echo(f"wrote {len(s.written)} records to {s.output} ({s.skipped} already there, {len(s.unavailable)} "
               f"skipped as unavailable, {len(s.flagged)} flagged wrong)")


__all__ = ["validate", "run_suite", "suite_cases", "Case", "match_profile", "profile_warnings", "choose_profile",
           "parse_nvidia_smi", "timing_stats", "error_block", "prediction_of", "record_key", "case_key",
           "gpu_missing", "make_backend", "TorchBackend", "Unavailable", "Measurement", "CeilingMeasurement",
           "default_output", "device_slug"]
