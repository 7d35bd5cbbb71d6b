"""Micro-benchmarks of the ceilings the hardware model uses, measured on the card in hand with CuPy.

Each function times one ceiling with CUDA events (warm-up launches, then the median of ``reps``
timed launches) and returns a record:
``{"what", "value", "unit", "median_s", "reps", "device", "cuda_runtime", "cupy", "date", "params"}``.
``what`` names the hardware-profile figure it measures (``hardware_profiles/*.yaml``), ``value`` is
work / ``median_s`` and nothing else: no figure here is estimated or filled in.

* ``copy_bandwidth``: HBM, a float4 copy kernel over buffers far larger than L2; bytes read + written.
* ``matmul_rate``: cuBLAS GEMM through ``cupy.matmul``; 2 n^3 FLOPs.
* ``exp_throughput``: ``__expf`` as fast math compiles it (one FMUL, one MUFU.EX2) on registers.
* ``l2_bandwidth``: repeated ``ld.global.cg`` reads (L2 only, no L1) of a buffer a quarter of L2's size.

Run them all: ``python benchmarks/bench_ceilings.py``. CuPy is imported inside the functions.
"""
import datetime
import functools
import statistics

from .nvrtc import raw_function

_COPY = r"""
// dst = src, float4 at a time, grid-stride: every byte read once from and written once to HBM.
extern "C" __global__ void copy_f4(const float4* __restrict__ src, float4* __restrict__ dst, unsigned long long n) {
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long t = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; t < n; t += stride)
        dst[t] = src[t];
}
"""

_EXP = r"""
#define CHAINS 8
// __expf as it compiles with -ftz=true (as in --use_fast_math): one FMUL and one MUFU.EX2. Without
// ftz, ex2.approx.f32 adds a denormal fix-up (FSETP + 2 FMUL) that on A100 would load its 64 FP32
// lanes per SM as heavily as the 16 exps per clock load MUFU, so the FP32 pipe could set the rate.
__device__ __forceinline__ float fast_exp(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x * 1.44269504f));  // 1.44269504 = log2(e)
    return y;
}

// CHAINS independent dependent chains x <- exp(-x) per thread: the chains hide MUFU latency, so the
// kernel runs at MUFU throughput. x stays in [0.36, 1] (the map's fixed point is 0.567), so no input
// is denormal or out of range; the sum written out keeps every exp live.
extern "C" __global__ void exp_chains(float* __restrict__ out, int iters) {
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    float x[CHAINS];
    #pragma unroll
    for (int c = 0; c < CHAINS; ++c) x[c] = 0.5f + 0.001f * ((tid + c) & 255);
    for (int it = 0; it < iters; ++it) {
        #pragma unroll
        for (int c = 0; c < CHAINS; ++c) x[c] = fast_exp(-x[c]);
    }
    float acc = 0.f;
    #pragma unroll
    for (int c = 0; c < CHAINS; ++c) acc += x[c];
    out[tid] = acc;
}
"""

_L2_READ = r"""
// Sum src[0:n] `passes` times. __ldcg (ld.global.cg) caches in L2 only: every pass after the first
// is served by L2, never by L1. One atomicAdd per warp writes the sum, so the loads cannot be elided.
extern "C" __global__ void l2_read(const float4* __restrict__ src, unsigned long long n, int passes, float* out) {
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    float acc = 0.f;
    for (int p = 0; p < passes; ++p)
        for (unsigned long long t = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; t < n; t += stride) {
            const float4 x = __ldcg(src + t);
            acc += (x.x + x.y) + (x.z + x.w);
        }
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (threadIdx.x % 32 == 0) atomicAdd(out, acc);
}
"""

SOURCES = {"copy": _COPY, "exp": _EXP, "l2_read": _L2_READ}

_THREADS = 256


def gpu_present() -> bool:
    """True when CuPy is installed and sees at least one CUDA device."""
    try:
        import cupy as cp

        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no cupy, no driver, or no device: all mean "nothing to measure"
        return False


@functools.cache
def _kernel(source: str, entry: str, device_id: int):
    """The compiled entry point, built on first use per device (NVRTC through cupy.RawModule)."""
    return raw_function(SOURCES[source], entry)


def _median_time_s(fn, warmup: int, reps: int) -> float:
    """Median wall time of ``fn()`` on the current stream, CUDA events around each call."""
    import cupy as cp

    for _ in range(warmup):
        fn()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) * 1e-3)
    return statistics.median(times)


def _record(what: str, work: float, unit: str, median_s: float, reps: int, **params) -> dict:
    """The record every benchmark returns: value = work / median_s, plus where and when it was timed."""
    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    rt = cp.cuda.runtime.runtimeGetVersion()  # e.g. 12080
    return {
        "what": what,
        "value": work / median_s,
        "unit": unit,
        "median_s": median_s,
        "reps": reps,
        "device": props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
        "cuda_runtime": f"{rt // 1000}.{rt % 1000 // 10}",
        "cupy": cp.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        # to turn a device-wide rate into the profiles' per-SM, per-clock figures: the SM count and the
        # clock the driver reports (its maximum, kHz -> Hz; the clock under load may be lower)
        "sm_count": int(props["multiProcessorCount"]),
        "clock_max_hz": int(props["clockRate"]) * 1000,
        "params": params,
    }


