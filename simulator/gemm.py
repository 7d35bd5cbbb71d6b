"""GEMM cost (projections, latent down/up, routers, eager attention): output tiles, waves, quantization.

C[M, N] = A[M, K] B[K, N], `batch` independent problems. One CTA per output tile; the tile is
chosen among a cuBLAS/CUTLASS-like candidate list by predicted time after the shared legality
check. FLOPs: useful 2*M*N*K*batch; executed 2*ceil(M/tm)*tm*ceil(N/tn)*tn*ceil(K/tk)*tk*batch.
"""
from __future__ import annotations

import numpy as np

from .errors import AttnsimError
from .hardware import DTYPE_BYTES, Hardware
from .masks import _cdiv

# (tile_m, tile_n, tile_k, warps, stages): CUTLASS's default SM80/SM90 threadblock shapes
# (cutlass/library/scripts/generator.py tile descriptions), largest first.
GEMM_TILES = ((128, 256, 64, 8, 3), (256, 128, 64, 8, 3), (128, 128, 64, 4, 4),
              (128, 64, 64, 4, 4), (64, 128, 64, 4, 4), (64, 64, 64, 4, 4))


def gemm(name: str, hw: Hardware, m: int, n: int, k: int, batch: int, dtype: str, accum: str = "fp32",
         out_dtype: str | None = None, useful_flops: int | None = None, b_shared: bool = False, mask=None):
    """Cost of a (batched) GEMM on `hw`. `b_shared`: B is one matrix for the whole batch (a weight)."""
    from .model import KernelCost
    s = DTYPE_BYTES[dtype]
    so = DTYPE_BYTES[out_dtype or dtype]
    clk = hw.clock_sustained_hz
    rate = hw.mma_flops_per_clk_per_sm(dtype, accum) * clk
    lat = hw.dram_latency_s
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
        t_cta = 2 * lat + max(2.0 * tm * tn * k_steps * tk / rate * kk, k_steps * lat / stages)
        makespan = np.ceil(ctas / slots) * t_cta
        l2 = ctas * (tm + tn) * k_steps * tk * s + batch * m * n * so
        t_hbm = hbm / hw.hbm_bandwidth_bytes_per_s
        t_l2 = l2 / hw.l2_bandwidth_bytes_per_s if hw.l2_bandwidth_bytes_per_s else 0.0
        time_s = hw.kernel_launch_overhead_s + max(makespan, t_hbm, t_l2)
        flops = 2 * ctas * tm * tn * k_steps * tk  # exact: Python integers
        # fastest first; among equally fast (HBM-bound) tiles, the one that wastes fewer FLOPs
        if best is None or (time_s, flops) < (best[0], best[1].flops):
            units = {"tensor": flops / (rate * hw.sm_count), "hbm": t_hbm, "schedule": float(makespan)}
            if t_l2:
                units["l2"] = t_l2
            limit = "hbm" if t_hbm >= max(makespan, t_l2) else "l2" if t_l2 >= makespan else (
                "tensor" if 2.0 * tm * tn * k_steps * tk / rate * kk >= k_steps * lat / stages else "latency")
            tiles, n_tiles = None, 0
            if mask is not None:  # classify the score tiles this GEMM computes (eager attention)
                from .masks import tile_rows
                f, p = tile_rows(mask, m, n, tm, tn)
                total = _cdiv(m, tm) * _cdiv(n, tn)
                tiles = {"full": int(f.sum()) * batch, "partial": int(p.sum()) * batch,
                         "empty": (total - int(f.sum()) - int(p.sum())) * batch}
                n_tiles = total * batch  # a GEMM computes every tile, live or not
            best = (time_s, KernelCost(
                name=name, time_s=float(time_s), flops=int(flops), useful_flops=int(useful), hbm_bytes=int(hbm),
                l2_bytes=int(l2), bound=limit, unit_times_s=units, ctas=int(ctas), ctas_per_sm=int(kk),
                waves=ctas / slots, wave_efficiency=ctas / (np.ceil(ctas / slots) * slots),
                tile=f"{tm}x{tn}x{tk} w{warps} s{stages}", tiles=tiles, tiles_iterated=n_tiles, smem_bytes=smem))
    if best is None:
        raise AttnsimError(f"no GEMM tile fits {hw.name}'s {hw.smem_per_block_bytes} B of shared memory per block")
    return best[1]
