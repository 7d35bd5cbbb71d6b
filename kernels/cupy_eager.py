"""Eager ("standard") attention in CuPy: three CUDA kernels that materialise the score matrix.

Tensors are laid out (batch, heads, seqlen, head_dim); B is the batch, Hq/Hkv the query/key-value
heads, Lq/Lk the query/key lengths, D the head dimension of Q and K, Dv that of V.

The kernels work as follows, each a separate launch that round-trips through global memory, which is
the traffic the simulator charges the eager family for (docs/design.md, "Eager": ``qk_gemm`` writes
the scores, ``softmax`` applies the mask, ``pv_gemm``; every score is computed, live or not):

1. ``qk_scores_{f32,f16}``: S = scale * Q K^T, a 16 x 16 shared-memory tiled matmul with fp32
   accumulation, written as fp32 (B, Hq, Lq, Lk).
2. ``softmax_rows``: one block per row of S; the row max, the sum of exponentials and then
   P = exp(S - max) / sum over the live keys, with P = 0 on dead keys. It writes P (fp32) and the
   row log-sum-exp. A key is live when it passes the causal test, bottom-right aligned as in
   FlashAttention (query i sees key j iff j <= i + Lk - Lq), and the optional uint8 mask [Lq, Lk]
   (1 = live), shared by every batch and head. A row with no live key gets P = 0 (so O = 0) and
   lse = -inf, the log of an empty sum (FlashAttention-2 stores +inf there instead:
   ``normalize_softmax_lse`` in csrc/flash_attn/src/softmax.h, Dao-AILab/flash-attention).
3. ``pv_{f32,f16}``: O = P V, tiled like step 1, fp32 accumulation, written in the input dtype.

Grouped heads (GQA/MQA): query head h reads key-value head h // (Hq // Hkv).

Constraints: fp32 or fp16 inputs, all three of one dtype; B * Hq <= 65535 (grid z) and
ceil(Lq / 16) <= 65535 (grid y). Any Lq, Lk, D, Dv >= 1: every load and store is bounds-checked,
so ragged sizes (77, 130) need no padding.

fp16 is carried as its raw 16 bits (``unsigned short``) and converted with the PTX ``cvt``
instruction: the sources then need no ``cuda_fp16.h``, which NVRTC does not ship and pip-installed
CUDA may lack, so they compile anywhere NVRTC runs (the CPU-only tests compile them for sm_80/sm_90).

Run on a GPU: ``o, lse = eager_attention(q, k, v, causal=True)`` with CuPy arrays;
test: ``pytest tests/test_cupy_kernels.py`` (the GPU cases are marked ``gpu``).
"""
import functools

import numpy as np

from .nvrtc import raw_function

_PRELUDE = r"""
#define TILE 16
// fp16 travels as raw bits; PTX cvt converts (round-to-nearest-even on the way back).
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ void store(float* p, float x) { *p = x; }
__device__ __forceinline__ void store(unsigned short* p, float x) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
    *p = h;
}
"""

