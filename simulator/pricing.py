"""The pricer: operations and kernels to costs, at the rates of `rates.rates` (no other source).

`KernelCost` is one kernel's predicted cost; `elementwise` prices a memory-streaming kernel,
`matmuls_kernel` plain tensor-core work, `gemm` a (batched) GEMM over CUTLASS-like output tiles
(waves, tile quantization), `op_kernels` an operation of `ops` (Gemm, Pointwise, Matmuls); the
attention core is priced in `model` (`model.price` walks a lowered problem) from the same `Rates`.

GEMM: C[M, N] = A[M, K] B[K, N], `batch` independent problems. One CTA per output tile; the tile is
chosen among a cuBLAS/CUTLASS-like candidate list by predicted time after the shared legality
check. FLOPs: useful 2*M*N*K*batch; executed 2*ceil(M/tm)*tm*ceil(N/tn)*tn*ceil(K/tk)*tk*batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .dtypes import DTYPE_BYTES
from .errors import AttnsimError
from .formulas import is_expr, largest, num
from .masks import _cdiv, tile_rows
from .ops import COLLECTIVE_OPS, Gemm, Matmuls, Pointwise, Tile
from .rates import Rates


# -- results -----------------------------------------------------------------------------
@dataclass
class KernelCost:
    name: str
    time_s: float
    flops: int  # executed
    useful_flops: int
    hbm_bytes: int
    l2_bytes: int = 0
    bound: str = ""  # the unit that limits this kernel's predicted time
    unit_times_s: dict = field(default_factory=dict)
    ctas: int = 0
    ctas_per_sm: int = 0
    waves: float = 0.0
    wave_efficiency: float = 1.0
    tile: str = ""
    tiles: dict | None = None
    smem_bytes: int = 0
    regs_per_thread: int = 0
    splits: int = 1
    tiles_iterated: int = 0  # tiles the kernel visits (live ones, or a fixed box of them per CTA)
    schedule: str = ""  # how the makespan was computed: "lpt" (exact list schedule) or "closed-form"
    tile_obj: Tile | None = field(default=None, repr=False)
    role: str = ""  # the attention op's kernels: "forward", "backward", "decode", "scores" (eager's QK^T)

    def to_json(self):
        out = {"name": self.name, "time_s": self.time_s, "flops": int(self.flops),
               "useful_flops": int(self.useful_flops), "hbm_bytes": int(self.hbm_bytes),
               "l2_bytes": int(self.l2_bytes), "bound": self.bound,
               "unit_times_s": self.unit_times_s, "ctas": int(self.ctas),
               "ctas_per_sm": int(self.ctas_per_sm), "waves": self.waves,
               "wave_efficiency": self.wave_efficiency, "tile": self.tile or None}
        if self.tiles is not None:
            out["tiles"] = {k: int(v) for k, v in self.tiles.items()}
            out["tiles_iterated"] = int(self.tiles_iterated)
        if self.splits != 1:
            out["splits"] = self.splits
        if self.schedule:
            out["schedule"] = self.schedule
        return out


# -- kernels -----------------------------------------------------------------------------
def run_waste_bytes(r: Rates, runs):
    """Device-memory bytes a gather or scatter moves beyond its useful ones (`Pointwise.runs`:
    ((count, run_bytes), ...)). Device memory moves whole units of the profile's
    `l2_fetch_granularity_bytes` G (a 32-byte sector on NVIDIA GPUs: CUDA C++ Best Practices Guide,
    "Coalesced Access to Global Memory"), so a contiguous run costs every unit it touches. Runs of L
    bytes that tile a contiguous tensor (the allocation G-aligned) start at offsets that are the
    multiples of g = gcd(L, G), evenly spread over a unit: on average a run touches 1 + (L - g) / G
    units, G + L - g bytes, so it wastes G - g bytes (none when L is a multiple of G; the efficiency is
    L / (G + L - g)). No reuse of a neighbour's partly read unit from L2 is assumed (the CUDA guide's
    strided-access analysis). Scalars or arrays of counts; 0 where the profile has no granularity."""
    unit = r.hw.l2_fetch_granularity_bytes
    if not unit:
        return 0
    return sum(count * (unit - math.gcd(int(run), unit)) for count, run in runs)


def elementwise_units(r: Rates, read_bytes, write_bytes, exps=0.0, fp32_ops=0.0, runs=()) -> dict:
    """A memory-streaming kernel's unit times (scalars or arrays): HBM traffic (a gather's or a
    scatter's `runs` rounded to the fetch granularity: `run_waste_bytes`), exps, FP32 work, and the
    fill-and-drain latency; the kernel takes the launch overhead plus the largest."""
    moved = read_bytes + write_bytes + run_waste_bytes(r, runs)
    return {"hbm": moved / r.hbm_bytes_per_s, "exp": exps / r.exp_device(),
            "fp32": fp32_ops / r.fp32_ops_device(), "latency": 2 * r.dram_latency_s}


def elementwise_time(r: Rates, read_bytes, write_bytes, exps=0.0, fp32_ops=0.0, runs=()):
    """`elementwise`'s time over arrays of configurations (or as a formula: `formulas.Expr`)."""
    units = elementwise_units(r, read_bytes, write_bytes, exps, fp32_ops, runs)
    if any(is_expr(u) for u in units.values()):
        return r.launch_overhead_s + largest(units.values())
    return r.launch_overhead_s + np.maximum.reduce(np.broadcast_arrays(*(np.asarray(u, dtype=float)
                                                                         for u in units.values())))


