"""Kernel families: the tile tables, head-dim padding, schedule traits and the one legality check.

A family is the implementation whose time `time_s` predicts (`--kernel fa2|fa3|fa4|cudnn|ck|triton|eager`).
Its numbers are data with their sources, not tuning knobs: tile tables are copied from the
family's own launch code, schedule traits (does softmax overlap the matmuls?) from its papers.
Efficiency factors that nobody publishes are left at 1 and are what calibration fits later.

`can_implement(family, hw, tile, ...)` is the single legality function: the simulator's tile
choice and the kernels' autotune filter (issue 5) both call it. `hw` is a `hardware.Hardware`
throughout (not imported here: the loader imports this table to check a profile's default kernel).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .dtypes import DTYPE_BYTES
from .errors import AttnsimError, UnsupportedCore, unknown
from .ops import Tile


@dataclass(frozen=True)
class Legality:
    ok: bool
    smem_bytes: int
    regs_per_thread: int
    ctas_per_sm: int
    reason: str = ""


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    source: str
    archs: tuple  # architectures the family runs on
    dtypes: tuple  # compute dtypes it supports
    head_dims: tuple  # compiled head dims; a head dim is padded up to the next one
    overlap: float  # fraction of min(tensor, softmax) hidden behind the other (1 = perfect overlap)
    overlap_source: str
    smem_layout: str  # "q_kv" (Q + stages x (K, V)) or "q_kv_tmem" (Blackwell: accumulators in TMEM)
    softmax_fp32_ops_per_score: float  # FP32 instructions per score outside the exp (scale, max, sum, rescale)
    mask_fp32_ops_per_score: float  # extra FP32/INT instructions per score in a partial tile (index, compare, select)
    bwd_fp32_ops_per_score: float  # backward: dS = P * (dP - D) and scaling
    reg_overhead_per_thread: int  # registers beyond the fp32 accumulators (addresses, fragments, softmax state)
    mma_efficiency: dict = field(default_factory=dict)  # arch -> fraction of the tensor peak the MMA instruction reaches
    mma_efficiency_source: str = ""
    pack_gqa_decode: bool = True  # decode packs the query heads of a kv head into the tile's rows
    split_kv: bool = True  # decode splits the kv length (flash-decoding) with FA's heuristic
    split_style: str = "fa3"  # which FlashAttention split heuristic: "fa2" (flash_api.cpp) or "fa3" (heuristics.h)
    fused: bool = True  # False: eager attention, scores materialized in HBM
    autotune: bool = False  # True: the legal tile with the smallest predicted time (Triton's autotune)
    train_dtypes: tuple = ("fp16", "bf16")  # dtypes its backward supports
    accum_types: tuple = ("fp32",)  # accumulate types its matmuls support
    mma_m: int = 16  # BLOCK_M must be a multiple of the MMA instruction's M (mma.sync 16, wgmma 64, tcgen05 64)
    mma_n: int = 16  # BLOCK_N must be a multiple of this (the instruction's N step and the kernels' own tables)
    latent_dims: tuple = ()  # V widths it runs with V read as a slice of K (absorbed MLA decode)
    latent_source: str = ""
    latent_exact: bool = False  # True: only the listed latent widths; False: a latent pads up to the next one
    # tile tables: functions of (hw, dp, dvp, causal, dtype, local) / (hw, dp, dvp, causal, dtype) / (hw, dp, dvp)
    # returning the family's tiles, its own choice first (None: the family has no such kernel)
    fwd_tiles: Callable | None = field(default=None, repr=False)
    bwd_tiles: Callable | None = field(default=None, repr=False)
    decode_tiles: Callable | None = field(default=None, repr=False)
    kv_by_tma: bool = False  # K/V tiles arrive by TMA (async proxy): no shared-memory writes priced
    smem_reader: str = "warp16"  # who reads a K/V tile from shared memory (see SMEM_READERS)
    smem_reader_by_arch: dict = field(default_factory=dict)  # arch -> reader, where it differs
    pack_gqa_max_q: int | None = None  # decode packs the GQA group into the rows only up to this many query tokens
    warp_lanes: int = 32  # threads per warp: 32 on NVIDIA; 64 for a CDNA wave64 wavefront (num_warps counts wavefronts)
    smem_kv_chunk: int = 0  # layout "q_regs_kv_chunks": keys (K) and head-dim columns (V) per staged LDS chunk
    # (arch, phase, d, dv) -> None when the family runs these head dims in this phase on this arch, else the
    # documented limit in words (None: every head dim that pads to `head_dims`, every phase)
    phase_head_dims: Callable | None = field(default=None, repr=False)
    # forward: part of the softmax's exp2s run as a polynomial on the FP32 (FMA) pipes instead of the SFU, so a
    # tile's softmax time is the SFU and the FP32 pipes sharing its exp2s at their best split (the bound's exp
    # term, per SM: `model._fwd_tile_costs`); masked (partial) tiles keep every exp2 on the SFU unless their padded
    # head dim is in exp2_emulation_masked_dims. The profile's exp2_emulation_fp32_ops prices one emulated exp2.
    exp2_emulation: bool = False
    exp2_emulation_masked_dims: tuple = ()
    exp2_emulation_source: str = ""
    # the kernels' compiled code where it is known (`compiled_tile`: attnsim's own Triton kernels compiled for the
    # GPU's compute capability, simulator/triton_compiled.json): a tile that spills is illegal, its registers
    # are ptxas's, and a forward tile computes the compiled code's exps per score
    compiled: bool = False
    # decode's row block: the packed rows rounded up to a power of two (at least 16), at most the tile's BLOCK_M
    # (attnsim's decode kernel: BLOCK_R = min(next power of two of the rows, 64)); else always BLOCK_M
    decode_rows_fit: bool = False
    # the backward as two kernels with no atomics (attnsim's _bwd_dkdv_kernel over kv tiles: S, dP, dV, dK; then
    # _bwd_dq_kernel over query tiles: S, dP and dQ recomputed), dK/dV accumulated in fp32 per query head and then
    # summed over each GQA group and converted; else FlashAttention's one kernel with fp32 dQ atomics
    bwd_split: bool = False
    # how the grid hands its CTAs to the SMs under a causal mask, per role ("forward", "backward"): one of
    # schedule.ORDERS — "ascending" (each (batch, head)'s tiles launched shortest first), "descending" (longest
    # first), "balanced" (a scheduler that balances the whole grid, or an order not known: the closed form)
    cta_order: dict = field(default_factory=dict)
    cta_order_source: str = ""

    def pad_head_dim(self, d: int) -> int | None:
        for h in self.head_dims:
            if d <= h:
                return h
        return None

    def pad_dims(self, d: int, dv: int, v_in_k: bool = False):
        """(padded head_dim_qk, padded head_dim_v). With V a slice of K (absorbed MLA: K = [latent,
        rope]), the latent width must be one the family compiles and the rope part pads on its own;
        (None, None) when the family cannot run it."""
        if not v_in_k:
            return self.pad_head_dim(d), self.pad_head_dim(dv)
        rope = self.pad_head_dim(d - dv) if d > dv else 0
        lat = (dv if dv in self.latent_dims else None) if self.latent_exact else next(
            (x for x in self.latent_dims if x >= dv), None)
        if lat is None or rope is None:
            return None, None
        return lat + rope, lat

    def order(self, role: str) -> str:
        """The CTA launch order of this role's kernel under a causal mask (`cta_order`; "balanced" if not known)."""
        return self.cta_order.get(role, "balanced")

    def efficiency(self, arch: str) -> float:
        return self.mma_efficiency.get(arch, 1.0)


