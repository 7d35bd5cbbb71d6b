"""Registers and spills of attnsim's Triton forward over the simulator's Triton tile space, from compiled code
(no GPU): each tile of `families._TRITON_SPACE` (and the backward's table with --backward) compiled for sm_80
and sm_90 with the JIT's hints (`kernels.compile.compile_kernel(hints=True)`), ptxas -v's registers and spilled
bytes beside the simulator's estimate (`families.regs_per_thread`) and its legality on the A100/H100 profile.
What the Triton family's register model should reproduce (issue 15: a tile ranking for the reasons the
compiled code shows). About 1-2 s a compile; 144 for the forward at both head dims and archs.

    python benchmarks/bench_triton_registers.py [--arch 80 90] [--head-dim 64 128] [--backward]
"""
from __future__ import annotations

import argparse
import json
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", type=int, nargs="+", default=[80, 90], choices=[80, 90])
    ap.add_argument("--head-dim", type=int, nargs="+", default=[64, 128], choices=[64, 128, 256])
    ap.add_argument("--backward", action="store_true", help="the backward's dK/dV and dQ kernels over its tile table")
    a = ap.parse_args(argv)
    from attnsim.kernels.compile import PROFILE, compile_kernel
    from attnsim.simulator.families import _TRITON_SPACE, can_implement, get_family, regs_per_thread
    from attnsim.simulator.hardware import load_hardware
    fam = get_family("triton")
    for cc in a.arch:
        hw = load_hardware(PROFILE[cc])
        for d in a.head_dim:
            tiles = fam.bwd_tiles(hw, d, d, False, "fp16") if a.backward else _TRITON_SPACE
            for t in tiles:
                const = {"D": d, "DV": d, "BLOCK_D": d, "BLOCK_DV": d, "IEEE": False, "BLOCK_M": t.block_m,
                         "BLOCK_N": t.block_n}
                for name in (("_bwd_dkdv_kernel", "_bwd_dq_kernel") if a.backward else ("_fwd_kernel",)):
                    t0 = time.perf_counter()
                    r = compile_kernel(name, cc, const, t.num_warps, t.stages, "fp16", hints=True)
                    leg = can_implement(fam, hw, t, d, d, "fp16", backward=a.backward)
                    print(json.dumps({"kernel": name, "arch": f"sm_{cc}", "head_dim": d,
                                      "tile": f"{t.block_m}x{t.block_n}", "warps": t.num_warps, "stages": t.stages,
                                      "regs": r["registers"], "spill_bytes": r["spill_bytes"],
                                      "smem_bytes": r["shared_bytes"],
                                      "model_regs": regs_per_thread(fam, t, d, a.backward, d),
                                      "model_legal": leg.ok, "compile_s": round(time.perf_counter() - t0, 2)}),
                          flush=True)


if __name__ == "__main__":
    main()