_QK_SCORES = _PRELUDE + r"""
// S[b,h,i,j] = scale * sum_c Q[b,h,i,c] K[b,h/group,j,c]. Block (TILE, TILE) computes the
// TILE x TILE score tile at rows i0.., columns j0.. of head blockIdx.z = b * heads_q + h.
template <typename T>
__device__ __forceinline__ void qk_scores(const T* __restrict__ q, const T* __restrict__ k, float* __restrict__ s,
                                          int seqlen_q, int seqlen_kv, int head_dim, int heads_q, int group,
                                          float scale) {
    __shared__ float q_tile[TILE][TILE];
    __shared__ float k_tile[TILE][TILE + 1];  // +1 pad: k_tile[tx][c] down a column hits distinct banks
    const int ty = threadIdx.y, tx = threadIdx.x;
    const int bh = blockIdx.z, b = bh / heads_q, h = bh % heads_q;
    const int i0 = blockIdx.y * TILE, j0 = blockIdx.x * TILE;
    const T* q_bh = q + (size_t)bh * seqlen_q * head_dim;
    const T* k_bh = k + ((size_t)b * (heads_q / group) + h / group) * seqlen_kv * head_dim;
    float acc = 0.f;
    for (int c0 = 0; c0 < head_dim; c0 += TILE) {
        // -- stage Q[i0:i0+TILE, c0:c0+TILE] and K[j0:j0+TILE, c0:c0+TILE], zeros past the edges --
        const int c = c0 + tx;
        q_tile[ty][tx] = (i0 + ty < seqlen_q && c < head_dim) ? to_float(q_bh[(size_t)(i0 + ty) * head_dim + c]) : 0.f;
        k_tile[ty][tx] = (j0 + ty < seqlen_kv && c < head_dim) ? to_float(k_bh[(size_t)(j0 + ty) * head_dim + c]) : 0.f;
        __syncthreads();
        #pragma unroll
        for (int cc = 0; cc < TILE; ++cc) acc += q_tile[ty][cc] * k_tile[tx][cc];
        __syncthreads();
    }
    const int i = i0 + ty, j = j0 + tx;
    if (i < seqlen_q && j < seqlen_kv) s[((size_t)bh * seqlen_q + i) * seqlen_kv + j] = scale * acc;
}

extern "C" __global__ void __launch_bounds__(TILE * TILE)
qk_scores_f32(const float* q, const float* k, float* s, int seqlen_q, int seqlen_kv, int head_dim,
              int heads_q, int group, float scale) {
    qk_scores(q, k, s, seqlen_q, seqlen_kv, head_dim, heads_q, group, scale);
}

extern "C" __global__ void __launch_bounds__(TILE * TILE)
qk_scores_f16(const unsigned short* q, const unsigned short* k, float* s, int seqlen_q, int seqlen_kv,
              int head_dim, int heads_q, int group, float scale) {
    qk_scores(q, k, s, seqlen_q, seqlen_kv, head_dim, heads_q, group, scale);
}
"""

_SOFTMAX_ROWS = r"""
#define THREADS 256
#define NEG_INF __int_as_float(0xff800000)

// Max (IS_MAX) or sum of x over the block; every thread gets the result. red: THREADS / 32 floats.
template <bool IS_MAX>
__device__ __forceinline__ float block_reduce(float x, float* red) {
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float y = __shfl_xor_sync(0xffffffffu, x, o);
        x = IS_MAX ? fmaxf(x, y) : x + y;
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) red[warp] = x;
    __syncthreads();
    x = lane < THREADS / 32 ? red[lane] : (IS_MAX ? NEG_INF : 0.f);
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float y = __shfl_xor_sync(0xffffffffu, x, o);
        x = IS_MAX ? fmaxf(x, y) : x + y;
    }
    __syncthreads();  // red is reused by the next reduction
    return x;
}

// One block per row r = (b * heads_q + h) * seqlen_q + i of S. mask: uint8 [seqlen_q, seqlen_kv] or null.
extern "C" __global__ void __launch_bounds__(THREADS)
softmax_rows(const float* __restrict__ s, float* __restrict__ p, float* __restrict__ lse,
             const unsigned char* __restrict__ mask, int seqlen_q, int seqlen_kv, int causal) {
    __shared__ float red[THREADS / 32];
    const size_t row = blockIdx.x;
    const int i = (int)(row % seqlen_q);
    const float* s_row = s + row * seqlen_kv;
    float* p_row = p + row * seqlen_kv;
    const unsigned char* mask_row = mask ? mask + (size_t)i * seqlen_kv : nullptr;
    const int last = causal ? i + seqlen_kv - seqlen_q : seqlen_kv - 1;  // bottom-right causal edge
    auto live = [&](int j) { return j <= last && (mask_row == nullptr || mask_row[j]); };
    // -- pass 1: row max over live keys --
    float m = NEG_INF;
    for (int j = threadIdx.x; j < seqlen_kv; j += THREADS)
        if (live(j)) m = fmaxf(m, s_row[j]);
    m = block_reduce<true>(m, red);
    // -- pass 2: sum of exp(s - m); m = -inf means no live key, and the sum stays 0 --
    float l = 0.f;
    if (m != NEG_INF)
        for (int j = threadIdx.x; j < seqlen_kv; j += THREADS)
            if (live(j)) l += expf(s_row[j] - m);
    l = block_reduce<false>(l, red);
    // -- pass 3: normalise; dead keys, and every key of a row with none live, get 0 --
    const float inv_l = l > 0.f ? 1.f / l : 0.f;
    for (int j = threadIdx.x; j < seqlen_kv; j += THREADS)
        p_row[j] = (l > 0.f && live(j)) ? expf(s_row[j] - m) * inv_l : 0.f;
    if (threadIdx.x == 0) lse[row] = l > 0.f ? m + logf(l) : NEG_INF;
}
"""

