"""No published measurement may beat the speed-of-light bound.

Each row of ../shared/reference/published_flashattention.csv (FlashAttention-2/3, cuDNN, Triton,
xformers, standard attention on A100/H100; forward and forward+backward) is converted to time
with the FlashAttention benchmark convention — FLOPs fwd = 4*B*S^2*H*D (halved when causal),
fwd+bwd = 3.5x fwd — and compared with `bound_s` of the same workload. A published time below the
bound means the model or the profile is wrong: fix the model, never the data.

The same check runs over every row attnsim can price of all three published files
(`load_reference`: the FlashAttention file, ../shared/reference/published_kernels_more.csv and the
package's validation/reference/published_mi300x.csv), one test per row named by its file:line;
a row whose card has no profile, and a row `load_reference` could not read (no time, no shape), is a
skipped test whose id says why.
"""
import csv

import pytest

from attnsim.simulator.bound import bound
from attnsim.simulator.hardware import load_hardware
from attnsim.validation.published import (HARDWARE, MI300X_PATH, fa_convention_flops, load_published,
                                          load_reference, published_path, published_time_s, reference_paths,
                                          workload_of)


def _rows():
    try:
        return load_published()
    except FileNotFoundError:
        return []


ROWS = _rows()


def test_reference_file_is_there():
    published_path()  # FileNotFoundError names where it looked (CI clones the project with shared/ beside it)
    assert len(ROWS) == 336  # 348 rows, 12 of them OOM
    assert len(load_published(include_oom=True)) == 348


def test_fa_convention_arithmetic():
    # FA2 on A100, fwd+bwd, batch 16384/S, 2048/D heads: 4*8*2048^2*32*64 * 3.5 FLOPs at 203 TFLOP/s
    r = {"batch": "8", "heads_q": "32", "head_dim": "64", "seqlen_q": "2048", "causal": "false",
         "direction": "fwd+bwd", "value": "203"}
    assert fa_convention_flops(r) == 4 * 8 * 2048**2 * 32 * 64 * 3.5
    assert published_time_s(r) == pytest.approx(4 * 8 * 2048**2 * 32 * 64 * 3.5 / 203e12)
    r["causal"], r["direction"] = "true", "fwd"
    assert fa_convention_flops(r) == 4 * 8 * 2048**2 * 32 * 64 / 2


@pytest.mark.parametrize("r", ROWS, ids=lambda r: f"{r['source_id']}-{r['kernel']}-{r['direction']}-"
                         f"c{r['causal']}-d{r['head_dim']}-s{r['seqlen_q']}")
def test_no_published_time_beats_the_bound(r):
    hw = load_hardware(HARDWARE[r["hardware"]])
    measured = published_time_s(r)
    b = bound(workload_of(r), hw)
    assert measured >= b.time_s, (f"published {measured:.4e} s < bound {b.time_s:.4e} s ({b.unit}): "
                                  f"ratio {b.time_s / measured:.3f}")


# -- every row of the three published files ---------------------------------------------------------

def _reference():
    try:
        paths = reference_paths()
    except FileNotFoundError:
        return [], [], []
    rows, skipped = load_reference(paths)
    return paths, rows, skipped


PATHS, REF_ROWS, REF_SKIPPED = _reference()


def _data_lines(path) -> list:
    """(line, row dict) of each data row, numbered as `load_reference` numbers them (header = line 1)."""
    with open(path, newline="") as f:
        return list(enumerate(csv.DictReader(f), start=2))


def backward_bound_s(r, hw) -> float:
    """A lower bound of a backward-only row: its tensor work alone at the device's peak.

    bound(train) - bound(prefill) is no lower bound of the backward (the two maxima need not be set by
    the same unit), so the backward is bounded by its own work. A backward kernel gets Q, K, V, O, dO
    and the LSE, not P: it must recompute S = QK^T (2d FLOPs per live pair) and compute dP, dV (2dv
    each), dQ, dK (2d each), 2(3d + 2dv) = 10d per pair for d = dv — 2.5x the forward's 4d, which is
    the rows' own FLOP convention: 2.5 x 4*B*H*Sq*Skv*D (halved when causal; a causal mask keeps at
    least half the pairs). Those FLOPs at the fastest tensor rate the profile lists for the row's
    input dtype (any accumulate type) on every SM at clock_max_hz: no implementation beats it.
    """
    fwd_flops = 4.0 * r.batch * r.heads_q * r.seqlen_q * r.seqlen_kv * r.head_dim / (2 if r.causal else 1)
    flops_per_clk_per_sm = max(t.flops_per_clk_per_sm for t in hw.tensor if t.dtype == r.dtype)
    return 2.5 * fwd_flops / (flops_per_clk_per_sm * hw.sm_count * hw.clock_max_hz)


