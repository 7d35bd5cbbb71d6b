"""The attention problem: shapes, dtypes, phase. Validated on construction (errors name the field)."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace

from .errors import AttnsimError
from .hardware import DTYPE_BYTES

PHASES = ("prefill", "decode", "train")
COMPUTE_DTYPES = ("bf16", "fp16", "fp8")
KV_DTYPES = ("bf16", "fp16", "fp8")

# Limits of one prediction, stated in every refusal. Counts are exact integers below them: every
# count the model forms (pairs, tiles, FLOPs, bytes) stays inside int64 when the padded dense work
# of the call stays inside MAX_WORK_FLOPS, and per-tile arrays stay small enough to answer in about
# a second (a sequence of MAX_TOKENS tokens is 131,072 tiles of 128).
MAX_TOKENS = 1 << 24  # tokens per sequence (16,777,216; seqlen_q, seqlen_kv, each varlen length)
MAX_BATCH = 1 << 24  # sequences per call
MAX_VARLEN_SEQUENCES = 1 << 16  # sequences of a varlen batch (each priced by its own length)
MAX_HEADS = 1 << 16  # query or kv heads
MAX_HEAD_DIM = 1 << 16  # channels per head
MAX_D_MODEL = 1 << 20  # the model width of --scope layer
MAX_WORK_FLOPS = 1 << 62  # the padded dense FLOPs of the call (forward + backward), ~4.6e18


def _pow2_ceil(x: int) -> int:
    return 1 << (int(x) - 1).bit_length()


def check_limit(name: str, value, limit: int, what: str):
    """Refuse a count past its limit in one line that states the limit."""
    if value > limit:
        raise AttnsimError(f"{name}={value} exceeds attnsim's limit of {limit:,} {what}")


@dataclass(frozen=True)
class Workload:
    """One call of the attention op of one layer.

    Args:
        batch: sequences in the batch (>= 1).
        seqlen_q: query tokens per sequence; in decode, the query tokens of one step (default 1).
        seqlen_kv: key/value tokens per sequence (the context in decode); defaults to seqlen_q.
        heads_q: query heads. heads_kv: key/value heads (MHA: = heads_q; GQA: divides heads_q; MQA: 1).
        head_dim_qk: head dim of Q and K. head_dim_v: of V and O (defaults to head_dim_qk).
        dtype: compute dtype of Q, K, V, O (bf16, fp16, fp8). kv_dtype: storage of K/V (the KV cache).
        qk_accum, pv_accum: accumulate type of the QK^T and PV matmuls (fp32 or fp16).
        causal: bottom-right aligned causal mask (FlashAttention's convention).
        phase: prefill (forward), decode (one step), train (forward + backward).
    """
    batch: int = 1
    seqlen_q: int = 4096
    seqlen_kv: int | None = None
    heads_q: int = 32
    heads_kv: int | None = None
    head_dim_qk: int = 128
    head_dim_v: int | None = None
    dtype: str = "bf16"
    kv_dtype: str | None = None
    qk_accum: str = "fp32"
    pv_accum: str = "fp32"
    causal: bool = False
    phase: str = "prefill"
    seqlens: tuple | None = None  # varlen: per-sequence lengths (decode: contexts); sets batch and seqlen
    varlen: str = "packed"  # varlen layout: "packed" (cu_seqlens, padding-free) or "padded" (to the longest)
    v_in_k: bool = False  # V is the first head_dim_v channels of K (MLA's latent cache; FA3's q_v path)
    qk_matmuls: int = 1  # QK^T-shaped matmuls per score (2: a relative-position term Q R^T, a two-pass statistic)
    extra_k: str = "per_sequence"  # the operand of the extra QK^T-shaped matmuls: "same_k" (a second query against the
    # K tile in hand), "per_sequence" (K read again), "per_layer" (one K-wide table for the whole batch, e.g. R)
    score_fp32_ops: float = 0.0  # extra FP32 instructions per score of the forward (a score function's own work)
    score_sfu_ops: float = 0.0  # extra special-function (exp/sin/cos) operations per score of the forward
    aggregated: bool = field(default=False, repr=False)  # internal: one sequence standing for a batch's tokens
    # (`aggregate`), so the per-sequence limits do not apply to it (its batch was checked)

    def __post_init__(self):
        set_ = object.__setattr__
        if self.seqlens is not None:
            lens = tuple(self.seqlens)
            check_limit("len(seqlens)", len(lens), MAX_VARLEN_SEQUENCES, "sequences of a varlen batch (2^16)")
            if not lens or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in lens):
                raise AttnsimError(f"seqlens={self.seqlens!r}: expected positive integers, one per sequence")
            if self.varlen not in ("packed", "padded"):
                raise AttnsimError(f"varlen={self.varlen!r}; allowed: packed, padded")
            set_(self, "seqlens", lens)
            set_(self, "batch", len(lens))
            set_(self, "seqlen_kv", max(lens))
            if self.phase != "decode":
                set_(self, "seqlen_q", max(lens))
        if self.seqlen_kv is None:
            set_(self, "seqlen_kv", self.seqlen_q)
        if self.heads_kv is None:
            set_(self, "heads_kv", self.heads_q)
        if self.head_dim_v is None:
            set_(self, "head_dim_v", self.head_dim_qk)
        if self.kv_dtype is None:
            set_(self, "kv_dtype", self.dtype)
        for name in ("batch", "seqlen_q", "seqlen_kv", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v", "qk_matmuls"):
            v = getattr(self, name)
            if type(v) is not int:  # numpy integers too, as Python integers (exact, unbounded)
                if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                    raise AttnsimError(f"{name}={v!r} must be a positive integer")
                v = int(v)
                set_(self, name, v)
            if v < 1:
                raise AttnsimError(f"{name}={v!r} must be a positive integer")
        if isinstance(self.causal, str) or self.causal not in (True, False):
            raise AttnsimError(f"causal={self.causal!r} must be true or false")
        set_(self, "causal", bool(self.causal))
        if self.phase == "decode" and self.seqlen_q > (min(self.seqlens) if self.seqlens else self.seqlen_kv):
            raise AttnsimError(f"decode: {self.seqlen_q} query tokens per step exceed the context of "
                               f"{min(self.seqlens) if self.seqlens else self.seqlen_kv} tokens; a step's tokens are "
                               f"part of its context")
        if not self.aggregated:
            self._check_size()
        if self.heads_q % self.heads_kv:
            raise AttnsimError(f"heads_q={self.heads_q} is not divisible by heads_kv={self.heads_kv}; "
                               f"allowed kv heads: divisors of {self.heads_q}")
        if self.dtype not in COMPUTE_DTYPES:
            raise AttnsimError(f"dtype={self.dtype!r}; allowed: {', '.join(COMPUTE_DTYPES)}")
        if self.kv_dtype not in KV_DTYPES:
            raise AttnsimError(f"kv_dtype={self.kv_dtype!r}; allowed: {', '.join(KV_DTYPES)}")
        if DTYPE_BYTES[self.kv_dtype] > DTYPE_BYTES[self.dtype]:
            raise AttnsimError(f"kv_dtype={self.kv_dtype!r} is wider than dtype={self.dtype!r}; the KV cache is "
                               f"stored at the compute precision or below (allowed: {self.dtype}"
                               f"{', fp8' if self.dtype != 'fp8' else ''})")
        for name in ("qk_accum", "pv_accum"):
            if getattr(self, name) not in ("fp32", "fp16"):
                raise AttnsimError(f"{name}={getattr(self, name)!r}; allowed: fp32, fp16")
        if self.phase not in PHASES:
            raise AttnsimError(f"phase={self.phase!r}; allowed: {', '.join(PHASES)}")
        if self.extra_k not in ("same_k", "per_sequence", "per_layer"):
            raise AttnsimError(f"extra_k={self.extra_k!r}; allowed: same_k, per_sequence, per_layer")
        if self.v_in_k and not self.head_dim_v < self.head_dim_qk:
            raise AttnsimError(f"v_in_k: head_dim_v={self.head_dim_v} must be smaller than head_dim_qk="
                               f"{self.head_dim_qk} (V is a slice of K)")
        if self.v_in_k and self.phase == "train":
            raise AttnsimError("a latent cache read as K and V (absorbed MLA) is an inference form; "
                               "train runs the up-projected form")
        for name in ("score_fp32_ops", "score_sfu_ops"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise AttnsimError(f"{name}={v!r} must be a finite number >= 0")
        if self.phase == "train" and self.kv_dtype != self.dtype:
            raise AttnsimError(f"kv_dtype={self.kv_dtype!r} differs from dtype={self.dtype!r}; "
                               f"a separate KV-cache dtype applies to prefill and decode only")

    def _check_size(self):
        """The limits above, in exact integers: per-field caps, then the call's padded dense work —
        every (query, key) pair of every sequence and head, lengths padded to 256 and head dims to a
        power of two, at the backward's FLOPs per pair (the largest of any phase)."""
        for name in ("seqlen_q", "seqlen_kv"):
            check_limit(name, getattr(self, name), MAX_TOKENS, "tokens per sequence (2^24)")
        check_limit("batch", self.batch, MAX_BATCH, "sequences (2^24)")
        for name in ("heads_q", "heads_kv"):
            check_limit(name, getattr(self, name), MAX_HEADS, "heads (2^16)")
        for name in ("head_dim_qk", "head_dim_v", "qk_matmuls"):
            check_limit(name, getattr(self, name), MAX_HEAD_DIM, "(2^16)")
        pad = lambda n: -(-n // 256) * 256  # noqa: E731
        pairs = sum(pad(q) * pad(k) * m for q, k, m in self.real_segments())
        per_pair = 2 * (3 * self.qk_matmuls * _pow2_ceil(self.head_dim_qk) + 2 * _pow2_ceil(self.head_dim_v))
        work = pairs * self.heads_q * per_pair
        if work > MAX_WORK_FLOPS:
            raise AttnsimError(f"this call is too large to price exactly: about {work:.2g} FLOPs (batch x heads x "
                               f"seqlen_q x seqlen_kv x FLOPs per pair, padded); attnsim prices up to "
                               f"{MAX_WORK_FLOPS:.2g} (2^62) per call: lower --batch, --heads or the sequence length")

    @property
    def group(self) -> int:
        """Query heads per kv head (1 for MHA)."""
        return self.heads_q // self.heads_kv

    @property
    def kv_dims(self) -> int:
        """Channels of one K/V row pair per kv head: d + dv, or d when V is a slice of K."""
        return self.head_dim_qk if self.v_in_k else self.head_dim_qk + self.head_dim_v

    @property
    def k_streams(self) -> int:
        """K-wide operands a kernel streams per key: K, and one more per extra QK^T-shaped matmul unless
        that matmul reuses the K tile in hand."""
        return 1 if self.extra_k == "same_k" else self.qk_matmuls

    @property
    def stream_dims(self) -> int:
        """Channels a kernel streams per key per kv head (through shared memory / L2): its K-wide
        operands and V, unless V is a slice of K."""
        return self.k_streams * self.head_dim_qk + (0 if self.v_in_k else self.head_dim_v)

    @property
    def seq_dims(self) -> int:
        """Channels per key per kv head that each sequence must bring from HBM (a per-layer table apart)."""
        k = 1 if self.extra_k == "per_layer" else self.k_streams
        return k * self.head_dim_qk + (0 if self.v_in_k else self.head_dim_v)

    def shared_operand_bytes(self, live_keys=None) -> int:
        """A per-layer K-wide table (relative embeddings R), read once for the whole batch."""
        if self.extra_k != "per_layer" or self.qk_matmuls == 1:
            return 0
        keys = self.seqlen_kv if live_keys is None else live_keys
        return (self.qk_matmuls - 1) * self.heads_kv * keys * self.head_dim_qk * self.kv_dtype_bytes

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def kv_dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.kv_dtype]

    def real_segments(self) -> list:
        """(seqlen_q, seqlen_kv, count): the distinct shapes of the batch's sequences."""
        if self.seqlens is None:
            return [(self.seqlen_q, self.seqlen_kv, self.batch)]
        counts = {}
        for n in self.seqlens:
            counts[n] = counts.get(n, 0) + 1
        return [(self.seqlen_q if self.phase == "decode" else n, n, m) for n, m in sorted(counts.items())]

    def segments(self) -> list:
        """The shapes the kernels run: the real ones (packed varlen), or every sequence padded to the
        longest (padded varlen)."""
        if self.seqlens is not None and self.varlen == "padded":
            return [(self.seqlen_q, self.seqlen_kv, self.batch)]
        return self.real_segments()

    def aggregate(self, segments=None) -> "Workload":
        """One sequence holding all the segments' tokens (batch 1, lengths summed): what every
        quantity linear in batch x length (bytes, tokens, FLOPs of live pairs counted apart) needs."""
        segs = tuple(self.segments() if segments is None else segments)
        memo = self.__dict__.setdefault("_aggregates", {})  # a frozen value: its aggregates never change
        if segs not in memo:
            # a copy with four fields changed: this workload validated, so the copy needs no new check
            agg = object.__new__(Workload)
            agg.__dict__.update((k, v) for k, v in self.__dict__.items() if k != "_aggregates")
            for k, v in (("batch", 1), ("seqlen_q", sum(q * m for q, _, m in segs)),
                         ("seqlen_kv", sum(k * m for _, k, m in segs)), ("seqlens", None), ("aggregated", True)):
                object.__setattr__(agg, k, v)
            memo[segs] = agg
        return memo[segs]

    def kv_cache_bytes(self) -> int:
        """K and V of every sequence's tokens: sum of seqlen_kv * heads_kv * kv_dims * bytes."""
        return sum(k * m for _, k, m in self.real_segments()) * self.heads_kv * self.kv_dims * self.kv_dtype_bytes

    def with_(self, **kw) -> "Workload":
        return replace(self, **kw)