_PV = _PRELUDE + r"""
// O[b,h,i,c] = sum_j P[b,h,i,j] V[b,h/group,j,c]. Block (TILE, TILE) computes rows i0.., columns c0..
template <typename T>
__device__ __forceinline__ void pv(const float* __restrict__ p, const T* __restrict__ v, T* __restrict__ o,
                                   int seqlen_q, int seqlen_kv, int head_dim_v, int heads_q, int group) {
    __shared__ float p_tile[TILE][TILE];
    __shared__ float v_tile[TILE][TILE];
    const int ty = threadIdx.y, tx = threadIdx.x;
    const int bh = blockIdx.z, b = bh / heads_q, h = bh % heads_q;
    const int i0 = blockIdx.y * TILE, c0 = blockIdx.x * TILE;
    const float* p_bh = p + (size_t)bh * seqlen_q * seqlen_kv;
    const T* v_bh = v + ((size_t)b * (heads_q / group) + h / group) * seqlen_kv * head_dim_v;
    float acc = 0.f;
    for (int j0 = 0; j0 < seqlen_kv; j0 += TILE) {
        // -- stage P[i0:i0+TILE, j0:j0+TILE] and V[j0:j0+TILE, c0:c0+TILE], zeros past the edges --
        p_tile[ty][tx] = (i0 + ty < seqlen_q && j0 + tx < seqlen_kv)
                             ? p_bh[(size_t)(i0 + ty) * seqlen_kv + j0 + tx] : 0.f;
        v_tile[ty][tx] = (j0 + ty < seqlen_kv && c0 + tx < head_dim_v)
                             ? to_float(v_bh[(size_t)(j0 + ty) * head_dim_v + c0 + tx]) : 0.f;
        __syncthreads();
        #pragma unroll
        for (int jj = 0; jj < TILE; ++jj) acc += p_tile[ty][jj] * v_tile[jj][tx];
        __syncthreads();
    }
    const int i = i0 + ty, c = c0 + tx;
    if (i < seqlen_q && c < head_dim_v) store(o + ((size_t)bh * seqlen_q + i) * head_dim_v + c, acc);
}

extern "C" __global__ void __launch_bounds__(TILE * TILE)
pv_f32(const float* p, const float* v, float* o, int seqlen_q, int seqlen_kv, int head_dim_v, int heads_q,
       int group) {
    pv(p, v, o, seqlen_q, seqlen_kv, head_dim_v, heads_q, group);
}

extern "C" __global__ void __launch_bounds__(TILE * TILE)
pv_f16(const float* p, const unsigned short* v, unsigned short* o, int seqlen_q, int seqlen_kv, int head_dim_v,
       int heads_q, int group) {
    pv(p, v, o, seqlen_q, seqlen_kv, head_dim_v, heads_q, group);
}
"""

SOURCES = {"qk_scores": _QK_SCORES, "softmax_rows": _SOFTMAX_ROWS, "pv": _PV}

_TILE = 16  # TILE in the sources
_SOFTMAX_THREADS = 256  # THREADS in _SOFTMAX_ROWS


@functools.cache
def _kernel(source: str, entry: str, device_id: int):
    """The compiled entry point, built on first use per device (NVRTC through cupy.RawModule)."""
    return raw_function(SOURCES[source], entry)


