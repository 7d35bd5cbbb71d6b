"""Published FlashAttention throughputs (a labelled reference set, not our measurements).

The rows live in `shared/reference/published_flashattention.csv` beside the project (its README
names each figure's source: the FlashAttention-2 and -3 papers' benchmark plots). This module
turns a row into a Workload and a time with the FlashAttention benchmark convention:
FLOPs fwd = 4*B*S^2*H*D (halved when causal), fwd+bwd = 3.5 x fwd; time = FLOPs / throughput.
"""
from __future__ import annotations

import csv
from pathlib import Path

from attnsim.simulator.workload import Workload

DEFAULT_PATH = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "published_flashattention.csv"
HARDWARE = {"A100 80GB SXM4": "a100_sxm4_80gb", "H100 80GB SXM5": "h100_sxm5"}
# the published kernel names -> attnsim kernel families (None: no family models it)
FAMILY = {"FlashAttention-2": "fa2", "FlashAttention-3": "fa3", "Triton": "triton",
          "FlashAttention Triton": "triton", "PyTorch standard attention": "eager",
          "Standard attention (PyTorch)": "eager"}


def load_published(path: str | Path | None = None, include_oom: bool = False) -> list:
    """The rows as dicts; OOM rows (no time) are left out unless asked for."""
    with open(path or DEFAULT_PATH, newline="") as f:
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