# -- tile tables (the Family fields point at these) -------------------------------------------------------------------------
def _fa2_fwd(hw, dp: int, dvp: int, causal: bool, dtype: str, local: bool = False):
    """FA2 forward tiles (flash_fwd_launch_template.h, no dropout): (BLOCK_M, BLOCK_N, warps).
    sm8x = compute capability 8.6/8.9 (Ada, GA10x)."""
    return _fa2_table(hw, dp, causal) + _FA2_FALLBACKS


# smaller tiles after the table's choice, for devices with less shared memory per block (MI300X's
# 64 KiB LDS: the CK-based ROCm port's own tile tables are not modeled)
_FA2_FALLBACKS = [Tile(64, 64, 4, 1), Tile(64, 32, 4, 1), Tile(32, 32, 4, 1)]


def _fa2_table(hw, dp: int, causal: bool):
    sm8x = hw.compute_capability in ("8.6", "8.7", "8.9")
    if dp <= 64:
        return [Tile(128, 128, 4, 1)]
    if dp <= 96:
        return [Tile(64, 64, 4, 1)] if (sm8x and causal) else [Tile(128, 64, 4, 1)]
    if dp <= 128:
        if sm8x:
            return [Tile(64, 64, 4, 1)] if causal else [Tile(128, 32, 4, 1)]
        return [Tile(128, 64, 4, 1)]
    if dp <= 192:
        return [Tile(128, 64, 8, 1)]
    # hdim 256: 128 x 64 when the block can hold 2*256*(128 + 2*64) B and the SM cannot hold two
    # 64 x 64 CTAs (A100); else 64 x 64 for 2 CTAs per SM (H100)
    if hw.smem_per_block_bytes >= 2 * dp * (128 + 2 * 64) and hw.smem_per_sm_bytes < 4 * dp * (64 + 2 * 64):
        return [Tile(128, 64, 8, 1)]
    return [Tile(64, 64, 4, 1)]


