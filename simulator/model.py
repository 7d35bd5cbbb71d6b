"""The prediction: a tile-level model of a named kernel family (the vectorized path, `vectorized`,
prices arrays of configurations with these same functions).

time_s of a kernel = launch overhead + max(makespan of its CTAs on the SM slots,
                                            HBM bytes / HBM bandwidth, L2 bytes / L2 bandwidth if sourced)

A CTA's duration = 2 x DRAM latency (fill and drain) + sum over its tiles of max(t_tile, latency / stages):
  t_tile = max(t_smem, combine(t_tensor, t_softmax) + exposed x t_smem),
           combine(a, b) = max(a, b) + (1 - overlap) min(a, b) (overlap: the family's; exposed: the calibration's
           `smem_exposed`, 0 uncalibrated), each unit at the SM's rate (`rates`), shared by the k resident CTAs;
  latency / stages: a tile cannot arrive faster than the DRAM latency over the `stages` tiles in flight
           (Little's law: the per-SM ceiling that makes split-KV pay in decode).
The makespan of n CTAs on `slots` = SMs x k slots is the closed form max(longest CTA, total / slots +
shortest x (ceil(n / slots) - n / slots)) (`schedule.closed_makespan`).
Executed FLOPs count every element of every visited tile with padded head dims; useful FLOPs
count live pairs only. Every rate comes from `rates.rates(hw, family, calibration)`.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace
from functools import reduce

import numpy as np

from . import schedule
from .bound import Bound, attention_work_alternatives, min_bound, smallest_bound
from .errors import AttnsimError, UnsupportedCore
from .formulas import is_expr, largest, num, smallest
from .families import (FAMILIES, Family, Legality, bwd_tile_candidates, can_implement, check_family, compiled_tile,
                       decode_block_m, decode_tile_candidates, fwd_tile_candidates, get_family, packs_gqa_decode,
                       smem_readers)
from .hardware import Hardware, load_hardware
from .layouts import Layout, check_rope, core_saved_bytes, layer_accounting, layer_ops, standard
from .masks import CausalMask, DenseMask, Mask, WindowMask, mask_for, mask_sums, tile_cols, tile_rows
from .ops import Attention, Tile, Work
from .pricing import KernelCost, elementwise, gemm, op_kernels
from .calibrations import choose
from .rates import Rates, rates
from .workload import MAX_D_MODEL, Workload, check_limit


# -- results -----------------------------------------------------------------------------
MAIN_ROLES = ("forward", "decode", "scores")  # the kernels whose tiles a prediction reports


@dataclass
class Prediction:
    workload: Workload
    hardware: Hardware
    family: Family
    variant: str
    bound: Bound
    kernels: list
    kv_cache_bytes: int
    memory_bytes: int
    useful_flops: int
    rates: Rates | None = field(default=None, repr=False)  # what the family's kernels were priced at
    scope: str = "attention"
    notes: list = field(default_factory=list)
    resolved: dict = field(default_factory=dict)
    mask_name: str = ""
    speedup: dict | None = None  # sparse masks: see speedup_over_dense
    varlen: dict | None = None  # varlen batches: packed and padded side by side
    works: list | None = field(default=None, repr=False)  # the op's useful Work (bound alternatives)
    activation_bytes: int | None = None  # train: what the forward saves for the backward
    layout: dict | None = None  # the variant's resolved head layout (shapes)
    alternative: dict | None = None  # the variant's other implementation (MoH: ideal vs masked)
    contrast: dict | None = None  # eager attention: the fused kernel on the same problem
    calibration_info: dict | None = None  # the calibration applied (calibrations.choose): group, rows, errors

    @property
    def time_s(self) -> float:
        return sum(k.time_s for k in self.kernels)

    @property
    def flops(self) -> int:
        return sum(int(k.flops) for k in self.kernels)

    @property
    def hbm_bytes(self) -> int:
        return sum(int(k.hbm_bytes) for k in self.kernels)

    @property
    def calibrated(self) -> bool:
        return bool(self.rates and self.rates.calibrated)

    @property
    def clock_hz(self) -> float:
        """The clock the prediction assumed (the profile's sustained clock, or a calibration's)."""
        return self.rates.clock_hz

    @property
    def fits(self) -> bool:
        return self.memory_bytes <= self.hardware.hbm_capacity_bytes

    def kernels_for(self, role: str) -> list:
        """The kernels of one role: "forward", "backward", "decode" or "scores" (eager's QK^T)."""
        return [k for k in self.kernels if k.role == role]

    @property
    def main_kernels(self) -> list:
        """The attention op's main kernels (a pass each): the forward, the decode step or eager's QK^T."""
        return [k for k in self.kernels if k.role in MAIN_ROLES]

    @property
    def tiles(self) -> dict:
        out = {"full": 0, "partial": 0, "empty": 0}
        for k in self.main_kernels:
            if k.tiles:
                for key in out:
                    out[key] += int(k.tiles[key])
        return out

    @property
    def tiles_iterated(self) -> int:
        return sum(int(k.tiles_iterated) for k in self.main_kernels if k.tiles is not None)

    @property
    def waves(self) -> float:
        main = self.main_kernels
        return main[0].waves if main else 0.0

    def to_json(self) -> dict:
        w = self.workload
        return {
            "variant": self.variant, "hardware": self.hardware.name, "hardware_key": self.hardware.key,
            "kernel": self.family.name, "phase": w.phase, "scope": self.scope, "dtype": w.dtype,
            "kv_dtype": w.kv_dtype,
            "workload": {"batch": w.batch, "seqlen_q": w.seqlen_q, "seqlen_kv": w.seqlen_kv,
                         "heads_q": w.heads_q, "heads_kv": w.heads_kv, "head_dim_qk": w.head_dim_qk,
                         "head_dim_v": w.head_dim_v, "causal": w.causal, "qk_accum": w.qk_accum,
                         "pv_accum": w.pv_accum, **self.resolved},
            "mask": self.mask_name,
            "time_s": self.time_s, "bound_s": self.bound.time_s, "bound": self.bound.unit,
            "bound_strategy": self.bound.strategy or None,
            "unit_times_s": self.bound.unit_times_s,
            "flops": int(self.flops), "useful_flops": int(self.useful_flops),
            "achieved_tflops": self.useful_flops / self.time_s / 1e12 if self.time_s else 0.0,
            "hbm_bytes": int(self.hbm_bytes), "kv_cache_bytes": int(self.kv_cache_bytes),
            "memory_bytes": int(self.memory_bytes), "hbm_capacity_bytes": int(self.hardware.hbm_capacity_bytes),
            "fits": self.fits, "tiles": self.tiles, "tiles_iterated": self.tiles_iterated, "waves": self.waves,
            "speedup": self.speedup, "varlen": self.varlen, "activation_bytes": self.activation_bytes,
            "layout": self.layout, "alternative": self.alternative, "contrast": self.contrast,
            "kernels": [k.to_json() for k in self.kernels],
            "calibrated": self.calibrated, "calibration": self.calibration_info, "clock_hz": self.clock_hz,
            "notes": self.notes,
        }


# -- per-SM rates ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SMRates:
    """Per-SM rates of one tile's units (per second), from the prediction's `Rates`."""
    mma: float  # FLOP/s of the GEMM dtype/accumulate at the family's MMA efficiency
    exp: float
    fp32_ops: float  # FP32 instructions/s (an FMA is one)
    smem: float  # bytes/s

    @classmethod
    def mixed(cls, r: Rates, w: Workload, qk_flops: float, pv_flops: float) -> "SMRates":
        """One MMA rate for a tile whose GEMMs run at two accumulate types: `qk_flops` at qk_accum
        (QK^T; in the backward also dQ, dK) and `pv_flops` at pv_accum (PV; dP, dV), FLOP-weighted,
        so each GEMM takes the time it takes at its own rate — as the bound prices them."""
        qk, pv = cls.of(r, w.dtype, w.qk_accum), cls.of(r, w.dtype, w.pv_accum)
        return cls(mma=(qk_flops + pv_flops) / (qk_flops / qk.mma + pv_flops / pv.mma), exp=qk.exp,
                   fp32_ops=qk.fp32_ops, smem=qk.smem)

    @classmethod
    def of(cls, r: Rates, dtype: str, accum: str) -> "SMRates":
        return cls(mma=r.mma_per_sm(dtype, accum), exp=r.exp_per_sm, fp32_ops=r.fp32_ops_per_sm, smem=r.smem_per_sm)


def _smem_tile_bytes(fam: Family, tile: Tile, kv_cols: int, dp: int, s: int, skv: int, arch: str,
                     known: dict | None = None) -> float:
    """Shared-memory traffic of one forward tile: the K and V tiles (`kv_cols` channels per key)
    written once (cp.async; TMA writes of FA3/FA4 go through the async proxy and are taken not to
    contend with MMA operand reads — an assumption), read once per reader (`families.smem_readers`),
    and the Q tile read as the QK^T operand.

    Where the kernel's compiled code is known (`known`: `families.compiled_tile`) and its dots are
    mma.sync (sm_80), the reads follow the layout Triton gave the two dots (`dot_warps`): warps
    [wm, wn] along the rows and keys of QK^T, [vm, vn] along the rows and V columns of PV. Every warp
    reads the Q rows of its row block and the K keys of its key slice, so K is read wm times and Q wn
    times (the TTGIR reloads Q from shared memory in the loop); V is read vm times; P stays in the
    registers of the warp that owns its rows only when both dots put every warp along the rows
    (wn = vn = 1, the same layout), else it is written to shared memory once and read vn times (each
    warp reads its rows' P whole). [w, 1] layouts give the `warp16` count; Triton gives a 64-row tile
    on sm_80 [1, w] (every warp along the keys)."""
    writes = 0 if fam.kv_by_tma else 1
    warps = known.get("dot_warps") if known and known.get("mma_version") == 2 else None
    if warps and len(warps) >= 2:
        (wm, wn), (vm, vn) = warps[:2]
        bm, bn, v_cols = tile.block_m, tile.block_n, kv_cols - dp
        p_reads = 0 if (wn == 1 and [wm, wn] == [vm, vn]) else 1 + vn
        q_reads = wn * max(1.0, wm * 16 / bm)  # more warps along the rows than 16-row slices: replicas
        return (bn * dp * skv * (writes + wm) + bn * v_cols * skv * (writes + vm) + q_reads * bm * dp * s
                + p_reads * bm * bn * s)
    return tile.block_n * kv_cols * skv * (writes + smem_readers(fam, tile, arch)) + tile.block_m * dp * s


def _tile_time(t_tensor, t_soft, t_smem, overlap, exposed=0.0):
    """One tile on one slot: the MMAs and the softmax combined by the overlap, plus the `exposed` fraction of the
    shared-memory time they wait on (`Rates.smem_exposed`: a kernel that loads its MMA operands from shared memory
    into registers stalls on them), never below the shared-memory time itself."""
    hi, lo = np.maximum(t_tensor, t_soft), np.minimum(t_tensor, t_soft)
    return np.maximum(t_smem, hi + (1.0 - overlap) * lo + exposed * t_smem)


@dataclass
class TileCosts:
    """Cost of one full and one partial tile on one slot, and the bytes each streams (times are
    arrays when the CTAs per SM `k` are: the vectorized path prices many configurations at once)."""
    t_full: float
    t_partial: float
    flops: float  # executed FLOPs per tile
    kv_bytes: float  # bytes a tile streams (K and V rows, or Q/dO rows in the backward)
    parts: dict  # unit -> time of one full tile (for the limiting-unit label)
    t_cta: float = 0.0  # per CTA: the unhidden part of its own I/O (Rates.cta_io; 0 uncalibrated)


def _cta_io_time(r: Rates, io_bytes, k):
    """A CTA's unhidden own I/O: `r.cta_io` x its bytes at its SM's share of the HBM bandwidth, shared
    by the k CTAs resident on the SM."""
    return r.cta_io * io_bytes * k / (r.hbm_bytes_per_s / r.sm_count)


_PLAIN = Workload()  # a plain softmax score: one QK^T, no score-function work, V apart from K


def _kv_cols(w: Workload, dp: int, dvp: int) -> int:
    """Channels a kernel streams per key: K (once per QK^T-shaped matmul: a relative-position
    operand R is as wide as K) and V, unless V is a slice of K (absorbed MLA)."""
    return w.k_streams * dp + (0 if w.v_in_k else dvp)  # Workload.stream_dims at padded dims


def _mma_sync_share(r: Rates, known: dict | None) -> float:
    """The fraction of the family's tensor rate a compiled kernel's dots reach on an architecture with warpgroup
    MMA (sm_90): Triton lowers a dot too small for wgmma (fewer than 64 rows: the dQ dot at BLOCK_M = 32, S and
    dP in the dK/dV kernel at BLOCK_M = 32) to mma.sync, which reaches FlashAttention-2's `mma_efficiency` there
    (2/3 of the Hopper peak, FA3 paper section 1). The share is the compiled dots' (`dot_versions`, `dot_flops`)
    FLOP-weighted harmonic mean, sum(F) / sum(F_i / e_i); 1 without one kernel's facts (the backward's two
    kernels taken together have none) or on an architecture without wgmma."""
    eff = FAMILIES["fa2"].mma_efficiency.get(r.hw.arch, 1.0)
    versions, flops = (known or {}).get("dot_versions"), (known or {}).get("dot_flops")
    if eff == 1.0 or not versions:
        return 1.0
    return sum(flops) / sum(f / (1.0 if v >= 3 else eff) for v, f in zip(versions, flops))


def _fwd_tile_costs(r: Rates, fam, tile, k, dp, dvp, s, skv, rates: SMRates, w: Workload = _PLAIN,
                    causal: bool = False, decode: bool = False) -> TileCosts:
    """One forward tile: qk_matmuls QK^T-shaped matmuls and PV on the tensor cores, one exp per
    score (plus the score function's own SFU work), the softmax's FP32 work (plus the score
    function's), shared-memory operand traffic. `causal`: the kernel runs the causal mask (its tiles
    pay `Rates.causal`).

    The softmax part of a tile takes max(exps / SFU rate, FP32 work / FP32 rate). A family with
    `exp2_emulation` (FA4) computes part of the softmax exp2s as a polynomial of c =
    exp2_emulation_fp32_ops FP32 instructions instead: the SFU and the FP32 pipes share them at the
    best split, as the bound's exp term (bound.unit_times) prices them, per SM:
    max(fp32 / R_fp32, n_sfu / R_sfu, (n + n_sfu + fp32 / c) / (R_sfu + R_fp32 / c)), n the softmax exp2s
    (one per score), n_sfu the score function's own SFU work (never emulated), k CTAs sharing the SM.
    Masked (partial) tiles emulate only at the head dims of `exp2_emulation_masked_dims`."""
    bm, bn = tile.block_m, tile.block_n
    flops = 2.0 * bm * bn * (w.qk_matmuls * dp + dvp)
    scores = float(bm * bn)
    t_tensor = flops / rates.mma * k
    known = None if decode else compiled_tile(fam, r.hw, tile, dp, dvp, False, getattr(w, "v_in_k", False),
                                              w.qk_matmuls, w.dtype)  # the forward kernel's facts, not decode's
    t_tensor = t_tensor / _mma_sync_share(r, known)
    exps = known["exp_per_score"] if known and known.get("exp_per_score") else 1.0  # the compiled code's count
    t_exp = scores * (exps + w.score_sfu_ops) / rates.exp * k
    soft = fam.softmax_fp32_ops_per_score + w.score_fp32_ops
    t_fp32 = scores * soft / rates.fp32_ops * k
    t_fp32_p = scores * (soft + fam.mask_fp32_ops_per_score) / rates.fp32_ops * k
    t_soft, t_soft_p = np.maximum(t_exp, t_fp32), np.maximum(t_exp, t_fp32_p)
    if fam.exp2_emulation:
        c_emu, n_sfu = r.exp2_emulation_fp32_ops, scores * w.score_sfu_ops

        def shared(fp32_ops):  # the exp2s split between the SFU and the FP32 pipes (fp32_ops: the other FP32 work)
            split = (scores + n_sfu + fp32_ops / c_emu) / (rates.exp + rates.fp32_ops / c_emu)
            return np.maximum(np.maximum(fp32_ops / rates.fp32_ops, n_sfu / rates.exp), split) * k

        t_exp = t_soft = shared(scores * soft)
        if dp in fam.exp2_emulation_masked_dims:
            t_soft_p = shared(scores * (soft + fam.mask_fp32_ops_per_score))
    kv_cols = _kv_cols(w, dp, dvp)
    t_smem = _smem_tile_bytes(fam, tile, kv_cols, dp, s, skv, r.hw.arch, known) / rates.smem * k
    c = 1.0 + (r.causal if causal else 0.0)
    t_full = _tile_time(t_tensor, t_soft, t_smem, r.overlap, r.smem_exposed)
    t_part = _tile_time(t_tensor, t_soft_p, t_smem, r.overlap, r.smem_exposed)
    parts = {"tensor": t_tensor, "exp": t_exp, "fp32": t_fp32, "smem": t_smem}
    issue = known.get("loop_instructions_per_score") if known else None
    if issue and r.hw.warp_issue_per_clk_per_sm:
        # the compiled main loop's warp instructions, issued by the SM's schedulers: a ceiling on the tile
        # (a partial tile issues at least as many: its mask work is priced above)
        parts["issue"] = t_issue = scores * issue / (r.hw.warp_issue_per_clk_per_sm * r.clock_hz) * k
        t_full, t_part = np.maximum(t_full, t_issue), np.maximum(t_part, t_issue)
    t_full = t_full * c
    t_part = t_part * c + r.partial_tile * t_full
    return TileCosts(t_full, t_part, flops, bn * kv_cols * skv, parts, _cta_io_time(r, bm * (dp + dvp) * s, k))


def _bwd_tile_costs(r: Rates, fam, tile, k, dp, dvp, s, rates: SMRates, w: Workload = _PLAIN,
                    causal: bool = False, kernel: str = "fused") -> TileCosts:
    """One backward tile: S recomputed, dQ and dK (each once per QK^T-shaped matmul), dP, dV; the
    score function's work recomputed (SFU) and differentiated (twice its FP32 work). The recomputed
    exps run on the SFU alone: no family emulates exp2 in its backward (FA4's flash_bwd_sm100.py
    computes P with cute.math.exp2; its exp2 emulation is forward-only); where the kernels' compiled code
    is known (`families.compiled_tile`) one score costs the larger of its dK/dV and dQ loops' MUFU.EX2
    counts per score (Triton's layouts may compute an exp twice).

    `kernel`: "fused" (one kernel: S, dP, dV, dK, dQ per tile, streaming Q and dO), or one of the two kernels
    of a family that splits its backward (`Family.bwd_split`): "dkdv" (S, dP, dV, dK per tile, streaming Q and dO
    past the CTA's K and V) and "dq" (S, dP and dQ per tile, streaming K and V past the CTA's Q and dO: S and dP
    computed a second time), each with its own compiled exps and the softmax gradient's FP32 work."""
    bm, bn = tile.block_m, tile.block_n
    m = w.qk_matmuls
    flops = 2.0 * bm * bn * {"fused": 3 * m * dp + 2 * dvp, "dkdv": 2 * m * dp + 2 * dvp, "dq": 2 * m * dp + dvp}[kernel]
    scores = float(bm * bn)
    t_tensor = flops / rates.mma * k
    known = compiled_tile(fam, r.hw, tile, dp, dvp, True, getattr(w, "v_in_k", False), w.qk_matmuls, w.dtype,
                          part=None if kernel == "fused" else kernel)
    t_tensor = t_tensor / _mma_sync_share(r, known)
    exps = known["exp_per_score"] if known and known.get("exp_per_score") else 1.0  # the compiled loops' count
    t_exp = scores * (exps + w.score_sfu_ops) / rates.exp * k
    soft = fam.bwd_fp32_ops_per_score + 2 * w.score_fp32_ops
    t_fp32 = scores * soft / rates.fp32_ops * k
    t_fp32_p = scores * (soft + fam.mask_fp32_ops_per_score) / rates.fp32_ops * k
    # the streamed tiles (Q and dO; the dq kernel's K and V) written once and read by every reader; dS written
    # and read once
    streamed = bn * (dp + dvp) * s if kernel == "dq" else bm * (dp + dvp) * s
    t_smem = (streamed * (1 + smem_readers(fam, tile, r.hw.arch)) + 2 * bm * bn * s) / rates.smem * k
    c = r.backward * (1.0 + (r.causal if causal else 0.0))
    t_full = _tile_time(t_tensor, np.maximum(t_exp, t_fp32), t_smem, r.overlap, r.smem_exposed) * c
    t_part = (_tile_time(t_tensor, np.maximum(t_exp, t_fp32_p), t_smem, r.overlap, r.smem_exposed) * c
              + r.partial_tile * t_full)
    if kernel == "dq":  # K and V stream past; the CTA reads its Q, dO, LSE and D and writes its dQ
        return TileCosts(t_full, t_part, flops, streamed, {"tensor": t_tensor, "exp": t_exp, "fp32": t_fp32,
                                                           "smem": t_smem},
                         _cta_io_time(r, bm * (2 * dp + dvp) * s + 8 * bm, k))
    own = bn * (dp + dvp) * (s + 4) if kernel == "dkdv" else 2 * bn * (dp + dvp) * s  # dkdv: dK, dV out in fp32
    return TileCosts(t_full, t_part, flops, streamed + 8 * bm,
                     {"tensor": t_tensor, "exp": t_exp, "fp32": t_fp32, "smem": t_smem}, _cta_io_time(r, own, k))


def slot_tile_times(tc: TileCosts, r: Rates, stages):
    """(a, b): the time one full / one partial tile holds a CTA slot — its compute, or its share of
    the DRAM latency when `stages` tiles in flight cannot hide it (Little's law, the per-SM streaming
    ceiling that makes split-KV pay in decode)."""
    share = r.dram_latency_s / np.maximum(stages, 1)
    return np.maximum(tc.t_full, share), np.maximum(tc.t_partial, share)


def kernel_time(r: Rates, n_ctas, tiles_full, tiles_partial, d_max, d_min, a, b, slots, hbm_bytes, l2_bytes,
                t_cta=0.0, groups=1, order="balanced"):
    """Time of a tiled kernel: its CTAs last 2 x DRAM latency (fill and drain) plus a per full and b
    per partial tile; the makespan of n CTAs on `slots` slots is the closed form
    max(longest, total / slots + shortest x (ceil(n / slots) - n / slots)) (`schedule.closed_makespan`), or,
    where a causal mask makes the CTAs unequal and the grid launches each of its `groups` ((batch, head)s)
    in a known order, that order's (`schedule.dispatch_makespan`, `Family.cta_order`);
    the kernel takes the launch overhead plus the larger of the makespan and its HBM (and L2, where
    sourced) traffic time. Scalars or arrays (one configuration or many: the same arithmetic).
    `t_cta`: each CTA's unhidden own I/O (`TileCosts.t_cta`). Returns (time, makespan, t_hbm, t_l2)."""
    total = n_ctas * (2 * r.dram_latency_s + t_cta) + tiles_full * a + tiles_partial * b
    makespan = schedule.dispatch_makespan(n_ctas, total, d_max, d_min, slots, groups, order)
    t_hbm = hbm_bytes / r.hbm_bytes_per_s
    t_l2 = l2_bytes / r.l2_bytes_per_s if r.l2_bytes_per_s else 0.0 * t_hbm
    return r.launch_overhead_s + np.maximum(np.maximum(makespan, t_hbm), t_l2), makespan, t_hbm, t_l2


def cta_duration(r: Rates, a, b, full, partial, t_cta=0.0):
    """One CTA's duration: fill and drain (2 x DRAM latency), its unhidden own I/O, its tiles. Written as
    full x (a - b) + (full + partial) x b: among CTAs that visit the same number of tiles the rounded duration is
    then monotone in `full` (each step rounds monotonically), so the longest and shortest are exactly those with
    the fewest and most full tiles, as the neighborhood search's fast path takes them (`search._fast_gna`)."""
    return 2 * r.dram_latency_s + t_cta + full * (a - b) + (full + partial) * b


def _finish(name, r: Rates, tc: TileCosts, tile, leg, full, partial, counts, hbm_bytes, l2_bytes,
            useful_flops, total_tiles, stages, splits=1, live=None, role="", order="balanced", groups=1):
    """Kernel time from per-CTA tile counts (`full`, `partial`: the tiles it visits, one entry per
    CTA class, each class repeated `counts` times). `live`: the (full, partial) live tiles, when the
    kernel visits more than those (reported as `tiles`; what it visits as `tiles_iterated`). `order`: the
    grid's launch order over its `groups` (batch, head)s (`schedule.dispatch_makespan`)."""
    lat = r.dram_latency_s
    k = leg.ctas_per_sm
    slots = r.sm_count * k
    on = counts > 0
    n_ctas = int(counts.sum())
    it_full, it_part = int((full * counts).sum()), int((partial * counts).sum())
    a, b = slot_tile_times(tc, r, stages)
    if is_expr(a) or is_expr(b) or is_expr(tc.t_cta):
        d_max, d_min = _class_extremes(r, a, b, full[on], partial[on], tc.t_cta)
    else:
        dur = cta_duration(r, a, b, full[on], partial[on], tc.t_cta)
        d_max, d_min = (float(dur.max()), float(dur.min())) if dur.size else (0.0, 0.0)
    time_s, makespan, t_hbm, t_l2 = kernel_time(r, n_ctas, it_full, it_part, d_max, d_min, a, b, slots,
                                                hbm_bytes, l2_bytes, tc.t_cta, groups, order)
    tiles_visited = float(it_full + it_part)
    units = {u: num(v) * tiles_visited / slots for u, v in tc.parts.items()}  # device-level, sustained clock
    units["hbm"] = num(t_hbm)
    if t_l2:
        units["l2"] = num(t_l2)
    units["schedule"] = num(makespan)
    if t_hbm >= makespan or t_l2 >= makespan:
        limit = "hbm" if t_hbm >= t_l2 else "l2"
    elif n_ctas * 2 * lat + tiles_visited * lat / max(stages, 1) > it_full * tc.t_full + it_part * tc.t_partial:
        limit = "latency"
    else:
        limit = max(tc.parts, key=tc.parts.get)
    if live is not None:
        full_n, part_n = int((live[0] * counts).sum()), int((live[1] * counts).sum())
    else:
        full_n, part_n = it_full, it_part
    return KernelCost(
        name=name, time_s=num(time_s), flops=int(round(tiles_visited * tc.flops)), useful_flops=int(useful_flops),
        hbm_bytes=int(hbm_bytes), l2_bytes=int(l2_bytes), bound=limit, unit_times_s=units,
        ctas=n_ctas, ctas_per_sm=k, waves=n_ctas / slots, wave_efficiency=schedule.wave_efficiency(n_ctas, slots),
        tile=str(tile), tiles={"full": full_n, "partial": part_n, "empty": int(total_tiles) - full_n - part_n},
        tiles_iterated=it_full + it_part,
        smem_bytes=leg.smem_bytes, regs_per_thread=leg.regs_per_thread, splits=splits,
        schedule="closed-form" if order == "balanced" else f"closed-form, launched {order}", tile_obj=tile, role=role)


def _class_extremes(r: Rates, a, b, full, partial, t_cta):
    """(longest, shortest) CTA duration over the classes (full, partial) when the tile times are formulas
    (`formulas.Expr`): a duration grows with both counts, so the longest is the MAX over the classes no other
    class has at least as many of both (the shortest the MIN over those no class has at most as many of):
    the same numbers as the maximum and minimum over every class, at any tile times."""
    pairs = sorted({(int(f), int(p)) for f, p in zip(full.tolist(), partial.tolist())})
    if not pairs:
        return 0.0, 0.0
    top, seen = [], -1
    for f, p in sorted(pairs, reverse=True):  # more full tiles first: kept if it has more partial ones than those
        if p > seen:
            top.append((f, p))
            seen = p
    low, seen = [], math.inf
    for f, p in pairs:  # fewer full tiles first: kept if it has fewer partial ones than those
        if p < seen:
            low.append((f, p))
            seen = p
    return (largest([cta_duration(r, a, b, f, p, t_cta) for f, p in top]),
            smallest([cta_duration(r, a, b, f, p, t_cta) for f, p in low]))


TILE_UNITS = ("tensor", "exp", "fp32", "smem", "issue")  # the per-tile units (`TileCosts.parts`)


def busy_time(units: dict) -> float:
    """A kernel's per-tile units' times summed (`KernelCost.unit_times_s`): the work its tiles keep the SM's
    units busy with, hidden or not."""
    return sum(units[u] for u in TILE_UNITS if u in units)


TIE_REL = 1e-9  # tile times this close (relative) are a tie: the scalar and array paths round differently


def _choose(fam: Family, cands, evaluate):
    """The family's tile: the first legal entry of its table (FA2/FA3/FA4 tables list their own
    choice first and smaller fallbacks after it), or for an autotuned family (Triton) the legal
    candidate with the smallest time (within TIE_REL), then the fewest executed FLOPs, then the least
    busy time of its units (`busy_time`: where a calibration hides a unit behind the tensor cores, say
    overlap 1, tiles can price alike; the one that computes fewer exps per score still does less), then
    the earliest in its list (`vectorized._pick` breaks ties the same way)."""
    if not fam.autotune:
        for c in cands:
            r = evaluate(c)
            if r is not None:
                return r
        return None
    legal = [r for r in (evaluate(c) for c in cands) if r is not None]
    if not legal:
        return None
    fastest = min(num(r.time_s) for r in legal)
    tied = [r for r in legal if num(r.time_s) <= fastest * (1 + TIE_REL)]
    return min(tied, key=lambda r: (r.flops, num(busy_time(r.unit_times_s))))  # min keeps the earliest of equals


def _legal(fam, r: Rates, tile, dp, dvp, w, backward=False, n_ctas=None, decode=False, part=None):
    """The legality check, with CTAs per SM capped by how many CTAs the grid puts on one SM: the
    block scheduler spreads a small grid over all SMs first, so a lone CTA gets its SM to itself.
    `part`: one kernel of a split backward (`can_implement`)."""
    leg = can_implement(fam, r.hw, tile, dp, dvp, w.dtype, w.kv_dtype, backward, w.v_in_k, w.k_streams, decode,
                        part)
    if not leg.ok:
        return None
    if n_ctas is not None:
        k = max(1, min(leg.ctas_per_sm, -(-int(n_ctas) // r.sm_count)))
        leg = Legality(True, leg.smem_bytes, leg.regs_per_thread, k)
    return leg


def _no_tile(fam, hw, w, what, reason: str = ""):
    why = f": {reason}" if reason else f" ({hw.smem_per_block_bytes} B shared memory per block)"
    return UnsupportedCore(f"no legal {what} tile of kernel family {fam.name!r} for head_dim_qk={w.head_dim_qk}, "
                        f"head_dim_v={w.head_dim_v}, dtype={w.dtype} on {hw.name}{why}; "
                        f"try another --kernel, a smaller head dim, or other tile shapes")


def _why_illegal(fam, hw, w, tiles, backward=False, decode=False) -> str:
    """The legality check's reason for the first candidate (after the mask's adjustment)."""
    if not tiles:
        return ""
    dp, dvp = fam.pad_dims(w.head_dim_qk, w.head_dim_v, w.v_in_k)
    return can_implement(fam, hw, tiles[0], dp, dvp, w.dtype, w.kv_dtype, backward, w.v_in_k, w.k_streams,
                         decode).reason


# -- bytes and helper kernels: one configuration or arrays of them (`vectorized` reads these too) -----
def forward_bytes(q_rows, kv_keys, d, dv, kv_dims, s, skv, write_lse, shared=0):
    """(HBM bytes, L2 bytes besides the K/V re-reads) of a forward kernel: Q read, the keys' K/V read
    (`kv_keys` = kv heads x keys read, `kv_dims` channels each; `shared`: a per-layer operand), O
    written, the fp32 LSE written when the backward needs it. `q_rows` = query heads x tokens."""
    q_b, o_b = q_rows * d * s, q_rows * dv * s
    return q_b + kv_keys * kv_dims * skv + shared + o_b + (q_rows * 4 if write_lse else 0), q_b + o_b


def backward_bytes(q_rows, kv_keys, kv_rows, d, dv, kv_dims, s, shared=0):
    """HBM bytes of the main backward kernel: Q and dO read, K/V read, LSE and D read (8 B a row),
    dK/dV written per query head (`kv_rows`: expanded under GQA), the fp32 dQ accumulator written;
    a per-layer operand read and its gradient written (`shared`)."""
    return (q_rows * (d + dv) * s + kv_keys * kv_dims * s + q_rows * 8 + kv_rows * kv_dims * s + q_rows * d * 4
            + 2 * shared)


def backward_helpers(q_rows, kv_bytes, heads_q, heads_kv, d, dv, s):
    """The backward's memory-streaming kernels as (name, read, write, fp32 ops, runs?): the preprocess
    D = rowsum(dO * O) (zeroing the dQ accumulator), the dQ convert, and under GQA the sum of the
    expanded dK/dV over each group (`kv_bytes`: one head's K/V of every sequence)."""
    return [("bwd_preprocess", 2 * q_rows * dv * s, q_rows * 4 + q_rows * d * 4, 2.0 * q_rows * dv, True),
            ("bwd_dq_convert", q_rows * d * 4, q_rows * d * s, 0.0, True),
            ("bwd_dkv_reduce", kv_bytes * heads_q, kv_bytes * heads_kv, kv_bytes // s * heads_q, heads_q > heads_kv)]


def decode_bytes(kv_read, q_rows, d, dv, s, splits):
    """(HBM bytes of the decode kernel, bytes of its fp32 partial outputs and LSEs): the cache read, Q
    read, O written (by the kernel itself when unsplit, by the combine kernel when split)."""
    partial = np.where(splits > 1, q_rows * (dv + 1) * 4 * splits, 0) if np.ndim(splits) else (
        q_rows * (dv + 1) * 4 * splits if splits > 1 else 0)
    unsplit_o = np.where(splits == 1, q_rows * dv * s, 0) if np.ndim(splits) else (q_rows * dv * s if splits == 1 else 0)
    return kv_read + q_rows * d * s + unsplit_o + partial, partial


# -- fused forward -------------------------------------------------------------------------
def _rows_over_segments(w: Workload, mask: Mask, per_seg, slices_per_seq: int):
    """Concatenate, over the workload's segments and the mask's head groups, each one's per-tile
    (full, partial) arrays (`per_seg(sub_mask, lq, lk)` returns iterated and live pairs of arrays)
    with their CTA counts (`slices_per_seq` CTA rows per sequence, shared out over the head groups)."""
    it_f, it_p, lv_f, lv_p, counts = [], [], [], [], []
    for sub, h in mask.head_groups(w.heads_q):
        for lq, lk, m in w.segments():
            (f, p), (lf, lp) = per_seg(sub, lq, lk)
            it_f.append(f), it_p.append(p), lv_f.append(lf), lv_p.append(lp)
            counts.append(np.full(len(f), m * slices_per_seq * h // w.heads_q, dtype=np.int64))
    if len(counts) == 1:  # one head group, one sequence shape: the arrays as they are
        return it_f[0], it_p[0], (lv_f[0], lv_p[0]), counts[0]
    cat = np.concatenate
    return cat(it_f), cat(it_p), (cat(lv_f), cat(lv_p)), cat(counts)


def _causal(w: Workload, mask: Mask) -> bool:
    """Whether the families' causal tile tables apply: a causal workload, or every head group's mask
    causal (a window or span reaching every key has become one, `Mask.for_lengths`)."""
    return w.causal or all(isinstance(sub, CausalMask) for sub, _ in mask.head_groups(w.heads_q))


def launch_order(fam: Family, role: str, w: Workload, mask: Mask) -> str:
    """The launch order `role`'s grid hands its CTAs out in (`Family.order`), where the order makes a
    difference the model prices: a plain causal mask over one sequence shape, whose CTAs grow with the tile
    index; "balanced" (the closed form) for every other mask and for varlen batches."""
    if len(w.segments()) == 1 and all(type(sub) is CausalMask for sub, _ in mask.head_groups(w.heads_q)):
        return fam.order(role)
    return "balanced"


def _sequences(w: Workload) -> int:
    """The sequences a kernel's grid runs (each with every query head: the (batch, head) groups of its CTAs)."""
    return sum(m for _, _, m in w.segments())


def _segment_sums(w: Workload, mask: Mask, segments=None):
    """(live pairs over every head and sequence, live keys per kv head over the sequences) of the
    real sequences (or of `segments`)."""
    return mask_sums(mask, w.real_segments() if segments is None else segments, w.heads_q)


def fused_forward(w: Workload, r: Rates, fam: Family, mask: Mask, write_lse: bool) -> KernelCost:
    """The forward kernel: one CTA per (sequence, query head, query tile); a packed varlen batch
    runs every sequence's tiles in one grid (cu_seqlens), a padded one pads each to the longest."""
    dp, dvp = fam.pad_dims(w.head_dim_qk, w.head_dim_v, w.v_in_k)
    s, skv = w.dtype_bytes, w.kv_dtype_bytes
    d, dv = w.head_dim_qk, w.head_dim_v
    rates = SMRates.mixed(r, w, w.qk_matmuls * dp, dvp)
    live_pairs, _ = _segment_sums(w, mask)
    useful = 2 * (w.qk_matmuls * d + dv) * live_pairs
    kvc = _kv_cols(w, d, dv)
    kern = w.aggregate()  # the tokens the kernel reads and writes (padding included when padded)
    keys = _segment_sums(w, mask, w.segments())[1]
    hbm, l2_q_o = forward_bytes(w.heads_q * kern.seqlen_q, w.heads_kv * keys, d, dv, w.seq_dims, s, skv, write_lse,
                                w.shared_operand_bytes(min(keys, w.seqlen_kv)))

    def evaluate(tile):
        tile = mask.adjust_tile(tile)
        grids = [(m, mask.n_tiles(tile.block_m, tile.block_n, q, k)) for q, k, m in w.segments()]
        n_ctas = sum(m * w.heads_q * nq for m, (nq, _) in grids)
        leg = _legal(fam, r, tile, dp, dvp, w, n_ctas=n_ctas)
        if leg is None:
            return None
        full, partial, live, counts = _rows_over_segments(
            w, mask, lambda sub, q, k: (sub.iterated_rows(q, k, tile.block_m, tile.block_n),
                                              tile_rows(sub, q, k, tile.block_m, tile.block_n)), w.heads_q)
        tc = _fwd_tile_costs(r, fam, tile, leg.ctas_per_sm, dp, dvp, s, skv, rates, w, causal)
        visited = float(np.sum((full + partial) * counts))
        l2 = visited * tile.block_n * kvc * skv + l2_q_o
        total_tiles = sum(m * w.heads_q * nq * nk for m, (nq, nk) in grids)
        return _finish("attn_fwd", r, tc, tile, leg, full, partial, counts,
                       hbm, l2, useful, total_tiles, tile.stages, live=live, role="forward",
                       order=launch_order(fam, "forward", w, mask), groups=_sequences(w) * w.heads_q)

    local = any(isinstance(sub, WindowMask) for sub, _ in mask.head_groups(w.heads_q))
    causal = _causal(w, mask)
    cands = fwd_tile_candidates(fam, r.hw, dp, dvp, causal and not local, w.dtype, local)
    best = _choose(fam, cands, evaluate)
    if best is None:
        raise _no_tile(fam, r.hw, w, "forward", _why_illegal(fam, r.hw, w, [mask.adjust_tile(t) for t in cands]))
    return best


# -- backward ------------------------------------------------------------------------------
def _bwd_sizes(w: Workload, fam: Family):
    """(padded head dims dp, dvp, dtype bytes, head dims d, dv, query rows of every sequence and head, kv tokens
    the kernels read) of a backward."""
    dp, dvp = fam.pad_dims(w.head_dim_qk, w.head_dim_v, w.v_in_k)
    kern = w.aggregate()
    return dp, dvp, w.dtype_bytes, w.head_dim_qk, w.head_dim_v, w.heads_q * kern.seqlen_q, kern.seqlen_kv


def fused_backward(w: Workload, r: Rates, fam: Family, mask: Mask, fwd_tile=None) -> list:
    """FlashAttention backward (DESIGN section 4): preprocess D = rowsum(dO * O), the main kernel
    gridded over kv tiles (recomputes P, accumulates dQ with fp32 atomics), dQ convert, and for
    GQA the sum of per-query-head dK/dV (FA2's approach: dk_expanded, then a reduction). A family that
    splits its backward (`Family.bwd_split`) runs `split_backward` instead (`fwd_tile`: the forward's tile)."""
    if fam.bwd_split:
        return split_backward(w, r, fam, mask, fwd_tile)
    dp, dvp, s, d, dv, rows, kv_tokens = _bwd_sizes(w, fam)
    m = w.qk_matmuls
    rates = SMRates.mixed(r, w, 3 * m * dp, 2 * dvp)  # S, dQ, dK at qk_accum; dP, dV at pv_accum
    live_pairs, _ = _segment_sums(w, mask)
    useful = 2 * (3 * m * d + 2 * dv) * live_pairs
    helpers = [elementwise(name, r, read_bytes=rd, write_bytes=wr, fp32_ops=ops)
               for name, rd, wr, ops, runs in backward_helpers(rows, kv_tokens * w.seq_dims * s, w.heads_q, w.heads_kv,
                                                                d, dv, s) if runs]
    hbm = backward_bytes(rows, w.heads_kv * kv_tokens, w.heads_q * kv_tokens, d, dv, w.seq_dims, s,
                         w.shared_operand_bytes())  # R read, dR written

    def evaluate(tile):
        tile = mask.adjust_tile(tile, backward=True)
        grids = [(m, mask.n_tiles(tile.block_m, tile.block_n, q, k)) for q, k, m in w.segments()]
        leg = _legal(fam, r, tile, dp, dvp, w, backward=True, n_ctas=sum(m * w.heads_q * nk for m, (_, nk) in grids))
        if leg is None:
            return None
        full, partial, live, counts = _rows_over_segments(
            w, mask, lambda sub, q, k: (sub.iterated_cols(q, k, tile.block_m, tile.block_n),
                                              tile_cols(sub, q, k, tile.block_m, tile.block_n)), w.heads_q)
        tc = _bwd_tile_costs(r, fam, tile, leg.ctas_per_sm, dp, dvp, s, rates, w, causal)
        visited = float(np.sum((full + partial) * counts))
        l2 = visited * (tc.kv_bytes + 2 * tile.block_m * d * 4) + hbm  # + dQ fp32 atomics (read-modify-write)
        total_tiles = sum(m * w.heads_q * nq * nk for m, (nq, nk) in grids)
        return _finish("attn_bwd", r, tc, tile, leg, full, partial, counts, hbm, l2, useful,
                       total_tiles, tile.stages, live=live, role="backward",
                       order=launch_order(fam, "backward", w, mask), groups=_sequences(w) * w.heads_q)

    causal = _causal(w, mask)
    cands = bwd_tile_candidates(fam, r.hw, dp, dvp, causal, w.dtype)
    main = _choose(fam, cands, evaluate)
    if main is None:
        raise _no_tile(fam, r.hw, w, "backward", _why_illegal(fam, r.hw, w, [mask.adjust_tile(t, True) for t in cands], True))
    return helpers[:1] + [main] + helpers[1:]


def split_helpers(q_rows, kv_keys, heads_q, heads_kv, d, dv, s):
    """The memory-streaming kernels around a split backward (kernels/triton_attention.py `_bwd`) as (before,
    after) lists of (name, read, write, fp32 ops): before the two main kernels the preprocess D = rowsum(dO * O)
    (fp32 D out; dQ needs no zeroing: the dq kernel writes it once) and the zero fills of the per-query-head fp32
    dK and dV buffers (`torch.zeros`); after them, for dK and for dV, the sum over each GQA group (a copy when
    the group is one head) and the conversion to the inputs' dtype (`kv_keys`: the keys of one head over every
    sequence)."""
    before = [("bwd_preprocess", 2 * q_rows * dv * s, q_rows * 4, 2.0 * q_rows * dv)]
    after = []
    for name, dd in (("dk", d), ("dv", dv)):
        before.append((f"bwd_{name}_zero", 0, heads_q * kv_keys * dd * 4, 0.0))
        after += [(f"bwd_{name}_sum", heads_q * kv_keys * dd * 4, heads_kv * kv_keys * dd * 4, float(heads_q * kv_keys * dd)),
                  (f"bwd_{name}_convert", heads_kv * kv_keys * dd * 4, heads_kv * kv_keys * dd * s, 0.0)]
    return before, after


def split_backward(w: Workload, r: Rates, fam: Family, mask: Mask, fwd_tile=None) -> list:
    """A backward of two kernels and no atomics (`Family.bwd_split`: attnsim's own Triton kernels): the
    preprocess and the zero fills of the fp32 dK/dV buffers; `attn_bwd_dkdv`, one CTA per (kv tile, query
    head) streaming Q and dO tiles (S, dP, dV, dK; dK and dV written in fp32 per query head); `attn_bwd_dq`,
    one CTA per (query tile, query head) streaming K and V tiles (S and dP again, then dQ, written once in the
    inputs' dtype); then dK and dV summed over each GQA group and converted (`split_helpers`). Each kernel runs
    its own tile, the fastest legal one by its own compiled facts (kernels/triton_attention.py
    `bwd_configs(part=...)`), except where the tokens sit in a tiled neighborhood order (NATTEN's boxes): there
    the kernels keep the forward's tile, `fwd_tile`, for both (kernels/triton_attention.py `_bwd`: the plan's
    boxes are the forward's). Useful FLOPs: 2(2d + 2dv) per live pair in dK/dV and 2d in dQ (the recomputed S
    and dP are executed, not useful)."""
    dp, dvp, s, d, dv, rows, kv_tokens = _bwd_sizes(w, fam)
    qm = w.qk_matmuls
    live_pairs, _ = _segment_sums(w, mask)
    kv_read = w.heads_kv * kv_tokens * w.seq_dims * s
    common = rows * (d + dv) * s + kv_read + rows * 8  # Q, dO, K, V, LSE and D read
    hbm_dkdv = common + w.heads_q * kv_tokens * w.seq_dims * 4 + 2 * w.shared_operand_bytes()
    hbm_dq = common + rows * d * s
    rates_dkdv = SMRates.mixed(r, w, 2 * qm * dp, 2 * dvp)  # S, dK at qk_accum; dP, dV at pv_accum
    rates_dq = SMRates.mixed(r, w, 2 * qm * dp, dvp)  # S, dQ at qk_accum; dP at pv_accum
    before, after = ([elementwise(name, r, read_bytes=rd, write_bytes=wr, fp32_ops=ops) for name, rd, wr, ops in part]
                     for part in split_helpers(rows, kv_tokens, w.heads_q, w.heads_kv, d, dv, s))

    def evaluate(part, tile):
        tile = mask.adjust_tile(tile, backward=True)
        grids = [(n, mask.n_tiles(tile.block_m, tile.block_n, q, k)) for q, k, n in w.segments()]
        total_tiles = sum(n * w.heads_q * nq * nk for n, (nq, nk) in grids)
        if part == "dkdv":
            n_ctas, rt, hbm, useful = (sum(n * w.heads_q * nk for n, (_, nk) in grids), rates_dkdv, hbm_dkdv,
                                       2 * (2 * qm * d + 2 * dv) * live_pairs)
            classes = lambda sub, q, k: (sub.iterated_cols(q, k, tile.block_m, tile.block_n),  # noqa: E731
                                         tile_cols(sub, q, k, tile.block_m, tile.block_n))
        else:
            n_ctas, rt, hbm, useful = (sum(n * w.heads_q * nq for n, (nq, _) in grids), rates_dq, hbm_dq,
                                       2 * qm * d * live_pairs)
            classes = lambda sub, q, k: (sub.iterated_rows(q, k, tile.block_m, tile.block_n),  # noqa: E731
                                         tile_rows(sub, q, k, tile.block_m, tile.block_n))
        leg = _legal(fam, r, tile, dp, dvp, w, backward=True, n_ctas=n_ctas, part=part)
        if leg is None:
            return None
        full, partial, live, counts = _rows_over_segments(w, mask, classes, w.heads_q)
        tc = _bwd_tile_costs(r, fam, tile, leg.ctas_per_sm, dp, dvp, s, rt, w, causal, kernel=part)
        # L2: the streamed tiles, the HBM traffic, and a dK/dV CTA of every query head loading its kv head's K, V
        own_kv = kv_read * (w.heads_q - w.heads_kv) // w.heads_kv if part == "dkdv" else 0
        l2 = float(np.sum((full + partial) * counts)) * tc.kv_bytes + hbm + own_kv
        return _finish(f"attn_bwd_{part}", r, tc, tile, leg, full, partial, counts, hbm, l2, useful,
                       total_tiles, tile.stages, live=live, role="backward")

    causal = _causal(w, mask)
    boxed = fwd_tile is not None and getattr(mask, "token_order", None) == "tiled"
    cands = [fwd_tile] if boxed else bwd_tile_candidates(fam, r.hw, dp, dvp, causal, w.dtype)
    kernels = []
    for part in ("dkdv", "dq"):  # each kernel its own tile: they launch apart
        best = _choose(fam, cands, lambda t: evaluate(part, t))
        if best is None:
            raise _no_tile(fam, r.hw, w, "backward", _why_illegal(
                fam, r.hw, w, [mask.adjust_tile(t, True) for t in cands], True))
        kernels.append(best)
    return before + kernels + after


# -- decode ----------------------------------------------------------------------------------
def num_splits_heuristic(batch_nheads_mblocks: int, num_sms: int, num_n_blocks: int, max_splits: int = 128,
                         style: str = "fa2") -> int:
    """FlashAttention's split-KV heuristic: no split when the CTAs almost fill the SMs; else the
    smallest split count whose wave efficiency reaches 85% of the best.

    style "fa2" (csrc/flash_attn/flash_api.cpp): skips split counts that give the same blocks per
    split as one fewer (eligibility); FA2 passes 2 x SMs as num_sms (128-thread CTAs).
    style "fa3" (hopper/heuristics.h): never splits 4 kv blocks or fewer, no eligibility filter;
    FA3 passes the SM count. (FA3's split of very long contexts that overflow L2 when the SMs are
    already full is not modeled: it needs >= 2 x SMs row blocks, not a decode shape.)"""
    if batch_nheads_mblocks >= 0.8 * num_sms:
        return 1
    if style == "fa3" and num_n_blocks <= 4:
        return 1
    max_splits = min(max_splits, num_sms, num_n_blocks)
    cdiv = lambda a, b: -(-a // b)  # noqa: E731
    eligible = lambda n: style == "fa3" or n == 1 or cdiv(num_n_blocks, n) != cdiv(num_n_blocks, n - 1)  # noqa: E731
    eff = {}
    for n in range(1, max_splits + 1):
        if eligible(n):
            waves_ = batch_nheads_mblocks * n / num_sms
            eff[n] = waves_ / math.ceil(waves_)
    best = max(eff.values()) if eff else 0.0
    for n in sorted(eff):
        if eff[n] >= 0.85 * best:
            return n
    return 1


def split_sms(fam: Family, hw: Hardware) -> int:
    """The SM count each family hands its split heuristic."""
    return hw.sm_count * (2 if fam.split_style == "fa2" else 1)


def fused_decode(w: Workload, r: Rates, fam: Family, mask: Mask) -> list:
    """One decode step: split-KV attention over the cache plus the combine kernel.

    Packed GQA (FA2 when seqlen_q == 1, FA3, FA4): the query heads sharing a kv head fill the rows
    of one tile (row = token * group + head); otherwise one CTA row block per query head. Rows are
    padded to BLOCK_M: the padding is executed FLOPs."""
    dp, dvp = fam.pad_dims(w.head_dim_qk, w.head_dim_v, w.v_in_k)
    s, skv = w.dtype_bytes, w.kv_dtype_bytes
    d, dv = w.head_dim_qk, w.head_dim_v
    # a latent (absorbed MLA) decode kernel packs the heads into the rows too (sglang's Triton kernel: BLOCK_H)
    pack = packs_gqa_decode(fam, w.seqlen_q, w.v_in_k)
    g = w.group if pack else 1
    heads = w.heads_kv if pack else w.heads_q  # CTA row blocks per sequence and query-row block
    rows = w.seqlen_q * g
    cands = decode_tile_candidates(fam, r.hw, dp, dvp)
    legal = [(t, leg) for t in cands if (leg := _legal(fam, r, t, dp, dvp, w, decode=True)) is not None]
    if not legal:
        raise _no_tile(fam, r.hw, w, "decode", _why_illegal(fam, r.hw, w, cands, decode=True))
    tile, leg = legal[0]
    tile = replace(tile, block_m=decode_block_m(fam, tile, rows))  # a smaller row block: legal too
    rates = SMRates.mixed(r, w, w.qk_matmuls * dp, dvp)
    # query-token range of each row block
    n_m = -(-rows // tile.block_m)
    r0 = np.arange(n_m) * tile.block_m
    r1 = np.minimum(r0 + tile.block_m, rows) - 1
    # FlashAttention sizes the split from the longest context; a shorter sequence's later splits are empty
    # FlashAttention sizes the split from the keys it loads: the longest context, or a window's span
    # (FA3's seqlen_k_loaded = min(seqlen_k, window + kBlockM))
    loaded = max(min(k, sub.live_keys(q, k) + tile.block_m) for sub, _ in mask.head_groups(w.heads_q)
                 for q, k, _ in w.segments())
    n_kv = -(-loaded // tile.block_n)
    splits = (num_splits_heuristic(w.batch * heads * n_m, split_sms(fam, r.hw), n_kv, style=fam.split_style)
              if fam.split_kv else 1)
    per = -(-n_kv // splits)
    # split s takes kv tiles [s*per, (s+1)*per); partial tiles sit at the end of the row (the ragged
    # last tile, the causal diagonal), i.e. in the last split that has tiles
    fulls, parts, counts = [], [], []
    total_tiles = 0
    for sub, h in mask.head_groups(w.heads_q):
        for lq, lk, m in w.segments():
            full_r, nonempty_r = sub.row_tiles(r0 // g, r1 // g, r0 + tile.block_m <= rows, lq, lk, tile.block_n)
            total_tiles += m * heads * h // w.heads_q * n_m * -(-lk // tile.block_n)
            for f, ne in zip(np.broadcast_to(full_r, r0.shape), np.broadcast_to(nonempty_r, r0.shape)):
                for sp in range(splits):
                    lo, hi = sp * per, min((sp + 1) * per, int(ne))
                    if hi <= lo:
                        continue
                    nf = max(0, min(hi, int(f)) - lo)
                    fulls.append(nf)
                    parts.append(hi - lo - nf)
                    counts.append(m * heads * h // w.heads_q)
    full, partial, counts = (np.asarray(x, dtype=np.int64) for x in (fulls, parts, counts))
    leg = _legal(fam, r, tile, dp, dvp, w, n_ctas=int(counts.sum()), decode=True)
    tc = _fwd_tile_costs(r, fam, tile, leg.ctas_per_sm, dp, dvp, s, skv, rates, w, decode=True)
    q_rows = w.batch * w.heads_q * w.seqlen_q
    live_pairs, _ = _segment_sums(w, mask)
    useful = 2 * (w.qk_matmuls * d + dv) * live_pairs
    keys = _segment_sums(w, mask, w.segments())[1]
    kv_read = w.heads_kv * keys * w.seq_dims * skv + w.shared_operand_bytes(min(keys, w.seqlen_kv))
    hbm, partial_b = decode_bytes(kv_read, q_rows, d, dv, s, splits)
    visited = float(np.sum((full + partial) * counts))
    l2 = visited * tc.kv_bytes / _kv_cols(w, dp, dvp) * _kv_cols(w, d, dv) + hbm
    main = _finish("attn_decode", r, tc, tile, leg, full, partial, counts, hbm, l2, useful,
                   total_tiles, tile.stages, splits=splits, role="decode")
    out = [main]
    if splits > 1:
        out.append(elementwise("decode_combine", r, read_bytes=partial_b, write_bytes=q_rows * dv * s,
                               fp32_ops=3.0 * q_rows * dv * splits))
    return out


# -- eager ------------------------------------------------------------------------------------
# What "standard attention" launches, kernel by kernel. The reference is `attention_pytorch` of the
# FlashAttention benchmarks (Dao-AILab/flash-attention benchmarks/benchmark_flash_attention.py; the same
# function in hopper/benchmark_flash_attention.py): the "PyTorch standard attention" of the FlashAttention-2
# and -3 papers, timed forward, or forward and autograd backward (flash_attn/utils/benchmark.py
# benchmark_fwd_bwd), on a packed qkv of shape (batch, seqlen, 3, heads, d), dropout_p = 0.0:
#   q = rearrange(q, 'b t h d -> (b h) t d'), k = rearrange(k, 'b s h d -> (b h) d s'): views of the packed
#       qkv that cannot be viewed as (b h), so reshape copies each (`q_layout`, `k_layout`)
#   scores = torch.baddbmm(empty, q, k, beta=0, alpha=softmax_scale): one cuBLAS batched GEMM; the scale is
#       its epilogue's alpha (no scaling kernel), beta = 0 does not read C, S is written in the input
#       dtype, not fp32 (`qk_gemm`)
#   causal: causal_mask = torch.triu(torch.full((L, S), -10000.0), 1).to(dtype): three small L x S kernels
#       on an fp32 mask (`mask_fill`, `mask_triu`, `mask_cast`), then scores = scores + causal_mask, an
#       out-of-place add (not masked_fill_) broadcasting the L x S mask over (batch, heads): it reads S and
#       the mask, and writes S again (`mask_add`): one more read and one more write of the score matrix
#   attention = torch.softmax(scores, dim=-1): reads S, writes P in the input dtype; fp32 math inside the
#       kernel, no dtype-conversion kernel, no log-sum-exp written (aten/src/ATen/native/cuda/SoftMax.cu:
#       a row in registers or shared memory, one read and one write) (`softmax`)
#   F.dropout(attention, 0.0): at::dropout returns its input when p == 0 (aten/src/ATen/native/Dropout.cpp,
#       _dropout_impl: `if (p == 0 || !train || ...) return input`): no kernel
#   torch.einsum('bhts,bshd->bthd', P, v): v permuted to (b h) s d, a copy (`v_layout`), then one batched
#       GEMM (`pv_gemm`); the output is a permuted view and `.to(dtype)` a no-op
# The autograd backward (tools/autograd/derivatives.yaml; add, the views and dropout(p = 0) pass the
# gradient through without a kernel; benchmark_backward sets .grad to None first, so nothing accumulates):
#   bmm: dP = dO V^T (`bwd_dp_gemm`, writes an S-sized tensor), dV = P^T dO (`bwd_dv_gemm`, reads P)
#   softmax: dS = _softmax_backward_data(dP, P) (`softmax_bwd`: reads dP and P, writes dS)
#   baddbmm: batch1 = maybe_multiply(grad.bmm(batch2^T), alpha), batch2 = maybe_multiply(batch1^T.bmm(grad),
#       alpha): a GEMM each reading dS (`bwd_dq_gemm`, `bwd_dk_gemm`) and, alpha != 1, a scaling kernel each
#       (`bwd_dq_scale`, `bwd_dk_scale`)
#   unbind: the packed gradient is at::stack(dQ, dK, dV) (`bwd_qkv_stack`: reads the three, writes them)
# PyTorch's SDPA math backend up to torch 2.4 (aten/src/ATen/native/transformers/attention.cpp,
# _scaled_dot_product_attention_math: query * sqrt(scale), key^T * sqrt(scale), matmul; causal: a bool
# tril mask made additive (-inf) and added in place, attn.add_(mask); softmax; matmul) launches the same
# S-sized passes; it scales Q and K (two per-token passes, like q_layout and k_layout) and uses V in place.
# From torch 2.5 it upcasts fp16/bf16 inputs to fp32 unless allow_fp16_bf16_reduction_math_sdp(True); not
# modelled: SageAttention's published SDPA-math times rule it out for those rows (A100, d = 128, L = 8192,
# batch 4, 32 heads: 63.7 ms measured, while 4.4e12 FLOP of fp32 GEMMs without TF32 take 225 ms at
# 19.5 TFLOP/s).
# Decode keeps the cache in place (a matmul over the KV cache): no layout copies.
# The GEMMs are priced by pricing.gemm (tiles, waves, HBM). QK^T and dP reduce over K = d only: d FLOPs per
# byte of S written (2 L^2 d FLOPs, 2 L^2 bytes per head), below the ridge of every profiled card at
# d <= 128 (A100 312 TFLOP/s / 2.04 TB/s = 153, H100 989 / 3.35 = 295, RTX 4090 165 / 1.008 = 164 FLOP/B),
# so they are HBM-bound whatever their tensor-core efficiency; PV, dV, dQ, dK (K = L, N = d) stream P or dS
# once and are HBM-bound too. The calibrated tensor fraction is therefore weakly determined by eager rows.


def eager_attention(w: Workload, r: Rates, fam: Family, mask: Mask) -> list:
    """Scores materialized, kernel by kernel as PyTorch's standard attention launches them (the block
    comment above): layout copies of Q and K, S = QK^T (a GEMM writing S to HBM), for a masked problem
    the additive L x S mask built once and added to S (another read and write of S), P = softmax(S), a
    layout copy of V, O = PV (a GEMM reading P). Train adds autograd's dP = dO V^T, dV = P^T dO,
    dS = softmax-backward(P, dP), dQ = dS K and dK = dS^T Q each scaled by the softmax scale, and the
    packed gradient stacked. Every score is computed, live or not.

    The mask add reads the broadcast mask once per (batch, head) slice (stride 0 over batch and heads),
    and those reads are priced at HBM bandwidth, as if no slice found the mask in L2. An LRU L2 would
    keep it while its reuse distance (the mask and one slice of S read and written, 3 L S dtype bytes)
    fits, which is L <= 2048 on the 40-50 MB L2 of A100/H100; but the published A100 and H100
    standard-attention times (FlashAttention-2 and -3 figures, SageAttention's A100 SDPA-math rows) put
    the causal mask's extra cost at three S-sized passes at every length from 512 to 8192, not two, while
    the RTX 4090's SDPA-math rows show two at L = 1024 and three at 4096. Priced as three everywhere."""
    s = w.dtype_bytes
    d, dv, lq, lk = w.head_dim_qk, w.head_dim_v, w.seqlen_q, w.seqlen_kv
    bh = w.batch * w.heads_q
    live, _ = _segment_sums(w, mask)  # the real sequences' live pairs, every head (useful work)
    scores = bh * lq * lk
    ks = []
    # the score tiles are classified with the (first) head group's mask: a GEMM computes them all anyway
    m = w.qk_matmuls  # QK^T-shaped matmuls per score: one GEMM of m*d reduction dims
    rows, slices, cls = lq, bh, mask.head_groups(w.heads_q)[0][0]
    if w.v_in_k:  # a latent shared by the heads: the heads fold into the GEMM rows (DeepSeek's einsum over the cache)
        rows, slices, cls = lq * w.group, w.batch * w.heads_kv, None
    # the GEMMs' operands as the layout copies write them (K and V per query head: what each head's GEMM reads)
    q_b, k_b, v_b = slices * rows * m * d * s, slices * lk * m * d * s, slices * lk * dv * s
    copies = w.phase != "decode"
    if copies:
        ks.append(elementwise("q_layout", r, read_bytes=q_b, write_bytes=q_b))
        ks.append(elementwise("k_layout", r, read_bytes=k_b, write_bytes=k_b))
    qk = gemm("qk_gemm", r, rows, lk, m * d, slices, w.dtype, w.qk_accum, useful_flops=2 * m * d * live, mask=cls,
              role="scores")
    ks.append(qk)
    if live < scores:  # a mask to apply: built once (L x S, fp32 then the input dtype), added to every slice
        ls = lq * lk
        ks.append(elementwise("mask_fill", r, read_bytes=0, write_bytes=ls * 4))
        ks.append(elementwise("mask_triu", r, read_bytes=ls * 4, write_bytes=ls * 4))
        ks.append(elementwise("mask_cast", r, read_bytes=ls * 4, write_bytes=ls * s))
        ks.append(elementwise("mask_add", r, read_bytes=2 * scores * s, write_bytes=scores * s,
                              fp32_ops=float(scores) * fam.mask_fp32_ops_per_score))
    ks.append(elementwise("softmax", r, read_bytes=scores * s, write_bytes=scores * s,
                          exps=float(scores) * (1 + w.score_sfu_ops),
                          fp32_ops=float(scores) * (fam.softmax_fp32_ops_per_score + w.score_fp32_ops)))
    if copies:
        ks.append(elementwise("v_layout", r, read_bytes=v_b, write_bytes=v_b))
    ks.append(gemm("pv_gemm", r, rows, dv, lk, slices, w.dtype, w.pv_accum, useful_flops=2 * dv * live))
    if w.phase == "train":
        ks.append(gemm("bwd_dp_gemm", r, lq, lk, dv, bh, w.dtype, w.pv_accum, useful_flops=2 * dv * live))
        ks.append(gemm("bwd_dv_gemm", r, lk, dv, lq, bh, w.dtype, w.pv_accum, useful_flops=2 * dv * live))
        ks.append(elementwise("softmax_bwd", r, read_bytes=2 * scores * s, write_bytes=scores * s,
                              fp32_ops=(3.0 + 2 * w.score_fp32_ops) * scores))
        ks.append(gemm("bwd_dq_gemm", r, lq, d, lk, bh * m, w.dtype, w.qk_accum, useful_flops=2 * m * d * live))
        ks.append(elementwise("bwd_dq_scale", r, read_bytes=q_b, write_bytes=q_b))
        ks.append(gemm("bwd_dk_gemm", r, lk, d, lq, bh * m, w.dtype, w.qk_accum, useful_flops=2 * m * d * live))
        ks.append(elementwise("bwd_dk_scale", r, read_bytes=k_b, write_bytes=k_b))
        ks.append(elementwise("bwd_qkv_stack", r, read_bytes=q_b + k_b + v_b, write_bytes=q_b + k_b + v_b))
    return ks


# -- memory footprint --------------------------------------------------------------------------
def memory_bytes(w: Workload, fam: Family, kernels: list) -> int:
    """Bytes resident on the device for this op: inputs, outputs and the op's own buffers."""
    s = w.dtype_bytes
    kv = w.kv_cache_bytes() if w.seqlens is None else None
    w = w.aggregate() if fam.fused else w  # the kernel's buffers: packed or padded (eager always pads)
    q = w.batch * w.heads_q * w.seqlen_q * w.head_dim_qk * s
    o = w.batch * w.heads_q * w.seqlen_q * w.head_dim_v * s
    kv = kv if kv is not None else w.kv_cache_bytes()
    rows = w.batch * w.heads_q * w.seqlen_q
    total = q + o + kv
    if not fam.fused:
        scores = rows * w.seqlen_kv * s
        total += scores * (3 if w.phase == "train" else 2)  # S and P (train: P, dP, dS)
    else:
        total += rows * 4  # log-sum-exp
    if w.phase == "train":
        total += q + o + kv + rows * 4 + rows * w.head_dim_qk * 4  # dQ, dO, dK, dV, D, dQ accumulator
        if w.group > 1:
            total += w.batch * w.heads_q * w.seqlen_kv * (w.head_dim_qk + w.head_dim_v) * s
    for k in kernels:
        if k.splits > 1:
            total += rows * (w.head_dim_v + 1) * 4 * k.splits
    return int(total)


# -- entry points --------------------------------------------------------------------------------
def attention_kernels(w: Workload, r: Rates, fam: Family, mask: Mask) -> list:
    if not fam.fused:
        return eager_attention(w, r, fam, mask)
    if w.phase == "decode":
        return fused_decode(w, r, fam, mask)
    fwd = fused_forward(w, r, fam, mask, write_lse=True)
    if w.phase == "train":
        return [fwd] + fused_backward(w, r, fam, mask, fwd.tile_obj)
    return [fwd]


def resolve_family(hw: Hardware, kernel: str | None) -> Family:
    """The named family, or the hardware's default when `kernel` is None."""
    if kernel is not None and not str(kernel).strip():
        raise AttnsimError("kernel is empty; allowed: " + ", ".join(sorted(FAMILIES)) + " (None: the hardware's default)")
    return get_family(hw.default_kernel if kernel is None else kernel)


def predict(w: Workload, hw: Hardware, kernel: str | None = None, mask: Mask | None = None,
            variant: str = "mha", scope: str = "attention", d_model: int | None = None,
            compare: bool = False, layout=None, rope_dim: int | None = None,
            calibration="default") -> Prediction:
    """Predicted time of one call of the attention op of one layer (train: forward + backward;
    decode: one step), with its bound, FLOPs, bytes, tiles and per-kernel rows.

    `calibration`: fitted factors applied through `rates` to the family's kernels and to the library
    kernels around them (GEMMs, elementwise): "default" = the shipped calibration of this GPU and
    family (or $ATTNSIM_CALIBRATION: a calibration file, or "none"), a calibration file's path, a
    `rates.Calibration`, or None for the raw model (`calibrations.choose`; the Prediction's
    `calibration_info` says which group applied, its rows and held-out error).
    `compare=True`: also price dense attention (the `speedup` block of a non-dense mask), the other
    varlen layout (`varlen`) and the layout's alternative implementation (`alternative`; MoH: its
    useful FLOPs and bound are the alternative's). The default skips them: one pricing, those blocks
    None (the CLI and `problem.predict_problem` ask for them).

    `layout` (attnsim.simulator.layouts.Layout): the variant's head layout; its core replaces `w`
    and its KV cache is reported. Without one, the standard MHA/GQA layout of `w`.
    scope="layer" adds the ops around the core (projections, RoPE on `rope_dim` channels per head
    [default: the head dim], and the variant's own: latent projections, routers, convolutions);
    d_model defaults to heads_q * head_dim_qk."""
    if scope not in ("attention", "layer"):
        raise AttnsimError(f"scope={scope!r}; allowed: attention, layer")
    if isinstance(hw, str):
        hw = load_hardware(hw)
    if not isinstance(hw, Hardware):
        raise AttnsimError(f"hw={hw!r}: expected a Hardware (load_hardware) or a profile name or path")
    if mask is not None and not isinstance(mask, Mask):
        raise AttnsimError(f"mask={mask!r}: expected a Mask (attnsim.simulator.masks); variants by name: "
                           f"attnsim.predict_variant")
    for name, v in (("d_model", d_model), ("rope_dim", rope_dim)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < (name == "d_model")):
            raise AttnsimError(f"{name}={v!r} must be a {'positive' if name == 'd_model' else 'non-negative'} integer")
    if d_model is not None:
        check_limit("d_model", d_model, MAX_D_MODEL, "channels (2^20)")
    if rope_dim is not None and scope == "layer" and layout is None:
        check_rope(rope_dim, w.head_dim_qk)
    if layout is None:
        std = True
        d_model = d_model or w.heads_q * w.head_dim_qk
        layout = (standard(w, d_model, w.head_dim_qk if rope_dim is None else rope_dim) if scope == "layer"
                  else Layout(core=w, pre=[], post=[], kv_cache_bytes=w.kv_cache_bytes(), d_model=d_model))
    else:
        std = False
        w = layout.core
        mask = layout.mask or mask
    fam = resolve_family(hw, kernel)
    check_family(fam, hw, w.dtype, w.head_dim_qk, w.head_dim_v, w.phase, w.qk_accum, w.pv_accum, w.v_in_k)
    mask = (mask or mask_for(w.causal)).for_lengths(w.seqlen_q, w.seqlen_kv)
    for part in mask.passes():
        for sub, _ in part.head_groups(w.heads_q):
            sub.check_lengths_limit(w.seqlen_q, w.seqlen_kv)
    calibration, cal_info = choose(calibration, hw, fam, w.dtype, w.phase)
    if len(mask.passes()) > 1:
        return _multi_pass(w, hw, fam, mask, variant, scope, compare, d_model, calibration, cal_info)
    r = rates(hw, fam, calibration)  # the family's kernels
    lib = rates(hw, None, calibration)  # library kernels: GEMMs (cuBLAS/CUTLASS) and the mask's own ops
    ops, gate_work = lower(w, mask, layout, scope)
    kernels = price(ops, r, lib, fam, w.dtype)
    # the op's useful work: the real sequences (a padded varlen batch pads kernels, not the op)
    live, live_keys = _segment_sums(w, mask)
    works = attention_work_alternatives(w.aggregate(w.real_segments()), None, live_keys, pairs_total=live)  # [0]: reported
    if gate_work is not None:
        works = [wk + gate_work for wk in works]
    mem = memory_bytes(w, fam, kernels) + mask.extra_memory(w)
    # the layer's cache: the core's K/V (plus any state), or apart from them (MLA's up-projected K/V)
    mem += layout.kv_cache_bytes - (w.kv_cache_bytes() if layout.cache_is_core_kv else 0)
    activations = core_saved_bytes(w) if w.phase == "train" else None
    resolved = {}
    if w.seqlens is not None:
        resolved.update(varlen=w.varlen, seqlens_count=len(w.seqlens), seqlens_min=min(w.seqlens),
                        seqlens_mean=sum(w.seqlens) / len(w.seqlens), seqlens_max=max(w.seqlens))
    if scope == "layer":
        layer_work, saved, weights = layer_accounting(layout)
        works = [wk + layer_work for wk in works]
        t = w.aggregate().seqlen_q * layout.d_model * w.dtype_bytes  # the layer's input and output
        mem += weights * (2 if w.phase == "train" else 1) + saved + 2 * t
        if activations is not None:
            activations += saved
        resolved["d_model"] = layout.d_model
    # useful work: the FlashAttention convention for fused kernels (works[0]: S recomputed in the
    # backward); eager's own algorithm (works[-1]: P kept), which is all it executes
    reported = works[0] if fam.fused else works[-1]
    pred = Prediction(workload=w, hardware=hw, family=fam, variant=variant, bound=min_bound(works, hw),
                      kernels=kernels, kv_cache_bytes=layout.kv_cache_bytes, memory_bytes=mem, rates=r,
                      useful_flops=work_flops(reported), scope=scope, resolved=resolved, mask_name=mask.name,
                      notes=([mask.assumption] if mask.assumption else []) + list(layout.notes), works=works,
                      activation_bytes=activations, layout=None if std else dict(layout.shapes),
                      calibration_info=cal_info)
    if w.phase == "train" and fam.fused:
        pred.notes.append("train: forward + backward; the backward recomputes S from Q and K (FlashAttention "
                          "convention: backward 2.5x the forward's matmul FLOPs when head_dim_qk = head_dim_v)")
    if compare and not isinstance(mask, DenseMask) and layout.mask is None:
        dense = predict(w.with_(causal=False), hw, fam.name, DenseMask(), variant, scope, compare=False,
                        layout=None if std else _with_core(layout, w.with_(causal=False)), rope_dim=rope_dim,
                        d_model=d_model, calibration=calibration)
        pred.speedup = speedup_over_dense(pred, dense)
    if compare and w.seqlens is not None and fam.fused:
        other = predict(w.with_(varlen="padded" if w.varlen == "packed" else "packed"), hw, fam.name, mask,
                        variant, scope, d_model, compare=False, rope_dim=rope_dim, calibration=calibration)
        packed, padded = (pred, other) if w.varlen == "packed" else (other, pred)
        pred.varlen = {"layout": w.varlen, "packed_time_s": packed.time_s, "padded_time_s": padded.time_s,
                       "packed_flops": packed.flops, "padded_flops": padded.flops,
                       "padded_over_packed": padded.time_s / packed.time_s}
    if layout.alternative is not None and (compare or layout.useful_from_alternative):
        label, alt = layout.alternative
        other = predict(alt.core, hw, fam.name, mask_for(alt.core.causal), variant, scope, compare=False, layout=alt,
                        calibration=calibration)
        pred.alternative = {"impl": label, "time_s": other.time_s, "bound_s": other.bound.time_s,
                            "flops": other.flops, "useful_flops": other.useful_flops, "hbm_bytes": other.hbm_bytes,
                            "memory_bytes": other.memory_bytes, "kernels": [k.name for k in other.kernels]}
        if layout.useful_from_alternative:  # the dropped outputs are not useful work; the bound is the op's
            pred.useful_flops, pred.works = other.useful_flops, other.works
            pred.bound = smallest_bound([pred.bound, other.bound])
            pred.notes.append(f"useful FLOPs and the bound are the {label} implementation's: the {label} work is "
                              f"what the op needs, the rest is dropped")
    return pred


def lower(w: Workload, mask: Mask, layout: Layout, scope: str):
    """The problem as operations, in kernel order: [(op, backward)] — the mask's own ops (a gate, a
    token permutation) and the `Attention` core; with scope "layer" the layout's ops around them
    (train: their backward after). Also the useful Work of the mask's own ops (None: none counts)."""
    gate_ops, gate_work = mask.extra_ops(w)
    core = [(op, False) for op in gate_ops] + [(Attention("attention", w, mask), False)]
    return (layer_ops(layout, core) if scope == "layer" else core), gate_work


def price(ops, r: Rates, lib: Rates, fam: Family, dtype: str) -> list:
    """Kernel costs of lowered operations: the attention core at the family's rates `r`, everything
    else (GEMMs, pointwise ops, predictors) as library kernels at `lib`."""
    out = []
    for op, backward in ops:
        if isinstance(op, Attention):
            out.extend(attention_kernels(op.workload, r, fam, op.mask))
        else:
            out.extend(op_kernels(op, lib, dtype, backward))
    return out


def _with_core(layout, core):
    return replace(layout, core=core, alternative=None)


def _multi_pass(w, hw, fam, mask, variant, scope, compare, d_model, calibration, cal_info=None) -> Prediction:
    """Attention in several passes (duplex): each pass's kernels, then a merge of the passes'
    outputs (read them all, write one). The bound adds the passes' useful work unit by unit."""
    if scope != "attention":
        raise AttnsimError(f"{mask.name} takes several attention passes: priced for --scope attention only")
    passes = [predict(w, hw, fam.name, m, variant, compare=False, calibration=calibration) for m in mask.passes()]
    o = w.aggregate().seqlen_q * w.heads_q * w.head_dim_v * w.dtype_bytes
    merge = elementwise("merge_passes", passes[0].rates, read_bytes=len(passes) * o, write_bytes=o,
                        fp32_ops=float(len(passes) * o // w.dtype_bytes))
    works = [reduce(lambda a, b: a + b, ws) for ws in zip(*(p.works for p in passes))]
    pred = Prediction(workload=w, hardware=hw, family=fam, variant=variant, bound=min_bound(works, hw),
                      kernels=[k for p in passes for k in p.kernels] + [merge], kv_cache_bytes=w.kv_cache_bytes(),
                      memory_bytes=max(p.memory_bytes for p in passes) + o, useful_flops=work_flops(works[0]),
                      rates=passes[0].rates, scope=scope, mask_name=mask.name, works=works,
                      notes=[f"{len(passes)} attention passes: " + ", ".join(m.name for m in mask.passes())],
                      calibration_info=cal_info)
    if compare:  # one dense grid: the passes' grids averaged
        grid = sum(sum(p.tiles.values()) for p in passes) / len(passes)
        pred.speedup = speedup_over_dense(pred, predict(w.with_(causal=False), hw, fam.name, DenseMask(), variant,
                                                        compare=False, calibration=calibration), grid)
    return pred


def speedup_over_dense(pred: "Prediction", dense: "Prediction", grid=None) -> dict:
    """The speedup of a sparse mask over dense attention, four ways: by useful FLOPs, by live tiles and
    by iterated tiles at the sparse kernel's own tiling (every tile of its grid is dense's), and by
    predicted time (dense at its own best tiling)."""
    grid = sum(pred.tiles.values()) if grid is None else grid
    live = pred.tiles["full"] + pred.tiles["partial"]
    return {"useful_flops": dense.useful_flops / pred.useful_flops if pred.useful_flops else None,
            "live_tiles": grid / live if live else None,
            "iterated_tiles": grid / pred.tiles_iterated if pred.tiles_iterated else None,
            "time": dense.time_s / pred.time_s, "dense_time_s": dense.time_s}


def work_flops(work: Work) -> int:
    return int(round(sum(f for f, *_ in work.tensor)))