def _full_grid() -> int:
    """Blocks of _THREADS that fill every SM's thread slots exactly once (one wave, no tail)."""
    import cupy as cp

    attrs = cp.cuda.Device().attributes
    return attrs["MultiProcessorCount"] * (attrs["MaxThreadsPerMultiProcessor"] // _THREADS)


def copy_bandwidth(nbytes: int = 1 << 30, warmup: int = 3, reps: int = 20) -> dict:
    """HBM bandwidth of a device-to-device copy: (bytes read + bytes written) / time.

    Args:
        nbytes: size of each buffer (rounded down to 16 bytes); the default 1 GiB is 8x the largest
            L2 among the profiles (B200's 126 MiB), so the copy streams from HBM.
    """
    import cupy as cp

    n = nbytes // 16  # float4 elements
    src = cp.ones(n * 4, cp.float32)
    dst = cp.empty_like(src)
    kernel = _kernel("copy", "copy_f4", cp.cuda.Device().id)
    grid = (_full_grid(),)
    t = _median_time_s(lambda: kernel(grid, (_THREADS,), (src, dst, cp.uint64(n))), warmup, reps)
    return _record("hbm_bandwidth_bytes_per_s", 2 * 16 * n, "bytes/s", t, reps, buffer_bytes=16 * n,
                   l2_bytes=cp.cuda.Device().attributes["L2CacheSize"])


def matmul_rate(dtype: str = "float16", n: int = 8192, warmup: int = 3, reps: int = 20) -> dict:
    """Dense GEMM throughput, 2 n^3 / time, of ``cupy.matmul`` on n x n matrices.

    This measures cuBLAS as CuPy calls it, not a kernel of ours: fp16 runs on the tensor cores with
    CuPy's default compute type; fp32 runs on the FP32 pipes unless ``CUPY_TF32=1`` is set in the
    environment (recorded in ``params``), in which case cuBLAS may use TF32 tensor cores.

    Args:
        dtype: "float16" or "float32".
        n: matrix size; 8192 keeps the GEMM compute-bound on every profiled card.
    """
    import os

    import cupy as cp

    if dtype not in ("float16", "float32"):
        raise ValueError(f"{dtype=} must be 'float16' or 'float32'")
    rng = cp.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=cp.float32).astype(dtype)
    b = rng.standard_normal((n, n), dtype=cp.float32).astype(dtype)
    c = cp.empty((n, n), dtype)
    t = _median_time_s(lambda: cp.matmul(a, b, out=c), warmup, reps)
    short = {"float16": "fp16", "float32": "fp32"}[dtype]
    return _record(f"matmul_flops_per_s_{short}", 2.0 * n ** 3, "flop/s", t, reps, n=n, dtype=dtype,
                   cupy_tf32=os.environ.get("CUPY_TF32", "0"))


def exp_throughput(iters: int = 4096, warmup: int = 3, reps: int = 20) -> dict:
    """``__expf`` throughput in exps per second over every SM; divided by the record's ``sm_count`` and
    ``clock_max_hz`` it compares with the profiles' exp_ops_per_clk_per_sm (an upper clock: the
    per-clock figure it gives is a lower bound).

    Each exp is ``ex2.approx.ftz.f32(x * log2 e)``, what ``__expf`` becomes under fast math and
    how softmax kernels evaluate exponentials: one MUFU.EX2 and one FMUL (checked in the SASS that
    ptxas 12.8 emits for sm_80 and sm_90). The FlashAttention-3 blog (footnote 2) counts 16 MUFU
    ops per SM per clock.

    Args:
        iters: exps per chain; each thread runs 8 chains, and one wave of blocks fills every SM.
    """
    import cupy as cp

    blocks = _full_grid()
    out = cp.empty(blocks * _THREADS, cp.float32)
    kernel = _kernel("exp", "exp_chains", cp.cuda.Device().id)
    t = _median_time_s(lambda: kernel((blocks,), (_THREADS,), (out, cp.int32(iters))), warmup, reps)
    exps = blocks * _THREADS * 8 * iters  # 8 = CHAINS in _EXP
    return _record("exp_ops_per_s", exps, "exp/s", t, reps, iters=iters, threads=blocks * _THREADS)


def l2_bandwidth(nbytes: int | None = None, passes: int | None = None, warmup: int = 3, reps: int = 20) -> dict:
    """L2 read bandwidth: bytes read / time for repeated reads of a buffer that fits in L2.

    Args:
        nbytes: buffer size; default a quarter of the device's L2 (10 MiB on A100, 12.5 MiB on
            H100), so it stays resident even where L2 is split into two partitions.
        passes: reads of the whole buffer per launch; default enough for ~1 GiB per launch, so the
            first pass (which may miss to HBM after the previous launch) does not matter.
    """
    import cupy as cp

    l2 = cp.cuda.Device().attributes["L2CacheSize"]
    n = (nbytes if nbytes is not None else l2 // 4) // 16
    passes = passes if passes is not None else max(1, (1 << 30) // (16 * n))
    src = cp.ones(n * 4, cp.float32)
    out = cp.zeros(1, cp.float32)
    kernel = _kernel("l2_read", "l2_read", cp.cuda.Device().id)
    grid = (_full_grid(),)
    t = _median_time_s(lambda: kernel(grid, (_THREADS,), (src, cp.uint64(n), cp.int32(passes), out)), warmup, reps)
    return _record("l2_bandwidth_bytes_per_s", 16 * n * passes, "bytes/s", t, reps, buffer_bytes=16 * n,
                   passes=passes, l2_bytes=l2)


def run_all() -> list[dict]:
    """Every ceiling on the current device, in the order above."""
    return [copy_bandwidth(), matmul_rate("float16"), matmul_rate("float32"), exp_throughput(), l2_bandwidth()]
