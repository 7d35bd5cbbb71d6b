"""Compile the Triton kernels for a GPU architecture without a GPU (`triton.compile` with a
target), and report what the hardware sees: shared memory (Triton's metadata) and registers
(ptxas -v on the PTX, through kernels/nvrtc.py's parser, when triton ships ptxas).

Run it in a process without TRITON_INTERPRET: the interpreter replaces the kernels' language
functions, and compilation needs the real ones (`python -m attnsim.kernels.compile 80 90`).
"""
from __future__ import annotations

import json
import sys

SIGNATURE = {
    "Q": "*{t}", "K": "*{t}", "V": "*{t}", "O": "*{t}", "LSE": "*fp32", "ROWS": "*i64", "KV_START": "*i32",
    "PART": "*i32", "MASKS": "*u8", "scale": "fp32", "stride_qt": "i32", "stride_qh": "i32", "stride_kt": "i32",
    "stride_kh": "i32", "stride_vt": "i32", "stride_vh": "i32", "stride_ot": "i32", "stride_oh": "i32", "group": "i32",
}


def compile_forward(cc: int, dtype: str = "fp16", d: int = 128, dv: int = 128, block_m: int = 128,
                    block_n: int = 64, num_warps: int = 8, num_stages: int = 2) -> dict:
    """The forward kernel compiled for compute capability `cc` (80, 90): its shared memory, registers
    per thread (None without ptxas) and the simulator's shared-memory figure for the same tile."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    from attnsim.simulator.families import Tile, get_family, smem_bytes
    from . import triton_attention as ta
    fn = ta._fwd_kernel
    fn = fn if isinstance(fn, JITFunction) else JITFunction(getattr(fn, "fn", fn))
    sig = {k: v.format(t=dtype) for k, v in SIGNATURE.items()}
    const = {"D": d, "DV": dv, "BLOCK_D": ta._pow2(d), "BLOCK_DV": ta._pow2(dv), "BLOCK_M": block_m,
             "BLOCK_N": block_n, "IEEE": dtype == "fp32"}
    sig.update({k: "constexpr" for k in const})
    c = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=const), target=GPUTarget("cuda", cc, 32),
                       options={"num_warps": num_warps, "num_stages": num_stages})
    regs = None
    try:
        from .nvrtc import resource_usage
        target = next((ln.split()[1] for ln in c.asm["ptx"].splitlines() if ln.startswith(".target")), f"sm_{cc}")
        usage = resource_usage(c.asm["ptx"], target.rstrip(",")) or {}  # Hopper PTX targets sm_90a
        regs = next(iter(usage.values()))["registers"] if usage else None
    except ImportError:
        pass
    s = 4 if dtype == "fp32" else 2
    model = smem_bytes(get_family("triton"), Tile(block_m, block_n, num_warps, num_stages), d, dv, s, s)
    return {"arch": f"sm_{cc}", "kernel": "_fwd_kernel", "dtype": dtype, "head_dim": d, "head_dim_v": dv,
            "tile": [block_m, block_n, num_warps, num_stages], "shared_bytes": int(c.metadata.shared),
            "registers": regs, "model_smem_bytes": int(model), "ptx_bytes": len(c.asm["ptx"])}


if __name__ == "__main__":
    print(json.dumps([compile_forward(int(cc)) for cc in (sys.argv[1:] or ["80", "90"])], indent=1))
