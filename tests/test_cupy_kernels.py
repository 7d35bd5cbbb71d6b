"""CuPy kernels: every CUDA source compiles with NVRTC for sm_80 and sm_90 (no GPU needed); on a GPU,
eager attention matches a float64 reference and the micro-benchmarks return measured figures."""
import functools
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cupy")

from attnsim.kernels import cupy_eager, microbench, nvrtc  # noqa: E402

HAS_GPU = microbench.gpu_present()
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="no CUDA device")
ROOT = Path(__file__).resolve().parents[1]

# The extern "C" kernels each source must define, written out here rather than read from the module.
ENTRY_POINTS = {
    ("cupy_eager", "qk_scores"): {"qk_scores_f32", "qk_scores_f16"},
    ("cupy_eager", "softmax_rows"): {"softmax_rows"},
    ("cupy_eager", "pv"): {"pv_f32", "pv_f16"},
    ("microbench", "copy"): {"copy_f4"},
    ("microbench", "exp"): {"exp_chains"},
    ("microbench", "l2_read"): {"l2_read"},
}
MODULES = {"cupy_eager": cupy_eager, "microbench": microbench}
ARCHS = ("sm_80", "sm_90")


def test_entry_point_table_covers_every_source():
    assert set(ENTRY_POINTS) == {(m, s) for m, mod in MODULES.items() for s in mod.SOURCES}


@functools.cache
def compiled(module, source, arch):
    return nvrtc.compile_source(MODULES[module].SOURCES[source], f"{source}.cu", arch)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("module,source", sorted(ENTRY_POINTS))
def test_source_compiles_and_names_its_entry_points(module, source, arch):
    out = compiled(module, source, arch)
    assert out["arch"] == arch
    assert f".target {arch}" in out["ptx"]
    assert set(re.findall(r"\.entry\s+(\w+)\s*\(", out["ptx"])) == ENTRY_POINTS[module, source]
    assert out["cubin"][:4] == b"\x7fELF"


@pytest.mark.skipif(nvrtc.ptxas_path() is None, reason="no ptxas (triton not installed)")
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("module,source", sorted(ENTRY_POINTS))
def test_ptxas_reports_registers(module, source, arch):
    usage = nvrtc.resource_usage(compiled(module, source, arch)["ptx"], arch)
    assert set(usage) == ENTRY_POINTS[module, source]
    for name, u in usage.items():
        assert 0 < u["registers"] <= 255, (name, u)
        assert u["smem_bytes"] >= 0
    if source == "qk_scores":  # static tiles: 16 x 16 Q and 16 x 17 K floats
        assert all(u["smem_bytes"] == 4 * (16 * 16 + 16 * 17) for u in usage.values())


def test_broken_source_raises_with_the_log():
    src = 'extern "C" __global__ void broken(float* x) { x[0] = not_declared_anywhere; }'
    with pytest.raises(nvrtc.NVRTCCompileError, match="not_declared_anywhere"):
        nvrtc.compile_source(src, "broken.cu", "sm_80")


def test_virtual_arch_gives_ptx_only_and_bad_arch_is_refused():
    out = nvrtc.compile_source('extern "C" __global__ void k() {}', "k.cu", "compute_80")
    assert ".entry k(" in out["ptx"] and out["cubin"] is None
    with pytest.raises(ValueError, match="arch="):
        nvrtc.compile_source("", "k.cu", "80")


def test_importing_the_kernel_modules_does_not_import_cupy():
    code = ("import sys, attnsim.kernels.nvrtc, attnsim.kernels.cupy_eager, attnsim.kernels.microbench; "
            "assert 'cupy' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("shapes,match", [
    (((2, 4, 8), (2, 4, 8, 16), (2, 4, 8, 16)), "batch, heads, seqlen, head_dim"),
    (((2, 4, 8, 16), (2, 3, 8, 16), (2, 3, 8, 16)), "multiple of heads_kv"),
    (((2, 4, 8, 16), (2, 2, 8, 32), (2, 2, 8, 16)), "matching q"),
    (((2, 4, 8, 16), (2, 2, 8, 16), (2, 2, 9, 16)), "v must match k"),
    (((2, 4, 0, 16), (2, 2, 8, 16), (2, 2, 8, 16)), "empty dimension"),
])
def test_eager_attention_rejects_bad_shapes(shapes, match):
    q, k, v = (np.zeros(s, np.float32) for s in shapes)  # validation runs before anything touches a GPU
    with pytest.raises(ValueError, match=match):
        cupy_eager.eager_attention(q, k, v)


