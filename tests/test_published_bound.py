"""No published FlashAttention measurement may beat the speed-of-light bound.

Each row of ../shared/reference/published_flashattention.csv (FlashAttention-2/3, cuDNN, Triton,
xformers, standard attention on A100/H100; forward and forward+backward) is converted to time
with the FlashAttention benchmark convention — FLOPs fwd = 4*B*S^2*H*D (halved when causal),
fwd+bwd = 3.5x fwd — and compared with `bound_s` of the same workload. A published time below the
bound means the model or the profile is wrong: fix the model, never the data.
"""
import pytest

from attnsim.simulator.bound import bound
from attnsim.simulator.hardware import load_hardware
from attnsim.validation.published import (HARDWARE, fa_convention_flops, load_published, published_path,
                                          published_time_s, workload_of)


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