def _fa3_fwd(hw, dp: int, dvp: int, causal: bool, dtype: str, local: bool = False):
    """FA3 forward tiles: tile_size_fwd_sm90 (hopper/tile_size.h), is_causal and is_local (a sliding
    window) as FA3 tells them apart. Warps: BLOCK_M/64 consumer warpgroups + 1 producer warpgroup;
    2 K/V stages."""
    if DTYPE_BYTES[dtype] == 2:
        if dp <= 64:
            bm, bn = ((64, 64) if dvp == 512 else (128, 112) if dvp == 256
                      else (192, 128 if causal else 160 if local else 192))
        elif dp <= 96:
            bm, bn = 192, 128 if local else 144
        elif dp <= 128:
            bm, bn = 128, 128 if (causal or local) else 176
        elif dp <= 192:
            bm, bn = 128, 96 if local else 128 if dvp <= 128 else 112
        else:
            bm, bn = 128, 64 if local else 80
    else:
        bm, bn = {64: (192, 160), 96: (192, 128), 128: (128, 224), 192: (128, 160)}.get(
            dp, (128, 64 if local else 128))
    # the table's tile first; narrower K/V tiles after it for a kernel whose operands outgrow it (a second
    # K-wide operand, a wide latent): the fallbacks are attnsim's, not FA3's table
    return [Tile(bm, bn, 4 * (bm // 64 + 1), 2)] + [Tile(m, n, 4 * (m // 64 + 1), 2) for m, n in
                                                   ((128, 96), (128, 64), (64, 64)) if n < bn or m < bm]


def _fa4_fwd(hw, dp: int, dvp: int, causal: bool, dtype: str, local: bool = False):
    """FA4 forward tiles (Dao-AILab/flash-attention flash_attn/cute).

    Head dims <= 192 (flash_fwd_sm100.py FlashAttentionForwardSm100: m_block_size = n_block_size = 128,
    q_stage = 2): two 128-row Q tiles per CTA (BLOCK_M = 2 x 128), BLOCK_N = 128, 16 warps (2 x 4 softmax,
    4 correction, MMA, epilogue, load, empty); 3 K/V stages up to 128, and at (192, 128) the 2 stages of
    attnsim's smem formula (FA4 fits a third by alternating 192- and 128-wide buffers, uneven_kv_smem).
    Head dim 256 (sm100_hd256_2cta_fmha_forward.py BlackwellFusedMultiHeadAttentionForward, the kernel of the
    FA4-COMMIT-HD256 rows): 2-CTA clusters (cluster_shape_mn = (2, 1); one 256 x 128 tcgen05 MMA spans the
    pair), each CTA one 128-row Q tile (tile_m = tile_n = 128 asserted), 12 warps (4 softmax, 4 correction, MMA,
    load, 2 empty); kv_stage = 4 buffers each for K and V, a buffer holding this CTA's half of a 128 x 128 slice of
    the pair's B operand (16 KiB): 128 KiB of K/V = the 2 whole 128 x 256 tiles of attnsim's smem formula (with Q's
    64 KiB, the kernel's 192 KiB per CTA). Assumption: the pair is priced as two independent 128-row CTAs (its joint
    256-row causal range, one more masked tile for the lower-row CTA on the diagonal, is not modeled)."""
    if dp <= 128:
        return [Tile(256, 128, 16, 3)]
    if dp <= 192:
        return [Tile(256, 128, 16, 2)]
    return [Tile(128, 128, 12, 2)]


def _fa4_head_dims(arch: str, phase: str, d: int, dv: int):
    """FA4's head dims on SM100 (flash_attn/cute/interface.py _validate_head_dims: "head_dim and head_dim_v must be
    between 8 and 128 ..., or (192, 128) for DeepSeek, or (256, 256) for hd256"). The backward: flash_bwd_sm100.py
    asserts "head_dim and head_dim_v must be the same for now" (no 192/128), and (256, 256) runs the dedicated 2-CTA
    backward (sm100_hd256_2cta_fmha_backward.py: "Supported head dimensions: 256 only"). Decode: attnsim prices
    FA4's decode with split-KV and packed GQA, which the hd256 kernel refuses (sm100_hd256_2cta_fmha_forward.py:
    "does not support SplitKV", "does not support pack_gqa"). None when allowed, else the rule in words."""
    if max(d, dv) <= 128:
        return None if phase != "train" or d == dv else "head_dim_qk = head_dim_v (<= 128), or 256/256"
    if (d, dv) == (192, 128):
        return None if phase != "train" else "head_dim_qk = head_dim_v (<= 128), or 256/256"
    if (d, dv) == (256, 256):
        return None if phase != "decode" else "head dims <= 128, or 192/128"
    return "head dims <= 128, or 192/128, or 256/256"


def _triton_fwd(hw, dp: int, dvp: int, causal: bool, dtype: str, local: bool = False):
    return list(_TRITON_SPACE)


def _fa_bwd(stages: int):
    """Backward tiles (BLOCK_M = query rows per inner step, BLOCK_N = kv rows owned by the CTA).
    FA2 flash_bwd_launch_template.h (sm80): hdim <= 64: 128 x 128, 8 warps; hdim <= 128: 64 x 128,
    8 warps; larger: 64 x 64, 8 warps. FA3/FA4 use the same shapes with 2 stages (a simplification)."""
    return lambda hw, dp, dvp, causal, dtype: _fa_bwd_table(stages, dp)


def _triton_bwd(hw, dp: int, dvp: int, causal: bool, dtype: str):
    return [Tile(bm, bn, w, s) for bm in (32, 64) for bn in (64, 128) for w in (4, 8) for s in (1, 2)]


def _attnsim_bwd(hw, dp: int, dvp: int, causal: bool, dtype: str):
    """attnsim's backward tiles: Triton's backward space with every tile's pipelined (two-stage) configuration
    listed before the one-stage ones. Where the model prices the two alike — a second CTA resident on the SM
    hides the one-stage loop's synchronous loads (its compiled loop loads Q and dO through registers, no
    cp.async: `kv_async` false) — the tie keeps the pipelined loop, whose speed does not rest on that second
    CTA (Triton's tutorial 06-fused-attention.py pipelines its backward too: NUM_STAGES = 5)."""
    return sorted(_triton_bwd(hw, dp, dvp, causal, dtype), key=lambda t: -t.stages)


def _fa_bwd_table(st: int, dp: int):
    small = [Tile(32, 64, 4, 1), Tile(32, 32, 4, 1), Tile(16, 32, 4, 1)]  # fallbacks (64 KiB LDS)
    if dp <= 64:
        return [Tile(128, 128, 8, st), Tile(64, 128, 8, st), Tile(64, 64, 8, st)] + small
    if dp <= 128:
        return [Tile(64, 128, 8, st), Tile(64, 64, 8, st)] + small
    return [Tile(64, 64, 8, st), Tile(32, 64, 8, st)] + small


# Split-KV decode tiles, preferred first; the first legal one is used.
def _fa2_decode(hw, dp: int, dvp: int):
    """FA2 run_mha_fwd_splitkv_dispatch: BLOCK_M = 64, BLOCK_N = 256 / 128 / 64 for hdim <= 64 /
    <= 128 / larger, 4 warps."""
    return [Tile(64, 256 if dp <= 64 else 128 if dp <= 128 else 64, 4, 1), Tile(64, 64, 4, 1),
            Tile(64, 32, 4, 1), Tile(16, 32, 4, 1)]


def _fa3_decode(hw, dp: int, dvp: int):
    """FA3/FA4 decode: BLOCK_M = 64 rows (one wgmma M), BLOCK_N = 128 shrinking with the head dim as
    FA3's tile_size_fwd_sm90 does (128 x 80 at hdim 256); MLA's 512-wide latent (FA3's q_v path):
    tile_size_fwd_sm90's 64 x 64."""
    if dvp == 512:
        return [Tile(64, 64, 8, 2)]
    return _fa4_decode(hw, dp, dvp)


def _fa4_decode(hw, dp: int, dvp: int):
    return [Tile(64, bn, 8, 2) for bn in (128, 112, 96, 80, 64)]


def _attnsim_decode(hw, dp: int, dvp: int):
    """attnsim's Triton decode (kernels/triton_attention.py prepared_decode): blocks of 64 packed rows and
    64 keys, 4 warps; MLA's wide latent (a head dim of 256 or more): 16 rows, 32 keys, 8 warps."""
    return [Tile(16, 32, 8, 2)] if max(dp, dvp) >= 256 else [Tile(64, 64, 4, 2)]


def _triton_decode(hw, dp: int, dvp: int):
    """Triton (no split): BLOCK_M = 16, BLOCK_N = 64."""
    return [Tile(16, 64, 4, 2), Tile(16, 32, 4, 2)]


# -- AMD Composable Kernel FMHA (ck): ROCm/composable_kernel example/ck_tile/01_fmha codegen tables -----------------
# Tile(BLOCK_M = bm0, BLOCK_N = bn0, num_warps = wave64 wavefronts, stages = K/V LDS buffers). The head-dim chunk
# (bk0 = bk1 = 32 in every fp16/bf16 row) is Family.smem_kv_chunk; bn1 (= the V head dim) is not a Tile field.
_CK_SRC = "ROCm/composable_kernel@c6ec53b3 example/ck_tile/01_fmha/codegen/ops/"


def _ck_fwd(hw, dp: int, dvp: int, causal: bool, dtype: str, local: bool = False):
    """CK forward (fmha_fwd.py get_hdim_tile_size_dict; the API takes the first (hdim, hdim_v) row with
    hdim_q <= hdim and hdim_v <= hdim_v). fp16/bf16, pipeline qr_async (Q in registers, K/V through 3 LDS
    buffers: NumPrefetchK = 3): bm0 = 128; bn0 = 64 up to (64, 64), else 128; 2 waves up to (32, 32), else 4
    (waves split the query rows only: rm0 x 1 x 1; warp tile 32x32x16). fp8 (pipeline qr, 1 LDS buffer;
    rows 64, 128, 256): 128 x 64 with 2 waves at hdim 64, else 128 x 128 with 4. Causal and windows use the
    same tiles (the mask is a template argument, not a tile choice)."""
    if DTYPE_BYTES[dtype] == 1:
        return [Tile(128, 64, 2, 1)] if max(dp, dvp) <= 64 else [Tile(128, 128, 4, 1)]
    small = dp <= 64 and dvp <= 64
    return [Tile(128, 64 if small else 128, 2 if dp <= 32 and dvp <= 32 else 4, 3)]


def _ck_bwd(hw, dp: int, dvp: int, causal: bool, dtype: str):
    """CK backward (fmha_bwd.py get_fmha_bwd_dq_dk_dv_tile_ppl_dict_from_dtype, pipeline kr_ktr_vr: the CTA
    keeps its K, K^T and V in registers; dispatch on hdim_q <= hdim and hdim_v <= hdim): BLOCK_M = bm0 query
    rows per step, BLOCK_N = bn0 keys owned; 4 waves, warp tiles 16x16; occupancy 1. hdim 32/64: 32 x 128;
    128: 16 x 128; 256: 16 x 64."""
    h = max(dp, dvp)
    return [Tile(32, 128, 4, 1)] if h <= 64 else [Tile(16, 128, 4, 1)] if h <= 128 else [Tile(16, 64, 4, 1)]


def _ck_decode(hw, dp: int, dvp: int):
    """CK split-KV decode (fmha_fwd_splitkv.py get_fmha_fwd_tile_dict_from_dtype, fp16/bf16, pipeline qr:
    one LDS buffer): hdim 32: 32 x 64, 2 waves; 64: 64 x 64, 4 waves; 96-256: 64 x 128, 4 waves (warp tiles
    16x16x16). The fp8 rows (128-row tiles) are not used: the decode table is not keyed by dtype."""
    h = max(dp, dvp)
    return [Tile(32, 64, 2, 1)] if h <= 32 else [Tile(64, 64, 4, 1)] if h <= 64 else [Tile(64, 128, 4, 1)]


# -- cuDNN SDPA (cudnn): the documented support surface (cuDNN backend 9.18.1) ---------------------------------------
_CUDNN_MATRIX = ("cudnn-frontend docs/operations/Attention.md 'Support Matrix' (based on cuDNN backend 9.18.1; "
                 "https://docs.nvidia.com/deeplearning/cudnn/frontend/latest/operations/Attention.html)")


def _cudnn_head_dims(arch: str, phase: str, d: int, dv: int):
    """The support matrix per arch and phase: Hopper prefill/decode/bprop d <= 256; Blackwell (B200/B300)
    prefill d <= 256, decode d <= 128 or (d_qk, d_vo) = (192, 128), bprop d <= 128 or (192, 128) or
    (256, 256); footnote 5: d_qk = d_vo except (192, 128). None when allowed, else the rule in words."""
    if d != dv and (d, dv) != (192, 128):
        return "head_dim_qk = head_dim_v, or 192/128"
    if arch != "blackwell" or phase == "prefill":
        return None
    pairs = ((192, 128),) if phase == "decode" else ((192, 128), (256, 256))
    if max(d, dv) <= 128 or (d, dv) in pairs:
        return None
    return "head dims <= 128, or " + " or ".join(f"{a}/{b}" for a, b in pairs)


# Triton's tutorial autotune space (python/tutorials/06-fused-attention.py): BLOCK_M in {64, 128},
# BLOCK_N in {32, 64, 128}, 4 or 8 warps, 2-4 stages; the best legal one is chosen (autotune).
_TRITON_SPACE = tuple(Tile(bm, bn, w, s) for bm in (64, 128) for bn in (32, 64, 128)
                      for w in (4, 8) for s in (2, 3, 4))

FAMILIES = {
    "fa2": Family(
        name="fa2",
        description="FlashAttention-2 (Dao 2023): mma.sync, 4-8 warps, softmax serialized with the matmuls",
        source="Dao-AILab/flash-attention csrc/flash_attn/src/flash_fwd_launch_template.h (run_mha_fwd_hdim*)",
        archs=("ampere", "ada", "hopper", "blackwell", "cdna3"),
        dtypes=("fp16", "bf16"),
        head_dims=(32, 64, 96, 128, 192, 256),
        overlap=0.0,
        overlap_source="FA3 paper (Shah et al. 2024) section 3.1: in FA2 softmax and GEMMs run sequentially within a warp",
        smem_layout="q_kv",
        softmax_fp32_ops_per_score=4, mask_fp32_ops_per_score=3, bwd_fp32_ops_per_score=4,
        reg_overhead_per_thread=32,
        mma_efficiency={"hopper": 2 / 3, "blackwell": 2 / 3}, split_style="fa2", pack_gqa_max_q=1,
        fwd_tiles=_fa2_fwd, bwd_tiles=_fa_bwd(1), decode_tiles=_fa2_decode,
        mma_efficiency_source="FA3 paper (Shah et al. 2024) section 1: mma.sync reaches about 2/3 of the "
                              "Hopper tensor-core peak (wgmma/tcgen05 needed for the rest)",
        cta_order={"forward": "ascending", "backward": "descending"},
        cta_order_source="csrc/flash_attn/src/flash_fwd_kernel.h compute_attn: m_block = blockIdx.x on the grid "
                         "(num_m_block, b, h) of flash_fwd_launch_template.h, so each (batch, head)'s query tiles "
                         "launch in order, shortest first under a causal mask; flash_bwd_launch_template.h "
                         "run_flash_bwd_seqk_parallel: grid_n (num_n_block, b, h), n_block = blockIdx.x, the kv "
                         "tiles that see the most query tiles first",
    ),
    "fa3": Family(
        name="fa3",
        description="FlashAttention-3 (Shah et al. 2024): Hopper wgmma + TMA, warp specialization, softmax overlapped (ping-pong)",
        source="Dao-AILab/flash-attention hopper/tile_size.h (tile_size_fwd_sm90)",
        archs=("hopper",),
        dtypes=("fp16", "bf16", "fp8"),
        head_dims=(64, 96, 128, 192, 256),
        overlap=1.0,
        overlap_source="FA3 paper section 3.1-3.2: inter-warpgroup ping-pong and intra-warpgroup pipelining overlap softmax with GEMMs",
        smem_layout="q_kv",
        softmax_fp32_ops_per_score=4, mask_fp32_ops_per_score=3, bwd_fp32_ops_per_score=4,
        reg_overhead_per_thread=32, mma_m=64,
        fwd_tiles=_fa3_fwd, bwd_tiles=_fa_bwd(2), decode_tiles=_fa3_decode, kv_by_tma=True, smem_reader="rows64",
        latent_dims=(512,), latent_exact=True,
        latent_source="hopper/tile_size.h: headdim 64 with headdim_v 512 (DeepSeek MLA through the q_v argument), "
                      "64 x 64 tiles",
        cta_order={"forward": "descending"},
        cta_order_source="hopper/tile_scheduler.hpp as released with the FA3 paper (2024): a causal forward runs "
                         "DynamicPersistentTileScheduler, tiles taken in order from an atomic counter with "
                         "m_block = num_blocks_m - 1 - m_block, each head's longest query tile first, heads one "
                         "after another (later releases order longest-first over sections of heads: closer to "
                         "balanced); the backward's order is not modeled",
    ),
    "fa4": Family(
        name="fa4",
        description="FlashAttention-4 (Blackwell): tcgen05 MMA into tensor memory, two Q tiles per CTA (head dim 256: "
                    "2-CTA pairs), overlapped softmax, part of the exp2s emulated on the FMA pipes",
        source="Dao-AILab/flash-attention flash_attn/cute/flash_fwd_sm100.py (128 x 128 tiles, q_stage = 2; "
               "FP8 forward: the q_dtype.width == 8 path and _FP8_TUNING_CONFIG, commit cbbab839 'Tune FP8 causal "
               "hd128 ex2_emu_freq'; interface.py: 'FA4 CuTe FP8 backward is not supported yet (forward-only)'), "
               "sm100_hd256_2cta_fmha_forward.py (head dim 256, 2-CTA)",
        archs=("blackwell",),
        dtypes=("fp16", "bf16", "fp8"),  # train_dtypes (fp16, bf16): the backward asserts fp16 or bf16 inputs
        head_dims=(64, 96, 128, 192, 256),  # 192 only as (192, 128), 256 only as (256, 256): phase_head_dims
        overlap=1.0,
        overlap_source="FlashAttention-4: softmax warpgroups overlap the MMA warp on the other Q tile",
        smem_layout="q_kv_tmem",
        softmax_fp32_ops_per_score=4, mask_fp32_ops_per_score=3, bwd_fp32_ops_per_score=4,
        reg_overhead_per_thread=32, mma_m=64,
        fwd_tiles=_fa4_fwd, bwd_tiles=_fa_bwd(2), decode_tiles=_fa4_decode, kv_by_tma=True, smem_reader="rows128",
        phase_head_dims=_fa4_head_dims,
        exp2_emulation=True, exp2_emulation_masked_dims=(256,),
        exp2_emulation_source="SoftmaxSm100.apply_exp2_convert (flash_attn/cute/softmax.py): per 32-score fragment, "
                              "pairs with k % ex2_emu_freq >= ex2_emu_freq - ex2_emu_res go to utils.ex2_emulation_2 "
                              "(FMA pipes), the rest to MUFU.EX2; flash_fwd_sm100.py softmax_step passes "
                              "ex2_emu_freq=self.ex2_emu_freq if mask_fn is None else 0 (masked tiles: SFU only); "
                              "sm100_hd256_2cta_fmha_forward.py softmax_step emulates on every tile (freq 4, res 3 "
                              "defaults). FA4 tunes the fraction per shape (_TUNING_CONFIG; on B200 6-25% of a "
                              "128-score row at head dims <= 192, 28-37.5% at 256); attnsim prices the balanced "
                              "split instead (28.6% at 4 FP32 instructions a score), an assumption. The backward "
                              "(flash_bwd_sm100.py) computes P with cute.math.exp2 only",
    ),
    "cudnn": Family(
        name="cudnn",
        description="cuDNN fused flash attention (torch SDPA's cuDNN backend; cudnn-frontend sdpa fprop/bprop graphs), "
                    "priced with FA3's Hopper tiles",
        source=_CUDNN_MATRIX + "; the backend's kernels are closed source and their tile sizes are not public: FA3's "
               "tile_size_fwd_sm90 tables (Dao-AILab/flash-attention hopper/tile_size.h), warp-specialized wgmma + TMA "
               "kernels, are the stated assumption on Hopper and Blackwell alike",
        archs=("hopper", "blackwell"),
        dtypes=("fp16", "bf16", "fp8"),  # support matrix: fp8, fp16, bf16 on Hopper and B200/B300, every phase
        head_dims=tuple(range(8, 257, 8)),  # "The head dim (d) should be a multiple of 8 for fp16/bf16", d <= 256
        overlap=1.0,
        overlap_source="not published for cuDNN: FA3's value (softmax overlapped with the GEMMs) is the "
                       "assumption; calibration fits it (the docs name the FlashAttention-2 algorithm, i.e. the math, "
                       "not the schedule)",
        smem_layout="q_kv",
        softmax_fp32_ops_per_score=4, mask_fp32_ops_per_score=3, bwd_fp32_ops_per_score=4,
        reg_overhead_per_thread=32, mma_m=64,
        mma_efficiency_source="not published for cuDNN: 1, as FA3 (calibration fits it)",
        train_dtypes=("fp16", "bf16", "fp8"),  # support matrix: Hopper and Blackwell bprop fp8, fp16, bf16
        fwd_tiles=_fa3_fwd, bwd_tiles=_fa_bwd(2), decode_tiles=_fa3_decode, kv_by_tma=True, smem_reader="rows64",
        phase_head_dims=_cudnn_head_dims,
    ),
    "ck": Family(
        name="ck",
        description="AMD Composable Kernel FMHA (ck_tile fmha_fwd/bwd/splitkv, the kernels behind ROCm "
                    "flash-attention's CK backend and AITER's mha): wave64, MFMA, Q in registers, K/V through LDS",
        source=_CK_SRC + "fmha_fwd.py, fmha_bwd.py@7a57db74, fmha_fwd_splitkv.py (tile tables); "
               "include/ck_tile/ops/fmha/pipeline/block_fmha_pipeline_qx_ks_vs_custom_policy.hpp@7a57db74 "
               "(GetSmemSizeKV: Q in registers, "
               "NumKVLdsBuffers x max(K chunk kN0 x kK1, V chunk kK1 x kN1)), "
               "block_fmha_pipeline_qr_ks_vs_async_default_policy.hpp@5fc4581f (NumPrefetchK = NumPrefetchV = 3), "
               "block_fmha_bwd_pipeline_default_policy.hpp@ea4206f1 (GetSmemSize)",
        archs=("cdna3",),
        dtypes=("fp16", "bf16", "fp8"),  # fmha_fwd.py has fp8 rows (hdim 64, 128, 256); no fp8 backward
        head_dims=(32, 64, 96, 128, 160, 192, 256),  # fmha_fwd.py (hdim, hdim_v) rows; the backward has 32/64/128/256
        overlap=0.0,
        overlap_source="block_fmha_pipeline_qr_ks_vs_async.hpp: each wave runs gemm_0 (QK^T), the softmax and gemm_1 "
                       "(PV) in turn, no warp specialization or ping-pong (as FA2)",
        smem_layout="q_regs_kv_chunks", smem_kv_chunk=32,  # bk0 = bk1 = 32 in every fp16/bf16 forward row
        softmax_fp32_ops_per_score=4, mask_fp32_ops_per_score=3, bwd_fp32_ops_per_score=4,
        reg_overhead_per_thread=32,
        # MFMA: CK's warp GEMMs are WarpGemmMfma*M32N32K16 (forward, 2 x v_mfma_f32_32x32x8) and M16N16K16/K32
        # (backward, split-KV decode: v_mfma_f32_16x16x16); tiles must be multiples of the smaller, 16 x 16
        mma_m=16, mma_n=16, warp_lanes=64,  # ROCm gpu-arch-specs: MI300X wavefront size 64
        mma_efficiency_source="not published for CK on MI300X: 1 (calibration fits it)",
        split_style="fa2", pack_gqa_max_q=1,
        # flash-attention csrc/flash_attn_ck: flash_common.cpp num_splits_heuristic_ck(..., CUs x 2, ..., 128) and
        # mha_fwd_kvcache.cpp seqlenq_ngroups_swapped (query heads of a kv head packed when seqlen_q == 1)
        fwd_tiles=_ck_fwd, bwd_tiles=_ck_bwd, decode_tiles=_ck_decode, smem_reader="waves",
    ),
    "triton": Family(
        name="triton",
        description="Triton fused attention (tutorial 06 style): autotuned tiles, softmax not overlapped, no split-KV",
        source="triton-lang/triton python/tutorials/06-fused-attention.py",
        archs=("ampere", "ada", "hopper", "blackwell", "cdna3"),
        dtypes=("fp16", "bf16", "fp8"),
        head_dims=(16, 32, 64, 128, 256),  # tl.dot needs power-of-two block shapes
        overlap=0.0,
        overlap_source="tutorial 06: one warp group computes QK^T, softmax and PV in sequence",
        smem_layout="q_kv",
        softmax_fp32_ops_per_score=4, mask_fp32_ops_per_score=3, bwd_fp32_ops_per_score=4,
        reg_overhead_per_thread=32,
        pack_gqa_decode=False, split_kv=False, autotune=True, accum_types=("fp32", "fp16"),
        fwd_tiles=_triton_fwd, bwd_tiles=_triton_bwd, decode_tiles=_triton_decode,
        smem_reader_by_arch={"hopper": "warpgroups", "blackwell": "warpgroups"},
        latent_dims=(16, 32, 64, 128, 256, 512, 1024),
        latent_source="two tl.dot per tile, latent and rope parts, as sglang's Triton MLA decode kernel "
                      "(BLOCK_DMODEL = next power of two of kv_lora_rank, BLOCK_DPE = 64, BLOCK_H = 16 heads)",
        cta_order={"forward": "ascending"},
        cta_order_source="python/tutorials/06-fused-attention.py (and triton.ops.flash_attention before it): the "
                         "forward's grid is (cdiv(N_CTX, BLOCK_M), Z x H, 1) with start_m = tl.program_id(0), each "
                         "(batch, head)'s "
                         "query tiles launched in order, shortest first under a causal mask; the backward's "
                         "program does one kv tile's dK/dV (longest first) and one query tile's dQ (shortest "
                         "first), about equal sums: balanced",
    ),
    "attnsim": Family(
        name="attnsim",
        description="attnsim's own Triton kernels (kernels/triton_attention.py): the plan's full tiles in a branch-free "
                    "loop, split-KV decode over packed GQA rows; tiles ranked with their compiled code's facts",
        source="kernels/triton_attention.py; compiled facts: simulator/triton_compiled.json "
               "(benchmarks/bench_triton_registers.py)",
        archs=("ampere", "ada", "hopper", "blackwell", "cdna3"),
        dtypes=("fp16", "bf16"),
        head_dims=(16, 32, 64, 128, 256),  # tl.dot needs power-of-two block shapes
        overlap=0.0,
        overlap_source="one warp group computes QK^T, softmax and PV in sequence (as tutorial 06)",
        smem_layout="q_kv",
        softmax_fp32_ops_per_score=4, mask_fp32_ops_per_score=3, bwd_fp32_ops_per_score=4,
        reg_overhead_per_thread=32,
        pack_gqa_decode=True, split_kv=True, split_style="fa2", autotune=True, accum_types=("fp32",),
        fwd_tiles=_triton_fwd, bwd_tiles=_attnsim_bwd, decode_tiles=_attnsim_decode,
        smem_reader_by_arch={"hopper": "warpgroups", "blackwell": "warpgroups"},
        latent_dims=(16, 32, 64, 128, 256, 512, 1024),
        latent_source="the decode kernel's two dots, latent and rope parts (V_IS_K1: the latent read once)",
        compiled=True, decode_rows_fit=True, bwd_split=True,
    ),
    "eager": Family(
        name="eager",
        description="eager attention: QK^T GEMM, an additive-mask add when masked, a softmax kernel, PV GEMM, "
                    "plus layout copies of Q, K, V; the scores are materialized in HBM",
        source="'standard attention' of the FlashAttention-2/3 papers: attention_pytorch in Dao-AILab/flash-attention "
               "benchmarks/benchmark_flash_attention.py (baddbmm, + causal mask, softmax, einsum), run forward or "
               "with autograd's backward; kernel by kernel in model.eager_attention",
        archs=("ampere", "ada", "hopper", "blackwell", "cdna3"),
        dtypes=("fp16", "bf16", "fp8"),
        head_dims=tuple(range(8, 16385, 8)),  # a GEMM pads K to its 8-element alignment only
        overlap=0.0, overlap_source="separate kernels", smem_layout="q_kv",
        softmax_fp32_ops_per_score=4, mask_fp32_ops_per_score=3, bwd_fp32_ops_per_score=4,
        reg_overhead_per_thread=32, pack_gqa_decode=False, split_kv=False, fused=False,
        train_dtypes=("fp16", "bf16", "fp8"), accum_types=("fp32", "fp16"), latent_dims=tuple(range(8, 16385, 8)),
    ),
}


def get_family(name: str) -> Family:
    fam = FAMILIES.get(str(name).lower())
    if fam is None:
        raise unknown("kernel family", name, FAMILIES)
    return fam


def check_family(fam: Family, hw, dtype: str, head_dim_qk: int, head_dim_v: int,
                 phase: str = "prefill", qk_accum: str = "fp32", pv_accum: str = "fp32", v_in_k: bool = False):
    """Raise AttnsimError when the family cannot run this problem on this hardware."""
    if hw.arch not in fam.archs:
        ok = sorted(n for n, f in FAMILIES.items() if hw.arch in f.archs)
        raise AttnsimError(f"kernel family {fam.name!r} does not run on {hw.name} ({hw.arch}); "
                           f"allowed there: {', '.join(ok)}")
    if dtype not in hw.dtypes:
        raise AttnsimError(f"{hw.name} has no tensor-core support for dtype {dtype!r}; "
                           f"allowed: {', '.join(d for d in hw.dtypes if d in ('bf16', 'fp16', 'fp8'))}")
    if dtype not in fam.dtypes:
        raise AttnsimError(f"kernel family {fam.name!r} does not support dtype {dtype!r}; "
                           f"allowed: {', '.join(fam.dtypes)}")
    if v_in_k and fam.pad_dims(head_dim_qk, head_dim_v, True)[0] is None:
        ok = sorted(n for n, f in FAMILIES.items() if hw.arch in f.archs and f.pad_dims(head_dim_qk, head_dim_v, True)[0])
        raise UnsupportedCore(f"kernel family {fam.name!r} has no kernel reading a {head_dim_v}-wide latent cache as K "
                              f"and V (absorbed MLA, head dims {head_dim_qk}/{head_dim_v}); allowed on {hw.name}: "
                              + (f"--kernel {'|'.join(ok)}" if ok else "none"))
    for what, d in () if v_in_k else (("head_dim_qk", head_dim_qk), ("head_dim_v", head_dim_v)):
        if fam.pad_head_dim(d) is None:
            others = sorted(n for n, f in FAMILIES.items() if hw.arch in f.archs and f.pad_head_dim(d))
            raise UnsupportedCore(f"{what}={d} exceeds the largest head dim {fam.head_dims[-1]} that kernel "
                                  f"family {fam.name!r} compiles; allowed: <= {fam.head_dims[-1]}"
                                  + (f", or --kernel {'|'.join(others)} on {hw.name}" if others else ""))
    limit = fam.phase_head_dims(hw.arch, phase, head_dim_qk, head_dim_v) if fam.phase_head_dims else None
    if limit:
        others = sorted(n for n, f in FAMILIES.items()
                        if hw.arch in f.archs and f.pad_head_dim(max(head_dim_qk, head_dim_v))
                        and not (f.phase_head_dims and f.phase_head_dims(hw.arch, phase, head_dim_qk, head_dim_v)))
        raise UnsupportedCore(f"kernel family {fam.name!r} has no {phase} kernel for head dims "
                              f"{head_dim_qk}/{head_dim_v} on {hw.name} ({hw.arch}); allowed: {limit}"
                              + (f", or --kernel {'|'.join(others)}" if others else ""))
    if phase == "train" and dtype not in fam.train_dtypes:
        raise AttnsimError(f"kernel family {fam.name!r} has no {dtype} backward; allowed for train: "
                           f"{', '.join(fam.train_dtypes)}")
    for what, acc in (("qk_accum", qk_accum), ("pv_accum", pv_accum)):
        if acc not in fam.accum_types:
            ok = sorted(n for n, f in FAMILIES.items() if acc in f.accum_types and hw.arch in f.archs)
            raise AttnsimError(f"kernel family {fam.name!r} accumulates in {', '.join(fam.accum_types)} only "
                               f"({what}={acc}); {acc} accumulation: --kernel {'|'.join(ok)}")


# -- legality ---------------------------------------------------------------------------
def smem_bytes(fam: Family, tile: Tile, d: int, dv: int, dtype_bytes: int, kv_dtype_bytes: int,
               backward: bool = False, v_in_k: bool = False, qk_matmuls: int = 1) -> int:
    """Shared memory a CTA allocates, written out as in CUTLASS's can_implement.

    Forward: the Q tile + `stages` buffers of K and V tiles. (FA2's Flash_fwd_kernel_traits:
    kSmemSize = kBlockM*d*2 + 2*kBlockN*d*2 for one stage; the output tile reuses Q's buffer.)
    FA4 (Blackwell): two Q tiles + a ring of `stages` buffers shared by K and V tiles.
    Backward: Q, dO tiles + K, V tiles (all stages) + the dS tile.
    CK (layout "q_regs_kv_chunks"): Q in registers, K/V in chunks (`_smem_q_regs_kv_chunks`).
    """
    bm, bn, st = tile.block_m, tile.block_n, tile.stages
    if fam.smem_layout == "q_regs_kv_chunks":
        return _smem_q_regs_kv_chunks(fam, tile, d, dv, dtype_bytes, kv_dtype_bytes, backward, v_in_k, qk_matmuls)
    if backward:
        return (st * bm * (d + dv) * dtype_bytes + bn * (qk_matmuls * d + dv) * kv_dtype_bytes
                + bm * bn * dtype_bytes)
    if fam.smem_layout == "q_kv_tmem":
        # FA4: BLOCK_M = two 128-row Q tiles; K and V tiles take turns in one ring of `stages` buffers
        return bm * d * dtype_bytes + st * bn * max(d, dv) * kv_dtype_bytes
    # v_in_k: V is K's slice; qk_matmuls: the K-wide operands staged (K, relative embeddings R)
    return bm * d * dtype_bytes + st * bn * (qk_matmuls * d + (0 if v_in_k else dv)) * kv_dtype_bytes


def _smem_q_regs_kv_chunks(fam: Family, tile: Tile, d: int, dv: int, s: int, skv: int, backward: bool,
                           v_in_k: bool, qk_matmuls: int) -> int:
    """CK FMHA's LDS (padding left out). Forward (BlockFmhaPipelineQXKSVSCustomPolicy::GetSmemSizeKV): Q stays
    in registers; `stages` buffers, each holding one K chunk (BLOCK_N keys x chunk columns) or one V chunk
    (chunk keys x dv columns), whichever is larger. Backward (BlockFmhaBwdPipelineDefaultPolicy::GetSmemSize):
    the largest of K + K^T, V, and the per-step Q, Q^T, dO, dO^T, LSE, D (fp32) and dS tiles."""
    bm, bn, c = tile.block_m, tile.block_n, fam.smem_kv_chunk
    if backward:
        return max(2 * qk_matmuls * bn * d * skv, bn * dv * skv,
                   bm * 2 * (qk_matmuls * d + dv) * s + 2 * 4 * bm + bm * bn * s)
    return tile.stages * max(qk_matmuls * bn * c, 0 if v_in_k else c * dv) * skv


def regs_per_thread(fam: Family, tile: Tile, dv: int, backward: bool = False, d: int = 0) -> int:
    """fp32 accumulators spread over the CTA's threads plus the family's fixed overhead.

    Forward: the O accumulator (BLOCK_M x dv) and the score tile S (BLOCK_M x BLOCK_N). On
    Blackwell both live in tensor memory, not registers, and only a row slice of S is pulled in.
    Backward: dK and dV accumulators (BLOCK_N x (d + dv)) and the S/dP tiles.
    """
    threads = fam.warp_lanes * tile.num_warps
    if backward:
        acc = tile.block_n * (d + dv) + 2 * tile.block_m * tile.block_n
    elif fam.smem_layout == "q_kv_tmem":
        acc = tile.block_m * tile.block_n // 2  # a softmax thread holds half a row of S at a time
    else:
        acc = tile.block_m * (dv + tile.block_n)
    return -(-acc // threads) + fam.reg_overhead_per_thread


def can_implement(fam: Family, hw, tile: Tile, d: int, dv: int, dtype: str,
                  kv_dtype: str | None = None, backward: bool = False, v_in_k: bool = False,
                  qk_matmuls: int = 1, decode: bool = False, part: str | None = None) -> Legality:
    """Whether `tile` fits this hardware: shared memory per block, registers per thread and per SM,
    threads per SM, tensor memory on Blackwell. Also returns how many CTAs fit on one SM. `part`: one
    kernel of a split backward ("dkdv", "dq"), judged by its own compiled facts (else both must fit)."""
    s, skv = DTYPE_BYTES[dtype], DTYPE_BYTES[kv_dtype or dtype]
    smem = smem_bytes(fam, tile, d, dv, s, skv, backward, v_in_k, qk_matmuls)
    regs = regs_per_thread(fam, tile, dv, backward, d)
    threads = fam.warp_lanes * tile.num_warps
    known = None if decode else compiled_tile(fam, hw, tile, d, dv, backward, v_in_k, qk_matmuls, dtype,
                                              part if backward else None)
    if known is not None:
        regs = known["regs"]
        if known["spill_bytes"]:
            return Legality(False, smem, regs, 0, f"tile {tile.block_m}x{tile.block_n} w{tile.num_warps} "
                                                  f"s{tile.stages} spills {known['spill_bytes']} B per thread in "
                                                  f"its compiled code (sm_{hw.compute_capability.replace('.', '')})")
    if fam.fused and (tile.block_m % fam.mma_m or tile.block_n % fam.mma_n):
        return Legality(False, smem, regs, 0, f"tile {tile.block_m}x{tile.block_n} is not a multiple of the "
                                              f"{fam.mma_m}x{fam.mma_n} MMA shape of {fam.name}")
    if smem > hw.smem_per_block_bytes:
        return Legality(False, smem, regs, 0, f"shared memory {smem} B > {hw.smem_per_block_bytes} B per block")
    if regs > hw.max_registers_per_thread:
        return Legality(False, smem, regs, 0, f"{regs} registers/thread > {hw.max_registers_per_thread}")
    if threads > hw.max_threads_per_sm:
        return Legality(False, smem, regs, 0, f"{threads} threads > {hw.max_threads_per_sm} per SM")
    if fam.smem_layout == "q_kv_tmem" and not backward:
        # each 128-row Q tile keeps an S tile (BLOCK_N fp32 columns) and an O tile (dv columns), 128 lanes
        cols = tile.block_m // 128 * (tile.block_n + dv)
        tmem_cols = (hw.tmem_per_sm_bytes or 0) // (128 * 4)
        if cols > tmem_cols:
            return Legality(False, smem, regs, 0, f"tensor memory: {cols} columns > {tmem_cols}")
    k = min(hw.smem_per_sm_bytes // max(smem, 1), hw.max_threads_per_sm // threads,
            hw.registers_per_sm // (regs * threads), hw.max_ctas_per_sm)
    if fam.smem_layout == "q_kv_tmem":
        k = min(k, 1)  # the accumulators own the SM's tensor memory
    if k < 1:
        return Legality(False, smem, regs, 0, "not one CTA fits on an SM")
    return Legality(True, smem, regs, int(k))


def decode_block_m(fam: Family, tile: Tile, rows):
    """The decode kernel's row block for `rows` packed query rows (a number or an array): `tile.block_m`, or
    for a family with `decode_rows_fit` the rows' next power of two, at least 16 and at most `tile.block_m`."""
    if not fam.decode_rows_fit:
        return np.full(np.shape(rows), tile.block_m, dtype=np.int64) if np.ndim(rows) else tile.block_m
    p = np.left_shift(1, np.ceil(np.log2(np.maximum(rows, 1))).astype(np.int64))
    fit = np.minimum(tile.block_m, np.maximum(16, p))
    return fit if np.ndim(rows) else int(fit)


_COMPILED: dict = {}


def compiled_facts() -> dict:
    """{(arch "sm_80", kernel, head dim, BLOCK_M, BLOCK_N, warps, stages): the compiled facts} of
    simulator/triton_compiled.json: attnsim's Triton kernels compiled without a GPU (fp16, the JIT's hints)
    at every tile of the Triton tile spaces (registers, spilled bytes, shared memory, the main loop's exps and
    warp instructions per score; its header names the Triton and ptxas versions and the date)."""
    if not _COMPILED:
        import json
        from importlib.resources import files
        data = json.loads(files("attnsim.simulator").joinpath("triton_compiled.json").read_text())
        for r in data["rows"]:
            _COMPILED[(r["arch"], r["kernel"], r["head_dim"], r["block_m"], r["block_n"], r["warps"],
                       r["stages"])] = r
    return _COMPILED


def compiled_tile(fam: Family, hw, tile: Tile, d: int, dv: int, backward: bool = False, v_in_k: bool = False,
                  qk_matmuls: int = 1, dtype: str = "fp16", part: str | None = None) -> dict | None:
    """What the compiled code says of `tile` for a family with `compiled` facts on `hw`'s compute capability,
    or None where nothing was compiled (another GPU, head dim or dtype than 16-bit, latent V or several QK^T):
    the forward's facts, or the backward's dK/dV and dQ kernels together (the larger registers and spill, both
    must not spill), or with `part` ("dkdv", "dq") one of them."""
    if not fam.compiled or d != dv or v_in_k or qk_matmuls != 1 or dtype not in ("fp16", "bf16"):
        return None
    facts = compiled_facts()
    arch = "sm_" + str(hw.compute_capability).replace(".", "")
    key = (d, tile.block_m, tile.block_n, tile.num_warps, tile.stages)
    if not backward:
        return facts.get((arch, "_fwd_kernel") + key)
    rows = [facts.get((arch, k) + key) for k in ("_bwd_dkdv_kernel", "_bwd_dq_kernel")]
    if None in rows:
        return None
    if part is not None:  # one of the two kernels: "dkdv" or "dq"
        return rows[("dkdv", "dq").index(part)]
    return {"regs": max(r["regs"] for r in rows), "spill_bytes": max(r["spill_bytes"] for r in rows),
            "exp_per_score": max(r["exp_per_score"] or 1.0 for r in rows)}


# Who reads a K/V tile from shared memory, once per use, by reader kind (Family.smem_reader)
SMEM_READERS = {
    "warp16": lambda t: max(1, min(t.num_warps, t.block_m // 16)),  # mma.sync: each warp owns a 16-row slice
    "rows64": lambda t: max(t.block_m // 64, 1),  # wgmma: each warpgroup owns 64 rows (FA3)
    "rows128": lambda t: max(t.block_m // 128, 1),  # tcgen05: each 128-row Q tile (FA4)
    "warpgroups": lambda t: max(1, t.num_warps // 4),  # wgmma from Triton: each warpgroup of the CTA
    "waves": lambda t: max(1, t.num_warps),  # CK FMHA: waves split the query rows only, each reads the whole chunk
}


def smem_readers(fam: Family, tile: Tile, arch: str) -> int:
    """How many times the K/V tile is read from shared memory per use: once per warp that owns a
    16-row slice of the query rows (mma.sync: FA2 everywhere, Triton before Hopper), once per
    warpgroup (wgmma: FA3, cudnn, Triton on Hopper and later), once per Q tile (tcgen05: FA4), once per
    wave (CK on CDNA3: its waves split only the query rows)."""
    return SMEM_READERS[fam.smem_reader_by_arch.get(arch, fam.smem_reader)](tile)


def fwd_tile_candidates(fam: Family, hw, dp: int, dvp: int, causal: bool, dtype: str,
                        local: bool = False):
    """`causal`: the causal mask; `local`: a sliding window (FA3 picks other tiles for it)."""
    if fam.fwd_tiles is None:
        raise AttnsimError(f"kernel family {fam.name!r} has no fused forward tiles")
    return fam.fwd_tiles(hw, dp, dvp, causal, dtype, local)


def bwd_tile_candidates(fam: Family, hw, dp: int, dvp: int, causal: bool, dtype: str):
    return fam.bwd_tiles(hw, dp, dvp, causal, dtype)


def decode_tile_candidates(fam: Family, hw, dp: int, dvp: int):
    return fam.decode_tiles(hw, dp, dvp)


def packs_gqa_decode(fam: Family, seqlen_q, v_in_k=False):
    """Whether decode packs the query heads sharing a kv head into the tile's rows (FA2 only for one
    query token per step; a latent (absorbed MLA) kernel always: sglang's Triton kernel's BLOCK_H).
    Elementwise when `seqlen_q` is an array."""
    few = True if fam.pack_gqa_max_q is None else seqlen_q <= fam.pack_gqa_max_q
    return (fam.pack_gqa_decode or v_in_k) & few