def eager_attention(q, k, v, causal=False, mask=None, scale=None):
    """Attention with a materialised score matrix: softmax(scale * Q K^T + mask) V.

    Args:
        q: CuPy array (B, Hq, Lq, D), float32 or float16.
        k: (B, Hkv, Lk, D), same dtype; Hq must be a multiple of Hkv (query head h reads
            key-value head h // (Hq // Hkv)).
        v: (B, Hkv, Lk, Dv), same dtype.
        causal: bottom-right aligned causal mask: query i sees key j iff j <= i + Lk - Lq.
        mask: optional bool or uint8 array (Lq, Lk), nonzero = live, applied to every batch and
            head, and combined with ``causal`` by AND.
        scale: score scale; default 1 / sqrt(D).

    Returns:
        ``(o, lse)``: o (B, Hq, Lq, Dv) in the input dtype, lse (B, Hq, Lq) float32, the natural-log
        log-sum-exp of each row's live scaled scores. A row with no live key gives o = 0, lse = -inf.

    Raises:
        ValueError: shapes, dtypes or head counts that do not fit together, or a grid too large.
    """
    import cupy as cp

    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim != 4:
            raise ValueError(f"{name} must be (batch, heads, seqlen, head_dim); got {name}.shape={x.shape}")
        if 0 in x.shape:
            raise ValueError(f"{name} has an empty dimension: {name}.shape={x.shape}")
    if not q.dtype == k.dtype == v.dtype or q.dtype not in (np.float32, np.float16):
        raise ValueError(f"q, k, v must share one dtype, float32 or float16; got {q.dtype=}, {k.dtype=}, {v.dtype=}")
    batch, heads_q, seqlen_q, head_dim = q.shape
    _, heads_kv, seqlen_kv, _ = k.shape
    head_dim_v = v.shape[3]
    if k.shape[0] != batch or k.shape[3] != head_dim:
        raise ValueError(f"k must be (batch, heads_kv, seqlen_kv, head_dim) matching q; got {q.shape=}, {k.shape=}")
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(f"v must match k in batch, heads and seqlen; got {k.shape=}, {v.shape=}")
    if heads_q % heads_kv:
        raise ValueError(f"heads_q must be a multiple of heads_kv; got {heads_q=}, {heads_kv=}")
    if batch * heads_q > 65535 or -(-seqlen_q // _TILE) > 65535:
        raise ValueError(f"grid too large: need batch * heads_q <= 65535 and seqlen_q <= {65535 * _TILE}; "
                         f"got {batch=}, {heads_q=}, {seqlen_q=}")
    if mask is not None:
        mask = cp.asarray(mask)
        if mask.shape != (seqlen_q, seqlen_kv) or mask.dtype not in (np.bool_, np.uint8):
            raise ValueError(f"mask must be bool or uint8 of shape (seqlen_q, seqlen_kv) = {(seqlen_q, seqlen_kv)}; "
                             f"got {mask.shape=}, {mask.dtype=}")
        mask = cp.ascontiguousarray(mask.view(np.uint8))
    scale = head_dim ** -0.5 if scale is None else float(scale)
    q, k, v = (cp.ascontiguousarray(x) for x in (q, k, v))
    suffix = "f32" if q.dtype == np.float32 else "f16"
    dev = cp.cuda.Device().id
    group, i32 = np.int32(heads_q // heads_kv), np.int32

    s = cp.empty((batch, heads_q, seqlen_q, seqlen_kv), cp.float32)  # (B, Hq, Lq, Lk)
    grid = (-(-seqlen_kv // _TILE), -(-seqlen_q // _TILE), batch * heads_q)
    _kernel("qk_scores", f"qk_scores_{suffix}", dev)(
        grid, (_TILE, _TILE), (q, k, s, i32(seqlen_q), i32(seqlen_kv), i32(head_dim), i32(heads_q), group,
                               np.float32(scale)))

    p = cp.empty_like(s)
    lse = cp.empty((batch, heads_q, seqlen_q), cp.float32)
    mask_arg = mask if mask is not None else np.uintp(0)  # a null pointer: no explicit mask
    _kernel("softmax_rows", "softmax_rows", dev)(
        (batch * heads_q * seqlen_q,), (_SOFTMAX_THREADS,),
        (s, p, lse, mask_arg, i32(seqlen_q), i32(seqlen_kv), i32(bool(causal))))

    o = cp.empty((batch, heads_q, seqlen_q, head_dim_v), q.dtype)  # (B, Hq, Lq, Dv)
    grid = (-(-head_dim_v // _TILE), -(-seqlen_q // _TILE), batch * heads_q)
    _kernel("pv", f"pv_{suffix}", dev)(
        grid, (_TILE, _TILE), (p, v, o, i32(seqlen_q), i32(seqlen_kv), i32(head_dim_v), i32(heads_q), group))
    return o, lse


def variant_mask(variant: str, seqlen_q: int, seqlen_kv: int, causal: bool = False, **params):
    """The (seqlen_q, seqlen_kv) uint8 mask of an attnsim variant, from the simulator's own definition
    (`Mask.mask_mod`, the one the Triton kernels and the references read): pass it as `mask=` to
    `eager_attention` (with causal=False: causality is already in it)."""
    from .plan import mask_of
    m = mask_of(variant, params, causal, seqlen_q, seqlen_kv)
    return np.asarray(m.mask_mod(np.arange(seqlen_q)[:, None], np.arange(seqlen_kv)[None, :], seqlen_q, seqlen_kv),
                      dtype=np.uint8)
