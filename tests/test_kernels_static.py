"""Our Triton kernels judged from compiled code (benchmarks/bench_kernels_static.py, kernels/compile.py): the
report's fields, the loop statistics against facts of the hardware and of attention (every score needs an exp;
Ampere has no warpgroup MMA; the JIT's hints never cost registers), a SASS listing parsed by hand, and issue 15's
static targets as strict expected failures until the kernels are rewritten."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def report():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compiling needs the real language
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_kernels_static.py"), "--arch", "80,90",
                          "--head-dim", "128"], capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    if any(r["regs"] is None for r in rows):
        pytest.skip("triton ships no ptxas/nvdisasm here")
    return {(r["arch"], r["kernel"]): r for r in rows}


FIELDS = ("kernel", "arch", "head_dim", "tile", "warps", "stages", "regs", "spill_bytes", "smem_bytes", "uses_wgmma",
          "every_dot_wgmma", "kv_async", "exp_per_score", "loop_instructions_per_score")
LOOPS = ("forward", "backward_dkdv", "backward_dq", "decode")


def test_every_kernel_is_reported_with_every_field(report):
    kernels = {"forward", "backward_dkdv", "backward_dq", "backward_preprocess", "decode", "decode_combine"}
    for arch in ("sm_80", "sm_90"):
        assert {k for a, k in report if a == arch} == kernels
    for r in report.values():
        assert set(r) == set(FIELDS)
        assert 0 < r["regs"] <= 255 and r["spill_bytes"] >= 0 and r["smem_bytes"] > 0
        if r["kernel"] in LOOPS:
            bm, bn = map(int, r["tile"].split("x"))
            assert bm * bn > 0 and r["loop_instructions_per_score"] > 0


def test_loop_statistics_against_facts(report):
    for (arch, kernel), r in report.items():
        if kernel in LOOPS:
            # every score of a tile needs its exp (the loop's MUFU.EX2 cover the tile at least once)
            assert r["exp_per_score"] >= 1.0, r
        if arch == "sm_80":
            assert r["uses_wgmma"] is False  # HGMMA is Hopper's instruction
    assert report["sm_80", "decode"]["kv_async"] is True  # the decode loop streams K/V with cp.async


def test_hints_never_cost_registers():
    """The JIT's specialization (16-divisible pointers and strides, group = 1) against none, at H100's
    forward tile: never more registers (issue 15 saw 255 without and 143 with)."""
    code = ("import json; from attnsim.kernels.compile import compile_kernel, static_launches\n"
            "name, const, w, st, _s, _b = static_launches(90, 128)[0]\n"
            "print(json.dumps([compile_kernel(name, 90, const, w, st, 'fp16', hints=h)['registers'] for h in (False, True)]))")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    plain, hinted = json.loads(run.stdout)
    if plain is None:
        pytest.skip("no ptxas")
    assert hinted <= plain


def test_loop_stats_on_a_listing_by_hand():
    """A made-up nvdisasm listing: the loop is the body between .L_x_1 and the branch back to it; 8 warps,
    a 64 x 64 tile: 2 MUFU.EX2 x 32 lanes x 8 warps / 4096 scores = 0.125 exp per score; 6 instructions x 8 /
    4096; two LDGSTS.128 = 2 x 16 B x 32 x 8 = 8 KiB a tile, at least the 8 KiB of K/V asked."""
    from attnsim.kernels.compile import loop_stats
    listing = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
    .L_x_1:
        /*0010*/                   LDGSTS.E.BYPASS.128 [R2], desc[UR4][R4.64] ;
        /*0020*/                   LDGSTS.E.BYPASS.128 [R2+0x10], desc[UR4][R4.64+0x10] ;
        /*0030*/                   HMMA.16816.F32 R8, R12, R16, R8 ;
        /*0040*/                   MUFU.EX2 R20, R20 ;
        /*0050*/                   MUFU.EX2 R21, R21 ;
        /*0060*/              @P0 BRA `(.L_x_1) ;
        /*0070*/                   EXIT ;
    """
    s = loop_stats(listing, 64, 64, 8, 8192)
    assert s["exp_per_score"] == 2 * 32 * 8 / 4096 and s["loop_instructions_per_score"] == 6 * 8 / 4096
    assert s["kv_async"] is True and s["uses_wgmma"] is False and s["loop_mma"] == 1
    assert loop_stats(listing, 64, 64, 8, 8193)["kv_async"] is False



