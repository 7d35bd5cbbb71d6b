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
