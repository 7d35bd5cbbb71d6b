"""Predicted speedups of NA/GNA over dense attention against published measurements.

validation/reference/published_gna.csv holds measured kernel-time speedups of NATTEN's Hopper and
Blackwell FNA kernels (NA, strided GNA and blocked attention) over a dense baseline, read from
NATTEN's profiler docs (see validation/reference/README.md). The target: the predicted speedup is
within 10% of the measured one, with the shipped calibration (fitted on dense and causal rows only).

What is compared is the attention kernel alone, as the profiler reports it: the measured numbers
are dense time / FnaForward time, without the token permute copies, so the prediction is the dense
time of `speedup` (same kernel family, its own best tiling) over the predicted attention kernel
(`attn_fwd`), without the predicted `token_permute` / `token_unpermute` kernels.

Rows that miss are strict xfails, each with the mechanism that explains the miss.
"""
import csv
import re
from pathlib import Path

import pytest

from attnsim import predict_variant

CSV_PATH = Path(__file__).resolve().parents[1] / "validation" / "reference" / "published_gna.csv"
TOLERANCE = 0.10
# hardware column -> (attnsim profile, kernel family of the FNA kernel that was measured)
TARGETS = {"B200": ("b200", "fa4"), "H100": ("h100", "fa3")}
LAYOUT_COPIES = {"token_permute", "token_unpermute"}


def _load():
    if not CSV_PATH.is_file():
        return [], f"{CSV_PATH} is missing"
    with open(CSV_PATH, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("measured_speedup", "").strip()]
    return rows, f"{CSV_PATH} has no rows with a measured_speedup"


ROWS, _EMPTY_REASON = _load()
if not ROWS:
    pytest.skip(_EMPTY_REASON, allow_module_level=True)


def row_id(r):
    return f"{r['hardware']}-{r['token_shape']}-k{r['kernel_size']}-s{r['stride']}"


def _predict(r, calibration="default"):
    hw, family = TARGETS[r["hardware"]]
    params = {"kernel_size": r["kernel_size"], "stride": r["stride"], "dilation": r["dilation"]}
    for key in ("q_tile", "kv_tile"):
        if r[key].strip():
            params[key] = r[key]
    return predict_variant(hw, "gna", params, kernel=family, calibration=calibration,
                           token_shape=tuple(int(x) for x in r["token_shape"].split("x")),
                           heads=int(r["heads"]), head_dim=int(r["head_dim"]), batch=int(r["batch"]),
                           dtype=r["dtype"], causal=r["causal"].strip().lower() == "true")


def kernel_speedup(p):
    """Dense time over the attention kernel's time (the layout copies left out, as the measurement does)."""
    attn = [k for k in p.kernels if k.name not in LAYOUT_COPIES]
    assert attn, [k.name for k in p.kernels]
    return p.speedup["dense_time_s"] / sum(k.time_s for k in attn)


# --- why the rows that miss miss ---------------------------------------------------------------
MASKED_EVERY_TILE = (
    "NATTEN's FNA applies the NA mask to every kv tile it visits when the use case is not fully "
    "block-sparse (softmax_step: `if (not is_fully_block_sparse) apply_mask(...)`, per-element "
    "is_neighbor on the softmax warps; fna_blackwell sm100_fna_fwd_mainloop and fna_hopper "
    "fna_collective_softmax), not only on partial tiles. Measured against the fully block-sparse "
    "rows of the same problem, a tile costs 1.37x (1-D), 1.46x (2-D), 1.53x (3-D) on B200 and 1.43x / "
    "1.50x / 1.66x on H100 (1-D assuming 128x128 Hopper tiles). attnsim charges mask work only on "
    "partial tiles (3 FP32 ops per score, hidden under fa4's exp and fa3's tensor time; "
    "partial_tile = 0 in the dense-only calibration), so it predicts the sliding window too fast.")
BOX_OFFSETS = (
    " Partly offset here by the box iteration: attnsim visits a fixed box of kv tiles per query tile "
    "(the interior box), while NATTEN's get_trip_count spans each query tile's own window range "
    "(= the live tiles for these masks), so attnsim visits {extra} more tiles.")
