"""No published FlashAttention measurement may beat the speed-of-light bound.

Each row of ../shared/reference/published_flashattention.csv (FlashAttention-2/3, cuDNN, Triton,
xformers, standard attention on A100/H100; forward and forward+backward) is converted to time
with the FlashAttention benchmark convention — FLOPs fwd = 4*B*S^2*H*D (halved when causal),
fwd+bwd = 3.5x fwd — and compared with `bound_s` of the same workload. A published time below the
bound means the model or the profile is wrong: fix the model, never the data.
"""
import csv
from pathlib import Path

import pytest

from attnsim.simulator.bound import bound
from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.workload import Workload

REF = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "published_flashattention.csv"
HW = {"A100 80GB SXM4": "a100_sxm4_80gb", "H100 80GB SXM5": "h100_sxm5"}


def rows():
    if not REF.exists():
        return []
    with open(REF, newline="") as f:
        return [r for r in csv.DictReader(f) if r["value"] != "OOM"]


def fa_convention_time(r):
    b, h, d, s = (int(r[k]) for k in ("batch", "heads_q", "head_dim", "seqlen_q"))
    flops = 4.0 * b * s * s * h * d
    if r["causal"] == "true":
        flops /= 2
    if r["direction"] == "fwd+bwd":
        flops *= 3.5
    return flops / (float(r["value"]) * 1e12)


ROWS = rows()


def test_reference_file_is_there():
    assert REF.exists(), f"{REF} is missing (CI clones the project with shared/ beside it)"
    assert len(ROWS) > 300  # 348 rows, a handful OOM


def test_fa_convention_arithmetic():
    # FA2 on A100, fwd+bwd, batch 16384/S, 2048/D heads: 4*8*2048^2*32*64 * 3.5 FLOPs at 203 TFLOP/s
    r = {"batch": "8", "heads_q": "32", "head_dim": "64", "seqlen_q": "2048", "causal": "false",
         "direction": "fwd+bwd", "value": "203"}
    assert fa_convention_time(r) == pytest.approx(4 * 8 * 2048**2 * 32 * 64 * 3.5 / 203e12)


@pytest.mark.parametrize("r", ROWS, ids=lambda r: f"{r['source_id']}-{r['kernel']}-{r['direction']}-"
                         f"c{r['causal']}-d{r['head_dim']}-s{r['seqlen_q']}")
def test_no_published_time_beats_the_bound(r):
    hw = load_hardware(HW[r["hardware"]])
    w = Workload(batch=int(r["batch"]), seqlen_q=int(r["seqlen_q"]), seqlen_kv=int(r["seqlen_kv"]),
                 heads_q=int(r["heads_q"]), heads_kv=int(r["heads_kv"]), head_dim_qk=int(r["head_dim"]),
                 dtype=r["dtype"], causal=r["causal"] == "true",
                 phase="train" if r["direction"] == "fwd+bwd" else "prefill")
    measured = fa_convention_time(r)
    b = bound(w, hw)
    assert measured >= b.time_s, (f"published {measured:.4e} s < bound {b.time_s:.4e} s ({b.unit}): "
                                  f"ratio {b.time_s / measured:.3f}")
