"""Our Triton kernels as the hardware would run them, judged from compiled code without a GPU (issue 15):
each kernel compiled for sm_80 (A100) and sm_90 (H100) at the tile the simulator's Triton ranking picks for
that card (a 16k-token, 16-head, fp16 problem at head dim 64 and 128), with the JIT's runtime
specialization (16-divisible pointers and strides, group = 1; kernels/compile.py), and one JSON object per
line per kernel:

    kernel, arch, head_dim, tile (BLOCK_M x BLOCK_N), warps, stages, regs, spill_bytes (ptxas -v spill stores),
    smem_bytes, uses_wgmma (any HGMMA), every_dot_wgmma (every dot of the TTGIR a warpgroup MMA: Triton lowers a
    dot of fewer than 64 rows to mma.sync), kv_async (K/V through cp.async or TMA), exp_per_score (MUFU.EX2 of the main loop
    per score), loop_instructions_per_score (warp instructions of the main loop per score)

The issue's static targets for the forward at d = 128: no spills, kv_async, exp_per_score <= 1.15, uses_wgmma on
sm_90; the backward's main loops with no spills and >= 2 stages (and, as the issue asks of its tiles, every dot wgmma on
sm_90).

    python benchmarks/bench_kernels_static.py [--arch 80,90] [--head-dim 64,128]
"""
from __future__ import annotations

import argparse
import json
import sys

from attnsim.kernels.compile import static_report

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="80,90", help="compute capabilities, joined by commas")
    ap.add_argument("--head-dim", default="64,128", help="head dims, joined by commas")
    a = ap.parse_args(argv)
    for cc in (int(x) for x in a.arch.split(",")):
        for d in (int(x) for x in a.head_dim.split(",")):
            for row in static_report(cc, d):
                print(json.dumps(row))
                sys.stdout.flush()


if __name__ == "__main__":
    main()
