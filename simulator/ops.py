"""Operations as plain descriptions: what a problem lowers to, before anything is priced.

`model.lower` turns a problem into a list of these: the `Attention` core and the work around it that
a layout or a mask describes (projections, gates, permutations, predictors: `Gemm`, `Pointwise`,
`Matmuls`); `model.price` turns each into kernel costs through `rates` (later: `Collective`). `Tile` is a
kernel's tile configuration and `Work` the useful work of an op per unit (what the bound prices).
Nothing here reads a hardware figure.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Tile:
    block_m: int  # query rows per CTA (BLOCK_M)
    block_n: int  # kv rows per inner iteration (BLOCK_N)
    num_warps: int  # threads per CTA = 32 * num_warps
    stages: int  # K/V tiles in flight (pipeline depth)

    def __str__(self):
        return f"{self.block_m}x{self.block_n} w{self.num_warps} s{self.stages}"


@dataclass
class Work:
    """Useful work of an op, per unit. Tensor work is a list of (flops, dtype, accum)."""
    tensor: list = field(default_factory=list)
    exp: float = 0.0
    fp32: float = 0.0
    smem_bytes: float = 0.0
    hbm_bytes: float = 0.0
    piece_tensor: list = field(default_factory=list)  # the largest indivisible piece
    piece_exp: float = 0.0
    strategy: str = ""  # train: how the backward gets P ("recompute P" or "keep P in HBM")

    def __add__(self, other: "Work") -> "Work":
        def piece_flops(p):
            return sum(f for f, *_ in p)
        return Work(tensor=self.tensor + other.tensor, exp=self.exp + other.exp, fp32=self.fp32 + other.fp32,
                    smem_bytes=self.smem_bytes + other.smem_bytes, hbm_bytes=self.hbm_bytes + other.hbm_bytes,
                    piece_tensor=max(self.piece_tensor, other.piece_tensor, key=piece_flops),
                    piece_exp=max(self.piece_exp, other.piece_exp), strategy=self.strategy or other.strategy)


@dataclass(frozen=True)
class Gemm:
    """C[m, n] = A[m, k] B[k, n], `batch` independent problems. `weight`: B is learned (one matrix,
    or one per batch entry when `batch` > 1); `input`: the name of A (for the saved activations).
    `b_shared`: B is one matrix read once for the whole batch (default: when batch == 1);
    `accum`/`out_dtype`: the accumulate type and the output's dtype (default: the op's dtype)."""
    name: str
    m: int
    n: int
    k: int
    batch: int = 1
    weight: bool = True
    input: str = ""
    b_shared: bool | None = None
    accum: str = "fp32"
    out_dtype: str | None = None

    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k * self.batch

    def work(self, s: int, backward: bool) -> Work:
        """Compulsory work: the FLOPs, each operand read once and the result written once (train:
        dX = dY W^T and, for a weight, dW = X^T dY). Tensor dtypes are filled in by the caller."""
        m, n, k, b = self.m, self.n, self.k, self.batch
        shapes = [(m, n, k)] if not backward else [(m, k, n)] + ([(k, n, m)] if self.weight else [])
        return Work(tensor=[(2.0 * x * y * z * b, None, self.accum) for x, y, z in shapes],
                    hbm_bytes=float(sum((x * z + z * y + x * y) * s * b for x, y, z in shapes)))


@dataclass(frozen=True)
class Pointwise:
    """A memory-streaming op. Bytes read and written, FP32 instructions (an FMA is one), SFU ops
    (exp, rsqrt, sin, cos), parameters; `saved`: bytes the backward needs (default: what it reads).
    `runs`: ((count, run_bytes), ...), the part of `read` + `write` that moves as `count` separate
    contiguous runs of `run_bytes` each (a gather or a scatter, not one stream); the pricer rounds
    each run to the memory's fetch granularity (`pricing.run_waste_bytes`). Empty: a stream."""
    name: str
    read: float
    write: float
    fp32_ops: float = 0.0
    sfu_ops: float = 0.0
    params: int = 0
    saved: float | None = None
    input: str = ""
    runs: tuple = ()

    def work(self, backward: bool) -> Work:
        if not backward:
            return Work(exp=self.sfu_ops, fp32=self.fp32_ops, hbm_bytes=float(self.read + self.write))
        saved = self.read if self.saved is None else self.saved
        return Work(exp=self.sfu_ops, fp32=2 * self.fp32_ops, hbm_bytes=float(self.write + saved + self.read))


@dataclass(frozen=True)
class Attention:
    """The attention core: its workload (shapes, phase, score function) and mask (which pairs and
    tiles are live). A kernel family prices it as its forward (and backward), decode step or eager
    kernels (`model.attention_kernels`)."""
    name: str
    workload: object  # workload.Workload
    mask: object  # masks.Mask


@dataclass(frozen=True)
class Matmuls:
    """Plain tensor-core work of `flops` FLOPs with no modeled memory traffic (a learned predictor)."""
    name: str
    flops: float


COLLECTIVE_OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "p2p")


@dataclass(frozen=True)
class Collective:
    """Communication among `group_size` ranks: `op` one of COLLECTIVE_OPS, `bytes` the whole buffer n of
    the α–β formulas (all-reduce: the tensor each rank holds; all-gather / reduce-scatter: the gathered
    tensor; all-to-all: what each rank holds before the exchange; p2p: what one rank sends), `link`
    the name of the link it crosses ("intra_node" or "inter_node"), `count` how many times it runs."""
    name: str
    op: str
    bytes: float
    group_size: int
    link: str = "intra_node"
    count: int = 1