def test_eager_attention_rejects_mixed_dtypes():
    q = np.zeros((1, 1, 4, 8), np.float16)
    with pytest.raises(ValueError, match="dtype"):
        cupy_eager.eager_attention(q, q.astype(np.float32), q)


def test_bench_script_without_gpu_says_so():
    if HAS_GPU:
        pytest.skip("a GPU is present: the script measures instead")
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_ceilings.py")],
                         capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "no GPU: nothing measured"


# -- GPU: eager attention against float64 -------------------------------------------------------


def live_mask(seqlen_q, seqlen_kv, causal, mask):
    i, j = np.arange(seqlen_q)[:, None], np.arange(seqlen_kv)[None, :]
    live = j <= i + seqlen_kv - seqlen_q if causal else np.ones((seqlen_q, seqlen_kv), bool)
    return live & mask.astype(bool) if mask is not None else live


def numpy_attention(q, k, v, live, scale, dtype):
    """Attention in numpy with every array in ``dtype`` (float64: the oracle; float16: the
    same-precision implementation whose error sets the fp16 budget). Dead rows give o = 0, lse = -inf."""
    group = q.shape[1] // k.shape[1]
    q, k, v = (x.astype(dtype) for x in (q, np.repeat(k, group, 1), np.repeat(v, group, 1)))
    s = np.where(live, (q @ k.swapaxes(-1, -2)) * dtype(scale), dtype(-np.inf))  # (B, Hq, Lq, Lk)
    m = s.max(-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(m), m, dtype(0)))
    l = e.sum(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        lse = np.where(l > 0, np.log(l) + m, dtype(-np.inf))[..., 0]
    return (e / np.where(l > 0, l, dtype(1))) @ v, lse


CASES = {  # batch, heads_q, heads_kv, seqlen_q, seqlen_kv, head_dim, head_dim_v, causal, mask
    "dense": (2, 4, 4, 128, 128, 64, 64, False, None),
    "causal_lq_lt_lk": (1, 2, 2, 50, 130, 64, 64, True, None),
    "causal_lq_gt_lk_empty_rows": (1, 2, 2, 130, 77, 32, 32, True, None),
    "gqa": (2, 8, 2, 64, 96, 64, 64, False, None),
    "mqa_causal": (1, 4, 1, 96, 96, 128, 128, True, None),
    "ragged_77x130": (1, 3, 3, 77, 130, 40, 40, False, None),
    "ragged_dv": (1, 2, 1, 33, 45, 48, 24, True, None),
    "mask": (1, 2, 2, 77, 130, 64, 64, False, "random"),
    "mask_and_causal": (2, 4, 2, 64, 64, 64, 64, True, "random"),
}


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("case", sorted(CASES))
def test_eager_attention_matches_float64(case, dtype):
    import cupy as cp

    batch, heads_q, heads_kv, seqlen_q, seqlen_kv, head_dim, head_dim_v, causal, mask_kind = CASES[case]
    seed = np.random.SeedSequence().entropy  # fresh inputs each run; the seed is in every message
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((batch, heads_q, seqlen_q, head_dim)).astype(dtype)
    k = rng.standard_normal((batch, heads_kv, seqlen_kv, head_dim)).astype(dtype)
    v = rng.standard_normal((batch, heads_kv, seqlen_kv, head_dim_v)).astype(dtype)
    mask = None
    if mask_kind == "random":
        mask = rng.random((seqlen_q, seqlen_kv)) < 0.7
        mask[seqlen_q // 3] = False  # a row with no live key
    scale = head_dim ** -0.5
    live = live_mask(seqlen_q, seqlen_kv, causal, mask)

    o, lse = cupy_eager.eager_attention(cp.asarray(q), cp.asarray(k), cp.asarray(v), causal=causal,
                                        mask=None if mask is None else cp.asarray(mask))
    o, lse = cp.asnumpy(o), cp.asnumpy(lse)
    assert o.dtype == dtype and o.shape == (batch, heads_q, seqlen_q, head_dim_v)
    assert lse.dtype == np.float32 and lse.shape == (batch, heads_q, seqlen_q)
    o_ref, lse_ref = numpy_attention(q, k, v, live, scale, np.float64)

    dead = ~live.any(-1)  # rows with no live key: o = 0 exactly, lse = -inf
    assert np.array_equal(np.isneginf(lse), np.broadcast_to(dead, lse.shape)), seed
    assert not o[..., dead, :].any(), seed
    fin = np.isfinite(lse_ref)
    o_err = np.abs(o.astype(np.float64) - o_ref).max()
    lse_err = np.abs(lse[fin] - lse_ref[fin]).max(initial=0)
    if dtype == np.float32:
        assert o_err <= 1e-4 * np.abs(o_ref).max(), (seed, o_err)
        assert lse_err <= 1e-4 * np.abs(lse_ref[fin]).max(initial=1), (seed, lse_err)
    else:
        # At most twice the error of the same computation in numpy float16, plus the rounding of
        # the exact output to fp16, which no fp16 result avoids (FlashAttention's test rule).
        o_half, lse_half = numpy_attention(q, k, v, live, scale, np.float16)
        rounding = np.abs(o_ref.astype(np.float16).astype(np.float64) - o_ref).max()
        assert o_err <= 2 * np.abs(o_half - o_ref).max() + rounding, (seed, o_err)
        assert lse_err <= 2 * np.abs(lse_half[fin] - lse_ref[fin]).max(initial=0), (seed, lse_err)


@pytest.mark.gpu
@needs_gpu
def test_eager_attention_rejects_a_mis_shaped_mask():
    import cupy as cp

    q = cp.zeros((1, 1, 8, 16), cp.float32)
    with pytest.raises(ValueError, match="mask must be"):
        cupy_eager.eager_attention(q, q, q, mask=cp.ones((8, 9), cp.bool_))


# -- GPU: micro-benchmarks -----------------------------------------------------------------------


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("bench,kwargs,unit", [
    (microbench.copy_bandwidth, {"nbytes": 64 << 20, "reps": 5}, "bytes/s"),
    (microbench.matmul_rate, {"dtype": "float16", "n": 1024, "reps": 5}, "flop/s"),
    (microbench.matmul_rate, {"dtype": "float32", "n": 1024, "reps": 5}, "flop/s"),
    (microbench.exp_throughput, {"iters": 256, "reps": 5}, "exp/s"),
    (microbench.l2_bandwidth, {"passes": 8, "reps": 5}, "bytes/s"),
])
def test_microbench_values_are_positive_and_finite(bench, kwargs, unit):
    r = bench(**kwargs)
    assert {"what", "value", "unit", "median_s", "reps", "device", "cuda_runtime", "cupy", "date"} <= set(r)
    assert r["unit"] == unit and r["reps"] == kwargs["reps"] and r["device"]
    assert math.isfinite(r["value"]) and r["value"] > 0
    assert math.isfinite(r["median_s"]) and r["median_s"] > 0


def test_variant_mask_is_the_shared_definition():
    """The eager kernel's explicit mask for a variant is the simulator's mask_mod, element by element."""
    from attnsim.kernels.cupy_eager import variant_mask
    m = variant_mask("swa", 40, 50, causal=True, window_size=(8, 0))
    i, j = np.arange(40)[:, None], np.arange(50)[None, :]
    off = 50 - 40
    np.testing.assert_array_equal(m, ((j <= i + off) & (j >= i + off - 8)).astype(np.uint8))
    g = variant_mask("gna", 36, 36, token_shape=(6, 6), kernel_size=(3, 3))
    assert g.shape == (36, 36) and g.sum(1).tolist() == [9] * 36  # every query sees a 3 x 3 window
