"""The rates a prediction runs at: the single place where peaks, clocks, efficiencies and overheads
are read from a hardware profile.

    rates(hw, family=None, calibration=None) -> Rates   a prediction's rates (the sustained clock)
    peak_rates(hw) -> Rates                              the bound's rates (the maximum clock, efficiencies 1)

`family`: the kernel family whose MMA efficiency applies (FA2's mma.sync reaches about 2/3 of a
Hopper's tensor peak); None for library kernels (cuBLAS/CUTLASS GEMMs, elementwise kernels).
`calibration`: fitted factors (`Calibration`) that multiply each unit's rate and may replace the
clock, the launch overhead and the family's overlap; None = uncalibrated. Everything that prices
(`pricing`, `model`, `vectorized`, `bound`) takes its numbers from a `Rates`, so a calibration is
one object passed here and a cluster will be hardware plus links.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from .errors import AttnsimError
from .formulas import num
from .families import Family
from .hardware import Hardware


@dataclass(frozen=True)
class Calibration:
    """Fitted factors for one (hardware, kernel family); 1 / None = the profile's own figure.

    Each efficiency multiplies the rate of its unit (tensor: the MMA rate after the family's own
    efficiency; hbm, l2: bandwidths); `clock_hz` replaces the sustained clock, `launch_overhead_s`
    the per-kernel overhead, `overlap` the family's softmax/MMA overlap. Five mechanisms the raw
    model leaves at zero cost: `cta_io` — the fraction of a CTA's own I/O (forward: its Q tile in and
    O tile out; backward: its K, V in and dK, dV out) that it does not hide behind its tiles, each
    SM streaming at its share of the HBM bandwidth; `partial_tile` — the extra time of a masked
    (partial) tile as a fraction of a full one (the causal diagonal's index work, predication and
    divergence beyond the mask FP32 ops priced); `causal` — the extra time of every tile of a kernel
    run with a causal mask, as a fraction (its loop bounds and masking steps per iteration, the uneven
    CTAs' effect on the pipeline); `backward` — a multiplier of the backward kernel's tile time (dQ
    atomics, dS staging); `smem_exposed` — the fraction of a tile's shared-memory operand time that
    its MMA and softmax chain waits on rather than hides (mma.sync operands loaded from shared memory
    into registers, ldmatrix sharing the warps' issue slots; for wgmma/tcgen05 kernels, the TMA writes
    the model takes not to contend with the operand reads; `model._tile_time`). `source` says what it
    was fitted on (device, dates, rows)."""
    tensor: float = 1.0
    exp: float = 1.0
    fp32: float = 1.0
    smem: float = 1.0
    hbm: float = 1.0
    l2: float = 1.0
    clock_hz: float | None = None
    launch_overhead_s: float | None = None
    overlap: float | None = None
    cta_io: float = 0.0
    partial_tile: float = 0.0
    causal: float = 0.0
    backward: float = 1.0
    smem_exposed: float = 0.0
    source: str = ""

    def __post_init__(self):
        def number(v):
            return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        for k in ("tensor", "exp", "fp32", "smem", "hbm", "l2"):
            v = getattr(self, k)
            if not (number(v) and 0 < v <= 1e3):
                raise AttnsimError(f"Calibration.{k}={v!r}: expected a factor in (0, 1000]")
        for k, lo, hi in (("cta_io", 0.0, 10.0), ("partial_tile", 0.0, 10.0), ("causal", 0.0, 10.0),
                          ("smem_exposed", 0.0, 1.0)):
            v = getattr(self, k)
            if not (number(v) and lo <= v <= hi):
                raise AttnsimError(f"Calibration.{k}={v!r}: expected a number in [{lo:g}, {hi:g}]")
        if not (number(self.backward) and 0 < self.backward <= 1e3):
            raise AttnsimError(f"Calibration.backward={self.backward!r}: expected a factor in (0, 1000]")
        if self.overlap is not None and not (number(self.overlap) and 0 <= self.overlap <= 1):
            raise AttnsimError(f"Calibration.overlap={self.overlap!r}: expected a fraction 0..1")
        for k in ("clock_hz", "launch_overhead_s"):
            v = getattr(self, k)
            if v is not None and not (number(v) and v >= 0):
                raise AttnsimError(f"Calibration.{k}={v!r}: expected a finite non-negative number")
        if self.clock_hz is not None and self.clock_hz <= 0:
            raise AttnsimError(f"Calibration.clock_hz={self.clock_hz!r}: expected a positive clock")
        if not isinstance(self.source, str):
            raise AttnsimError(f"Calibration.source={self.source!r}: expected words (a string)")

    @property
    def identity(self) -> bool:
        return self == Calibration(source=self.source)


_UNCALIBRATED = Calibration()
_RATES_MEMO_MAX = 512  # entries per hardware object (two per family and calibration)


@dataclass(frozen=True)
class Rates:
    """Per-SM and device rates at one clock. Per-SM rates are per second; `fp32_ops` counts FP32
    instructions (an FMA is one, two FLOPs)."""
    hw: Hardware  # the device, for its capacities (shared memory, registers, threads, SMs)
    clock_hz: float
    sm_count: int
    mma_efficiency: float  # the family's (and the calibration's) fraction of the tensor peak
    exp_efficiency: float
    fp32_efficiency: float
    smem_efficiency: float
    hbm_bytes_per_s: float
    l2_bytes_per_s: float  # 0: the profile sources no L2 bandwidth (L2 left out)
    dram_latency_s: float
    launch_overhead_s: float
    overlap: float  # the family's fraction of min(tensor, softmax) hidden behind the other
    exp2_emulation_fp32_ops: float
    calibrated: bool
    cta_io: float = 0.0  # unhidden fraction of a CTA's own I/O (Calibration.cta_io)
    partial_tile: float = 0.0  # extra time of a partial tile, as a fraction of a full one
    causal: float = 0.0  # extra time of every tile of a causal kernel, as a fraction
    backward: float = 1.0  # multiplier of backward tile time
    smem_exposed: float = 0.0  # fraction of a tile's shared-memory time not hidden behind its MMAs and softmax

    # -- per SM ------------------------------------------------------------------------------
    def mma_per_sm(self, dtype: str, accum: str = "fp32") -> float:
        return self.hw.mma_flops_per_clk_per_sm(dtype, accum) * self.clock_hz * self.mma_efficiency

    @property
    def exp_per_sm(self) -> float:
        return self.hw.exp_ops_per_clk_per_sm * self.clock_hz * self.exp_efficiency

    @property
    def fp32_ops_per_sm(self) -> float:
        return self.hw.fp32_flops_per_clk_per_sm / 2 * self.clock_hz * self.fp32_efficiency

    @property
    def smem_per_sm(self) -> float:
        return self.hw.smem_bytes_per_clk_per_sm * self.clock_hz * self.smem_efficiency

    # -- the whole device ------------------------------------------------------------------------
    def mma_device(self, dtype: str, accum: str = "fp32", sms: int | None = None) -> float:
        return (self.hw.mma_flops_per_clk_per_sm(dtype, accum) * (self.sm_count if sms is None else sms)
                * self.clock_hz * self.mma_efficiency)

    def exp_device(self, sms: int | None = None) -> float:
        return self.hw.exp_ops_per_clk_per_sm * (self.sm_count if sms is None else sms) * self.clock_hz \
            * self.exp_efficiency

    def fp32_ops_device(self, sms: int | None = None) -> float:
        return self.hw.fp32_flops_per_clk_per_sm / 2 * (self.sm_count if sms is None else sms) * self.clock_hz \
            * self.fp32_efficiency

    def smem_device(self) -> float:
        return self.hw.smem_bytes_per_clk_per_sm * self.sm_count * self.clock_hz * self.smem_efficiency


def rates(hw: Hardware, family: Family | None = None, calibration: Calibration | None = None) -> Rates:
    """A prediction's rates: the sustained clock, the family's MMA efficiency, the calibration's factors.
    Memoized on the (immutable) hardware object per family and calibration."""
    if calibration is not None and not isinstance(calibration, Calibration):
        raise AttnsimError(f"calibration={calibration!r}: expected a rates.Calibration (or None)")
    memo = hw.__dict__.setdefault("_rates", {})
    key = (None if family is None else (family.name, id(family)), calibration)
    r = memo.get(key)
    if r is None or (family is not None and memo.get(("family", key)) is not family):
        if len(memo) >= _RATES_MEMO_MAX:  # a fit prices thousands of calibrations: keep the memo bounded
            memo.clear()
        r = memo[key] = _rates(hw, family, calibration)
        memo[("family", key)] = family  # holds the family, so its id is not reused while the entry lives
    return r


def _rates(hw: Hardware, family: Family | None, calibration: Calibration | None) -> Rates:
    cal = calibration or _UNCALIBRATED
    eff = family.efficiency(hw.arch) if family is not None else 1.0
    l2 = hw.l2_bandwidth_bytes_per_s or 0.0
    return Rates(hw=hw, clock_hz=hw.clock_sustained_hz if cal.clock_hz is None else num(cal.clock_hz),
                 sm_count=hw.sm_count, mma_efficiency=eff * cal.tensor, exp_efficiency=cal.exp,
                 fp32_efficiency=cal.fp32, smem_efficiency=cal.smem,
                 hbm_bytes_per_s=hw.hbm_bandwidth_bytes_per_s * cal.hbm, l2_bytes_per_s=l2 * cal.l2,
                 dram_latency_s=hw.dram_latency_s,
                 launch_overhead_s=hw.kernel_launch_overhead_s if cal.launch_overhead_s is None
                 else num(cal.launch_overhead_s),
                 overlap=(family.overlap if family is not None else 0.0) if cal.overlap is None else cal.overlap,
                 exp2_emulation_fp32_ops=hw.exp2_emulation_fp32_ops, calibrated=not cal.identity,
                 cta_io=cal.cta_io, partial_tile=cal.partial_tile, causal=cal.causal, backward=cal.backward,
                 smem_exposed=cal.smem_exposed)


def peak_rates(hw: Hardware, clock_hz: float | None = None) -> Rates:
    """The bound's rates: every unit at its peak, at `clock_max_hz` (or `clock_hz`), efficiencies 1."""
    return Rates(hw=hw, clock_hz=hw.clock_max_hz if clock_hz is None else clock_hz, sm_count=hw.sm_count,
                 mma_efficiency=1.0, exp_efficiency=1.0, fp32_efficiency=1.0, smem_efficiency=1.0,
                 hbm_bytes_per_s=hw.hbm_bandwidth_bytes_per_s, l2_bytes_per_s=hw.l2_bandwidth_bytes_per_s or 0.0,
                 dram_latency_s=hw.dram_latency_s, launch_overhead_s=hw.kernel_launch_overhead_s, overlap=1.0,
                 exp2_emulation_fp32_ops=hw.exp2_emulation_fp32_ops, calibrated=False)


@dataclass(frozen=True)
class LinkCalibration:
    """Fitted factors for one link: `bandwidth` multiplies the per-direction bandwidth (the achieved
    fraction of the link's peak); `latency_s` replaces the profile's α. From link measurements
    (validation/distributed.py's collective micro-benchmark) when a multi-GPU machine has run."""
    bandwidth: float = 1.0
    latency_s: float | None = None
    source: str = ""

    def __post_init__(self):
        if not (isinstance(self.bandwidth, numbers.Real) and not isinstance(self.bandwidth, bool)
                and math.isfinite(self.bandwidth) and 0 < self.bandwidth <= 1e3):
            raise AttnsimError(f"LinkCalibration.bandwidth={self.bandwidth!r}: expected a factor in (0, 1000]")
        if self.latency_s is not None and not (isinstance(self.latency_s, numbers.Real)
                                               and math.isfinite(self.latency_s) and self.latency_s >= 0):
            raise AttnsimError(f"LinkCalibration.latency_s={self.latency_s!r}: expected a non-negative number")


@dataclass(frozen=True)
class LinkRates:
    """A link's rates as a collective sees them: per-direction bandwidth per GPU and per-step latency,
    with a host-memory staging (no peer-to-peer) folded in: half the bandwidth, twice the latency."""
    bytes_per_s: float
    latency_s: float
    peak_bytes_per_s: float  # the speed-of-light bandwidth (the profile's figure, staging folded in)
    in_switch_reduction: bool
    p2p: bool
    peer_bytes_per_s: float | None = None  # mesh: one peer's direct link (calibrated like bytes_per_s)
    peak_peer_bytes_per_s: float | None = None

    def bandwidth(self, group_size: int, single_peer: bool = False, peak: bool = False) -> float:
        """What one GPU sends per direction in a group of `group_size` ranks: the link's figure, capped on a
        mesh by the direct links the group uses ((p - 1) peers; one for a point-to-point transfer)."""
        bw, peer = (self.peak_bytes_per_s, self.peak_peer_bytes_per_s) if peak else (self.bytes_per_s,
                                                                                     self.peer_bytes_per_s)
        if peer:
            bw = min(bw, peer * (1 if single_peer else max(1, group_size - 1)))
        return bw


def link_rates(link, calibration: LinkCalibration | None = None) -> LinkRates:
    """A `cluster.Link`'s rates: the profile's figures, a transfer without peer-to-peer staged through
    host memory (it crosses PCIe twice: bandwidth halved, latency doubled), times the calibration."""
    cal = calibration or LinkCalibration()
    staged = 1 if link.p2p else 2
    peak = link.bandwidth_bytes_per_s / staged
    lat = link.latency_s if cal.latency_s is None else cal.latency_s
    peer = link.peer_bandwidth_bytes_per_s / staged if link.peer_bandwidth_bytes_per_s else None
    return LinkRates(bytes_per_s=peak * cal.bandwidth, latency_s=lat * staged, peak_bytes_per_s=peak,
                     in_switch_reduction=link.in_switch_reduction, p2p=link.p2p,
                     peer_bytes_per_s=peer * cal.bandwidth if peer else None, peak_peer_bytes_per_s=peer)
