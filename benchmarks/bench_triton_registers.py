"""What attnsim's Triton kernels compile to over the simulator's Triton tile spaces, without a GPU: each tile of
`families._TRITON_SPACE` (the forward) and of the backward's table (dK/dV and dQ) compiled for sm_80 and sm_90
with the JIT's hints (`kernels.compile.compile_kernel(hints=True)`): ptxas -v's registers and spilled bytes,
the main loop's exp and warp instructions per score (`kernels.compile.loop_stats` on nvdisasm's listing),
the MMA layout of each dot (`kernels.compile.dot_layouts`: mma.sync or wgmma, warps along M and N, FLOPs),
beside the simulator's own register estimate (`families.regs_per_thread`). One JSON line per kernel and tile;
`--facts FILE` also writes them as the "attnsim" family's compiled facts (`simulator/triton_compiled.json`,
with the Triton and ptxas versions and the date). About 1-2 s a compile.

    python benchmarks/bench_triton_registers.py [--arch 80 90] [--head-dim 64 128 256] [--facts FILE]
"""
from __future__ import annotations

import argparse
import datetime
import json
import time


def rows(arch, head_dims):
    from attnsim.kernels.compile import PROFILE, compile_kernel, dot_layouts, loop_stats, sass
    from attnsim.simulator.families import _TRITON_SPACE, _triton_bwd, get_family, regs_per_thread
    from attnsim.simulator.hardware import load_hardware
    fam = get_family("triton")
    for cc in arch:
        hw = load_hardware(PROFILE[cc])
        for d in head_dims:
            for backward, tiles in ((False, _TRITON_SPACE), (True, _triton_bwd(hw, d, d, False, "fp16"))):
                for t in tiles:
                    const = {"D": d, "DV": d, "BLOCK_D": d, "BLOCK_DV": d, "IEEE": False, "BLOCK_M": t.block_m,
                             "BLOCK_N": t.block_n}
                    for name in (("_bwd_dkdv_kernel", "_bwd_dq_kernel") if backward else ("_fwd_kernel",)):
                        t0 = time.perf_counter()
                        r = compile_kernel(name, cc, const, t.num_warps, t.stages, "fp16", hints=True, keep=True)
                        listing = sass(r["compiled"].asm["cubin"])
                        kv = (t.block_m if name == "_bwd_dkdv_kernel" else t.block_n) * 2 * d * 2
                        st = loop_stats(listing, t.block_m, t.block_n, t.num_warps, kv) if listing else {}
                        dots = dot_layouts(r["compiled"].asm["ttgir"])
                        yield {"kernel": name, "arch": f"sm_{cc}", "head_dim": d, "block_m": t.block_m,
                               "block_n": t.block_n, "warps": t.num_warps, "stages": t.stages,
                               "regs": r["registers"], "spill_bytes": r["spill_bytes"], "smem_bytes": r["shared_bytes"],
                               "exp_per_score": st.get("exp_per_score"),
                               "loop_instructions_per_score": st.get("loop_instructions_per_score"),
                               "kv_async": st.get("kv_async"), "uses_wgmma": st.get("uses_wgmma"),
                               "mma_version": dots[0]["version"] if dots else None,
                               "dot_warps": [x["warps"] for x in dots],
                               "dot_versions": [x["version"] for x in dots], "dot_flops": [x["flops"] for x in dots],
                               "model_regs": regs_per_thread(fam, t, d, backward, d),
                               "compile_s": round(time.perf_counter() - t0, 2)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", type=int, nargs="+", default=[80, 90], choices=[80, 90])
    ap.add_argument("--head-dim", type=int, nargs="+", default=[64, 128], choices=[16, 32, 64, 128, 256])
    ap.add_argument("--facts", help="also write the rows as the attnsim family's compiled facts (JSON)")
    a = ap.parse_args(argv)
    out = []
    for r in rows(a.arch, a.head_dim):
        print(json.dumps(r), flush=True)
        out.append(r)
    if a.facts:
        import triton
        from triton.backends.nvidia.compiler import get_ptxas
        version = f"ptxas {get_ptxas(90).version} (Triton's bundled)"
        keep = ("kernel", "arch", "head_dim", "block_m", "block_n", "warps", "stages", "regs", "spill_bytes",
                "smem_bytes", "exp_per_score", "loop_instructions_per_score", "kv_async", "uses_wgmma", "mma_version",
                "dot_warps", "dot_versions", "dot_flops")
        head = {"what": "attnsim's Triton kernels (kernels/triton_attention.py) compiled without a GPU, fp16, with the "
                        "JIT's hints, at every tile of the simulator's Triton tile spaces",
                "command": "python benchmarks/bench_triton_registers.py --facts simulator/triton_compiled.json "
                           + " ".join(["--arch"] + [str(x) for x in a.arch] + ["--head-dim"] + [str(x) for x in a.head_dim]),
                "triton": triton.__version__, "ptxas": version, "date": datetime.date.today().isoformat()}
        with open(a.facts, "w") as f:  # one row a line
            f.write("{\n" + "".join(f"{json.dumps(k)}: {json.dumps(v)},\n" for k, v in head.items()) + '"rows": [\n'
                    + ",\n".join(json.dumps({k: r[k] for k in keep}) for r in out) + "\n]}\n")


if __name__ == "__main__":
    main()