def row_bound_s(r, hw) -> tuple:
    """(bound time, limiting unit) of a reference row: the backward by `backward_bound_s`, every other
    phase (prefill, train, decode) by `bound` of the row's workload."""
    if r.phase == "backward":
        return backward_bound_s(r, hw), "tensor (backward alone)"
    b = bound(r.workload(), hw)
    return b.time_s, b.unit


def _params():
    out = []
    for r in REF_ROWS:
        if r.hw is None:
            why = f"no profile for {r.hardware!r}"
            out.append(pytest.param(r, id=f"{r.where} skipped: {why}", marks=pytest.mark.skip(reason=why)))
        else:
            shape = f"{'causal' if r.causal else 'dense'}-d{r.head_dim}-s{r.seqlen_q}x{r.seqlen_kv}-b{r.batch}"
            out.append(pytest.param(r, id=f"{r.where}-{r.hw}-{r.phase}-{r.dtype}-{shape}"))
    for where, why in REF_SKIPPED:
        out.append(pytest.param(None, id=f"{where} skipped: {why}", marks=pytest.mark.skip(reason=why)))
    return out


def test_reference_reads_all_three_files_and_loses_no_row():
    assert [p.name for p in PATHS] == ["published_flashattention.csv", "published_kernels_more.csv",
                                       "published_mi300x.csv"]
    assert PATHS[2] == MI300X_PATH
    assert len(REF_ROWS) + len(REF_SKIPPED) == sum(len(_data_lines(p)) for p in PATHS)
    # every skip is a row without a time or a stated shape: an unknown card or kernel name is no skip
    assert all(why == "out of memory (no time)" or "not a whole number" in why for _, why in REF_SKIPPED), \
        REF_SKIPPED
    mi300x = [r for r in REF_ROWS if r.where.startswith("published_mi300x.csv:")]
    assert len(mi300x) == len(_data_lines(MI300X_PATH)) and {r.hw for r in mi300x} == {"mi300x"}


@pytest.mark.parametrize("r", _params())
def test_no_published_row_beats_the_bound(r):
    hw = load_hardware(r.hw)
    b, unit = row_bound_s(r, hw)
    assert r.time_s >= b, (f"{r.where}: published {r.time_s:.4e} s < bound {b:.4e} s ({unit}): "
                           f"ratio {b / r.time_s:.3f}")


def test_backward_bound_written_out():
    # ROCm/flash-attention #142 on MI300X, bwd, B=1, H=16, S=16384, D=128, fp16 (published_mi300x.csv:3):
    # 2.5 x 4*1*16*16384^2*128 FLOPs at fp16's fastest rate, 2048 FLOP/clk/CU x 304 CUs x 2.1 GHz
    r = next(r for r in REF_ROWS if r.where == "published_mi300x.csv:3")
    assert (r.phase, r.batch, r.heads_q, r.seqlen_q, r.head_dim, r.causal) == ("backward", 1, 16, 16384, 128, False)
    assert backward_bound_s(r, load_hardware("mi300x")) == pytest.approx(
        2.5 * 4 * 16 * 16384**2 * 128 / (2048 * 304 * 2.1e9), rel=1e-12)


def test_rtx4090_bound_runs_at_the_max_graphics_clock():
    """FlashAttention-2 at 167 TFLOP/s on the RTX 4090 (SAGE-BENCH, d=64, 8k tokens) beat a bound
    priced at the 2520 MHz rated boost (165.2 TFLOP/s); at the 3105 MHz maximum graphics clock the
    tensor bound is 128 SMs x 512 FLOP/clk x 3.105 GHz = 203.5 TFLOP/s and the row sits at 0.82 of it."""
    r = next(r for r in REF_ROWS if r.where == "published_kernels_more.csv:53")
    assert (r.hw, r.phase, r.batch, r.heads_q, r.seqlen_q, r.head_dim) == ("rtx4090", "prefill", 4, 32, 8192, 64)
    b = bound(r.workload(), load_hardware("rtx4090"))
    assert b.unit == "tensor"
    assert b.time_s == pytest.approx(4 * 4 * 32 * 8192**2 * 64 / (512 * 128 * 3.105e9), rel=1e-12)
    assert b.time_s / r.time_s == pytest.approx(167 / (512 * 128 * 3.105e9 / 1e12), rel=1e-9)


def test_microsecond_rows_are_read_as_times():
    rows = {r.where: r for r in REF_ROWS}
    us = [(f"{MI300X_PATH.name}:{line}", float(d["value"]) * 1e-6)
          for line, d in _data_lines(MI300X_PATH) if d["unit"] == "us"]
    assert us
    for where, time_s in us:
        assert rows[where].time_s == pytest.approx(time_s, rel=1e-9), where