def elementwise(name, r: Rates, read_bytes, write_bytes, exps=0.0, fp32_ops=0.0, flops=0, runs=()) -> KernelCost:
    """A memory-streaming kernel (softmax, preprocess, convert, combine, reductions; a token
    permutation, whose `runs` gather or scatter). `hbm_bytes` counts what device memory moves."""
    units = elementwise_units(r, read_bytes, write_bytes, exps, fp32_ops, runs)
    limit = max(units, key=units.get)
    return KernelCost(name=name, time_s=r.launch_overhead_s + largest(units.values()), flops=int(flops), useful_flops=0,
                      hbm_bytes=int(read_bytes + write_bytes + run_waste_bytes(r, runs)), bound=limit,
                      unit_times_s=units)


def matmuls_kernel(name, r: Rates, flops: float, dtype: str) -> KernelCost:
    """A kernel of plain tensor-core work (a learned predictor), at the dense rate."""
    t = flops / r.mma_device(dtype, "fp32")
    return KernelCost(name=name, time_s=r.launch_overhead_s + t, flops=int(flops), useful_flops=int(flops),
                      hbm_bytes=0, bound="tensor", unit_times_s={"tensor": t})


# (tile_m, tile_n, tile_k, warps, stages): CUTLASS's default SM80/SM90 threadblock shapes
# (cutlass/library/scripts/generator.py tile descriptions), largest first.
GEMM_TILES = ((128, 256, 64, 8, 3), (256, 128, 64, 8, 3), (128, 128, 64, 4, 4),
              (128, 64, 64, 4, 4), (64, 128, 64, 4, 4), (64, 64, 64, 4, 4))


def gemm(name: str, r: Rates, m: int, n: int, k: int, batch: int, dtype: str, accum: str = "fp32",
         out_dtype: str | None = None, useful_flops: int | None = None, b_shared: bool = False, mask=None,
         role: str = ""):
    """Cost of a (batched) GEMM at rates `r` (a library kernel's: `rates(hw)`). `b_shared`: B is one
    matrix for the whole batch (a weight). `mask`: classify the score tiles it computes (eager)."""
    hw = r.hw
    s = DTYPE_BYTES[dtype]
    so = DTYPE_BYTES[out_dtype or dtype]
    rate = r.mma_per_sm(dtype, accum)
    lat = r.dram_latency_s
    hbm = batch * (m * k * s + m * n * so) + (1 if b_shared else batch) * k * n * s
    useful = 2 * m * n * k * batch if useful_flops is None else useful_flops
    best = None
    for tm, tn, tk, warps, stages in GEMM_TILES:
        smem = stages * (tm + tn) * tk * s
        if smem > hw.smem_per_block_bytes or 32 * warps > hw.max_threads_per_sm:
            continue
        ctas = batch * _cdiv(m, tm) * _cdiv(n, tn)
        kk = min(hw.smem_per_sm_bytes // smem, hw.max_threads_per_sm // (32 * warps), hw.max_ctas_per_sm,
                 max(1, _cdiv(ctas, hw.sm_count)))  # a small grid spreads over the SMs first
        slots = hw.sm_count * kk
        k_steps = _cdiv(k, tk)
        t_cta = 2 * lat + largest((2.0 * tm * tn * k_steps * tk / rate * kk, k_steps * lat / stages))
        makespan = np.ceil(ctas / slots) * t_cta
        l2 = ctas * (tm + tn) * k_steps * tk * s + batch * m * n * so
        t_hbm = hbm / r.hbm_bytes_per_s
        t_l2 = l2 / r.l2_bytes_per_s if r.l2_bytes_per_s else 0.0
        time_s = r.launch_overhead_s + largest((makespan, t_hbm, t_l2))
        flops = 2 * ctas * tm * tn * k_steps * tk  # exact: Python integers
        # fastest first; among equally fast (HBM-bound) tiles, the one that wastes fewer FLOPs
        if best is None or (time_s, flops) < (best[0], best[1].flops):
            units = {"tensor": flops / (rate * hw.sm_count), "hbm": t_hbm, "schedule": num(makespan)}
            if t_l2:
                units["l2"] = t_l2
            limit = "hbm" if t_hbm >= max(makespan, t_l2) else "l2" if t_l2 >= makespan else (
                "tensor" if 2.0 * tm * tn * k_steps * tk / rate * kk >= k_steps * lat / stages else "latency")
            tiles, n_tiles = None, 0
            if mask is not None:  # classify the score tiles this GEMM computes (eager attention)
                f, p = tile_rows(mask, m, n, tm, tn)
                total = _cdiv(m, tm) * _cdiv(n, tn)
                tiles = {"full": int(f.sum()) * batch, "partial": int(p.sum()) * batch,
                         "empty": (total - int(f.sum()) - int(p.sum())) * batch}
                n_tiles = total * batch  # a GEMM computes every tile, live or not
            best = (time_s, KernelCost(
                name=name, time_s=num(time_s), flops=int(flops), useful_flops=int(useful), hbm_bytes=int(hbm),
                l2_bytes=int(l2), bound=limit, unit_times_s=units, ctas=int(ctas), ctas_per_sm=int(kk),
                waves=ctas / slots, wave_efficiency=ctas / (np.ceil(ctas / slots) * slots),
                tile=f"{tm}x{tn}x{tk} w{warps} s{stages}", tiles=tiles, tiles_iterated=n_tiles, smem_bytes=smem,
                role=role))
    if best is None:
        raise AttnsimError(f"no GEMM tile fits {hw.name}'s {hw.smem_per_block_bytes} B of shared memory per block")
    return best[1]