BASELINE_1D = (
    "The miss is in the dense baseline, not the FNA kernel: the measured baseline is cuDNN, which runs "
    "this 1-head 32K problem at 1.29 PFLOP/s, above its own 1.22 on the 24-head FLUX shape, while a "
    "256-row-CTA dense kernel of the FA4 family (attnsim's dense, 128 CTAs on 148 SMs, 0.86 of a "
    "wave) is priced 13.5% less efficient there than on FLUX. The FNA side agrees: predicted and "
    "measured 1-D/FLUX block-sparse throughput ratios are 0.71 and 0.72. A same-family ratio "
    "cannot see cuDNN's advantage at this shape.")
SPREAD_H100_1D = (
    "Measurement spread: stride 256 and stride 2048 (blocked) run the same fully block-sparse tiles "
    "(16 kv tiles per query tile, one prediction for both), yet measured 62.687 us and 59.264 us "
    "(5.8% apart); the blocked row is within 5%, this one 11% off.")
ABOVE_FLOP_BOUND = (
    "The measured speedup exceeds the FLOP ratio ({bound}), which no kernel of one family can do: the "
    "source's own note says the cuDNN baseline is slower than CUTLASS FMHA (the FNA's dense "
    "counterpart) in this case. attnsim's same-family ratio is capped by the FLOP ratio.")

# Rows that pass only because two errors cancel (see validation/reference/README.md): the 3-D NA rows
# (B200 -5%, H100 0%) and H100 2-D NA (+9%) pay NATTEN's every-tile mask (too fast in attnsim) and
# attnsim's fixed kv box (too slow: 1.60x / 1.51x / 1.13x the tiles NATTEN visits); with
# `-p iteration=live` they would miss by +51%, +51% and +23%.
XFAIL = {
    "B200-32768-k2048-s1": MASKED_EVERY_TILE,
    "H100-32768-k2048-s1": MASKED_EVERY_TILE,
    "B200-256x256-k80x80-s1x1": MASKED_EVERY_TILE + BOX_OFFSETS.format(extra="16% (21504 vs 18564 per head)"),
    "B200-32768-k2048-s256": BASELINE_1D,
    "B200-32768-k2048-s2048": BASELINE_1D,
    "H100-32768-k2048-s256": SPREAD_H100_1D,
    "H100-256x256-k80x80-s16x16": ABOVE_FLOP_BOUND.format(bound="10.24x"),
    "H100-30x48x80-k18x24x24-s16x8x8": ABOVE_FLOP_BOUND.format(bound="11.11x"),
}


def _params():
    out = []
    for r in ROWS:
        rid = row_id(r)
        marks = [pytest.mark.xfail(strict=True, reason=XFAIL[rid])] if rid in XFAIL else []
        out.append(pytest.param(r, id=rid, marks=marks))
    return out


def test_rows_are_priceable():
    """Every row names a GPU with a target family and the columns predict needs."""
    for r in ROWS:
        assert r["hardware"] in TARGETS, row_id(r)
        assert float(r["measured_speedup"]) > 1.0, row_id(r)
        for key in ("token_shape", "kernel_size", "stride", "dilation", "heads", "head_dim", "batch",
                    "dtype"):
            assert r[key].strip(), (row_id(r), key)
    assert set(XFAIL) <= {row_id(r) for r in ROWS}, set(XFAIL) - {row_id(r) for r in ROWS}


@pytest.mark.parametrize("row", [pytest.param(r, id=row_id(r)) for r in ROWS])
def test_useful_flop_speedup_is_the_printed_flop_bound(row):
    """The source prints the FLOP-wise upper bound of each configuration (16X, 10.2X, 11.1X):
    attnsim's useful-FLOP speedup rounds to it, so the rows describe the masks the source ran."""
    m = re.search(r"flop_upper_bound=([\d.]+)X", row["notes"])
    assert m, row["notes"]
    printed = float(m.group(1))
    got = _predict(row).speedup["useful_flops"]
    assert round(got, 1) == pytest.approx(printed), (got, printed)


@pytest.mark.parametrize("row", _params())
def test_predicted_speedup_within_10_percent_of_measured(row):
    measured = float(row["measured_speedup"])
    p = _predict(row)
    predicted = kernel_speedup(p)
    err = predicted / measured - 1.0
    assert abs(err) <= TOLERANCE, (
        f"{row_id(row)}: predicted {predicted:.2f}x (calibrated, {p.calibration_info.get('group')}; "
        f"with token permute {p.speedup['time']:.2f}x) vs measured {measured:.2f}x: {err:+.1%}")