def test_dot_layouts_on_a_ttgir_by_hand():
    """A made-up TTGIR: two layouts, three dots (tt.dot and Hopper's ttng.warp_group_dot), in program order."""
    from attnsim.kernels.compile import dot_layouts
    ir = """#blocked = #ttg.blocked<{sizePerThread = [1, 8], threadsPerWarp = [2, 16], warpsPerCTA = [8, 1], order = [1, 0]}>
#mma = #ttg.nvidia_mma<{versionMajor = 2, versionMinor = 0, warpsPerCTA = [1, 8], instrShape = [16, 8]}>
#mma1 = #ttg.nvidia_mma<{versionMajor = 3, versionMinor = 0, warpsPerCTA = [4, 2], instrShape = [16, 64, 16]}>
      %a = tt.dot %q, %k, %c, inputPrecision = tf32 : tensor<64x128xf16, #x> * tensor<128x128xf16, #y> -> tensor<64x128xf32, #mma>
      %b = ttng.warp_group_dot %p, %v, %d {isAsync = true} : !ttg.memdesc<64x128xf16> * !ttg.memdesc<128x32xf16> -> tensor<64x32xf32, #mma1>
      %c2 = tt.dot %q, %k, %c : tensor<64x128xf16, #x> * tensor<128x128xf16, #y> -> tensor<64x128xf32, #mma>
"""
    # FLOPs 2 M N K: A is M x K, the accumulator M x N
    assert dot_layouts(ir) == [{"version": 2, "warps": [1, 8], "flops": 2 * 64 * 128 * 128},
                               {"version": 3, "warps": [4, 2], "flops": 2 * 64 * 32 * 128},
                               {"version": 2, "warps": [1, 8], "flops": 2 * 64 * 128 * 128}]
    assert dot_layouts("#blocked = #ttg.blocked<{}>") == []

TARGETS = [  # issue 15's static targets, (arch, kernel, field, test, words)
    ("sm_90", "forward", "spill_bytes", lambda v: v == 0, "no spills"),
    ("sm_80", "forward", "spill_bytes", lambda v: v == 0, "no spills"),
    ("sm_90", "forward", "kv_async", lambda v: v is True, "K/V through cp.async or TMA"),
    ("sm_80", "forward", "kv_async", lambda v: v is True, "K/V through cp.async"),
    ("sm_90", "forward", "exp_per_score", lambda v: v <= 1.15, "exp per score <= 1.15"),
    ("sm_80", "forward", "exp_per_score", lambda v: v <= 1.15, "exp per score <= 1.15"),
    ("sm_90", "forward", "uses_wgmma", lambda v: v is True, "wgmma on Hopper"),
    ("sm_80", "backward_dkdv", "spill_bytes", lambda v: v == 0, "backward without spills"),
    ("sm_90", "backward_dkdv", "spill_bytes", lambda v: v == 0, "backward without spills"),
    ("sm_80", "backward_dq", "spill_bytes", lambda v: v == 0, "backward without spills"),
    ("sm_90", "backward_dq", "spill_bytes", lambda v: v == 0, "backward without spills"),
    ("sm_90", "backward_dkdv", "stages", lambda v: v >= 2, "backward pipelined (>= 2 stages)"),
    ("sm_80", "backward_dkdv", "stages", lambda v: v >= 2, "backward pipelined (>= 2 stages)"),
    ("sm_90", "backward_dq", "stages", lambda v: v >= 2, "backward pipelined (>= 2 stages)"),
    ("sm_80", "backward_dq", "stages", lambda v: v >= 2, "backward pipelined (>= 2 stages)"),
    ("sm_90", "backward_dkdv", "every_dot_wgmma", lambda v: v is True, "every backward dot wgmma on Hopper"),
    ("sm_90", "backward_dq", "every_dot_wgmma", lambda v: v is True, "every backward dot wgmma on Hopper"),
]
# every target is met (Triton 3.6, head dim 128, the tiles the "attnsim" family picks with its compiled facts):
# H100 runs its forward at 128 x 128 w8 uncalibrated (128 x 32 w8 calibrated: both wgmma, no spill, cp.async,
# <= 1.125 exp per score) and A100 at 128 x 32 w8 s3 (every warp along the rows, as FA2: no spill, cp.async,
# 1.125 exp per score; the 64-row tiles put every warp along the keys, which reads Q and P from shared memory
# once per warp and computes each row's rescale exp in every warp); the backward's two kernels each at its own
# tile with two stages: H100 dK/dV 32 x 64 w4 and dQ 64 x 64 w4 (every dot wgmma: the dK/dV kernel computes S and
# dP transposed, so its dots have BLOCK_N = 64 rows; a dQ tile of BLOCK_M = 32 rows would lower to mma.sync),
# A100 dK/dV 64 x 64 w8 and dQ 32 x 64 w4
MISSES: set = set()


@pytest.mark.parametrize("arch, kernel, field, ok, words", [
    pytest.param(*t, marks=pytest.mark.xfail(strict=True, reason=f"issue 15 (open): {t[4]}")) if t[:3] in MISSES
    else t for t in TARGETS], ids=lambda x: x if isinstance(x, str) else "")
def test_static_targets(report, arch, kernel, field, ok, words):
    r = report[arch, kernel]
    assert ok(r[field]), f"{arch} {kernel}: {field} = {r[field]} ({words})"