# -- operations -----------------------------------------------------------------------
def op_kernels(op, r: Rates, dtype: str, backward: bool = False) -> list:
    """The kernels of one operation at rates `r`: a Gemm (train: dX and, for a weight, dW), a
    Pointwise op (train: its backward), plain Matmuls."""
    if isinstance(op, Gemm):
        shared = op.batch == 1 if op.b_shared is None else op.b_shared
        if not backward:
            return [gemm(op.name, r, op.m, op.n, op.k, op.batch, dtype, op.accum, out_dtype=op.out_dtype,
                         b_shared=shared)]
        out = [gemm(op.name + "_dx", r, op.m, op.k, op.n, op.batch, dtype, op.accum, b_shared=op.batch == 1)]
        if op.weight:
            out.append(gemm(op.name + "_dw", r, op.k, op.n, op.m, op.batch, dtype, op.accum))
        return out
    if isinstance(op, Pointwise):
        if not backward:
            return [elementwise(op.name, r, read_bytes=op.read, write_bytes=op.write, exps=op.sfu_ops,
                                fp32_ops=op.fp32_ops, runs=op.runs)]
        saved = op.read if op.saved is None else op.saved
        return [elementwise(op.name + "_bwd", r, read_bytes=op.write + saved, write_bytes=op.read,
                            exps=op.sfu_ops, fp32_ops=2 * op.fp32_ops, runs=op.runs)]
    if isinstance(op, Matmuls):
        return [matmuls_kernel(op.name, r, op.flops, dtype)]
    raise TypeError(f"not an operation: {op!r}")


def collective_coefficients(op: str, p: int, in_switch: bool = False) -> tuple:
    """(c, k) of a collective on p ranks: t = c x n / bw + k x α (`collective_time`)."""
    if op not in COLLECTIVE_OPS:
        raise AttnsimError(f"unknown collective {op!r}; allowed: {', '.join(COLLECTIVE_OPS)}")
    if p <= 1:
        return 0.0, 0.0
    if op == "all_reduce":
        return (1.0, 2.0) if in_switch else (2 * (p - 1) / p, 2.0 * (p - 1))
    if op == "p2p":
        return 1.0, 1.0
    return (p - 1) / p, float(p - 1)


def collective_time(op, lr, peak: bool = False) -> float:
    """One call of a `Collective` on link rates `lr` (rates.link_rates), ring algorithms, p ranks, n
    bytes, bw per direction per GPU, α per step (docs/design.md, "Clusters and collectives"):

        all_reduce      2(p-1)/p · n/bw + 2(p-1)α    (in-switch reduction: n/bw + 2α)
        all_gather      (p-1)/p · n/bw + (p-1)α       (reduce_scatter the same)
        all_to_all      (p-1)/p · n/bw + (p-1)α
        p2p             n/bw + α

    A link without peer-to-peer (`lr.p2p` false) stages every transfer through host memory: each byte
    crosses PCIe twice and each step pays two latencies (`link_rates` folds that into bw and α). On a
    mesh, bw is capped by the direct links the group uses (`LinkRates.bandwidth`).
    `peak`: the speed-of-light term only (the bandwidth term at the link's peak, no latency)."""
    p, n = op.group_size, float(op.bytes)
    if p <= 1 or n <= 0:
        return 0.0
    c, k = collective_coefficients(op.op, p, lr.in_switch_reduction)
    bw = lr.bandwidth(p, single_peer=op.op == "p2p", peak=peak)
    return c * n / bw + (0.0 if peak else k * lr.latency_s)
