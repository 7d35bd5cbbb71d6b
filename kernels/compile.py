"""Compile the Triton kernels for a GPU architecture without a GPU (`triton.compile` with a
target), and report what the hardware sees: shared memory (Triton's metadata) and registers
(ptxas -v on the PTX, through kernels/nvrtc.py's parser, when triton ships ptxas).

Run it in a process without TRITON_INTERPRET: the interpreter replaces the kernels' language
functions, and compilation needs the real ones (`python -m attnsim.kernels.compile 80 90`).
"""
from __future__ import annotations

import json
import sys

# argument name -> Triton type (t: the tensors' dtype); every other runtime argument is an i32
_TYPES = {"Q": "*{t}", "K": "*{t}", "V": "*{t}", "O": "*{t}", "DO": "*{t}", "DQ": "*{t}", "DK": "*fp32",
          "DV_": "*fp32", "LSE": "*fp32", "DELTA": "*fp32", "OP": "*fp32", "LP": "*fp32", "ROWS": "*i64",
          "KV_START": "*i32", "Q_START": "*i32", "PART": "*i32", "MASKS": "*u8", "ctx_lens": "*i32", "scale": "fp32"}

_FWD = {"D": 128, "DV": 128, "BLOCK_D": 128, "BLOCK_DV": 128, "BLOCK_M": 128, "BLOCK_N": 64, "IEEE": False}
# (kernel, constexprs, num_warps, num_stages): representative launches of every kernel
KERNELS = (
    ("_fwd_kernel", _FWD, 8, 2),
    ("_bwd_preprocess", {"DV": 128, "BLOCK_DV": 128, "BLOCK": 64}, 4, 1),
    ("_bwd_dkdv_kernel", {**_FWD, "BLOCK_M": 64, "BLOCK_N": 64}, 4, 1),
    ("_bwd_dq_kernel", {**_FWD, "BLOCK_M": 64, "BLOCK_N": 64}, 4, 1),
    ("_decode_split_kernel", {"causal_off": 1, "D1": 128, "D2": 0, "BLOCK_D1": 128, "BLOCK_D2": 16, "DV": 128,
                              "BLOCK_DV": 128, "BLOCK_R": 16, "BLOCK_N": 64, "IEEE": False}, 4, 2),
    ("_decode_split_kernel", {"causal_off": 1, "D1": 512, "D2": 64, "BLOCK_D1": 512, "BLOCK_D2": 64, "DV": 512,
                              "BLOCK_DV": 512, "BLOCK_R": 16, "BLOCK_N": 32, "IEEE": False}, 4, 2),  # MLA latent
    ("_decode_combine_kernel", {"DV": 128, "BLOCK_DV": 128, "BLOCK_S": 16}, 4, 1),
)


def compile_kernel(name: str, cc: int, constexprs: dict, num_warps: int = 4, num_stages: int = 2,
                   dtype: str = "fp16") -> dict:
    """One kernel of triton_attention compiled for compute capability `cc` (80, 90): its shared
    memory and registers per thread (None without ptxas)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    from . import triton_attention as ta
    fn = getattr(ta, name)
    fn = fn if isinstance(fn, JITFunction) else JITFunction(getattr(fn, "fn", fn))
    sig = {a: ("constexpr" if a in constexprs else _TYPES.get(a, "i32").format(t=dtype)) for a in fn.arg_names}
    c = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs), target=GPUTarget("cuda", cc, 32),
                       options={"num_warps": num_warps, "num_stages": num_stages})
    regs = None
    try:
        from .nvrtc import resource_usage
        target = next((ln.split()[1] for ln in c.asm["ptx"].splitlines() if ln.startswith(".target")), f"sm_{cc}")
        usage = resource_usage(c.asm["ptx"], target.rstrip(",")) or {}  # Hopper PTX targets sm_90a
        regs = next(iter(usage.values()))["registers"] if usage else None
    except ImportError:
        pass
    return {"arch": f"sm_{cc}", "kernel": name, "dtype": dtype, "constexprs": constexprs,
            "num_warps": num_warps, "num_stages": num_stages, "shared_bytes": int(c.metadata.shared),
            "registers": regs}


def compile_forward(cc: int) -> dict:
    """The forward at its representative tile, with the simulator's shared-memory figure for that tile."""
    from attnsim.simulator.families import Tile, get_family, smem_bytes
    name, const, warps, stages = KERNELS[0]
    out = compile_kernel(name, cc, const, warps, stages)
    tile = Tile(const["BLOCK_M"], const["BLOCK_N"], warps, stages)
    out["model_smem_bytes"] = int(smem_bytes(get_family("triton"), tile, const["D"], const["DV"], 2, 2))
    return out


def compile_all(cc: int) -> list:
    return [compile_forward(cc)] + [compile_kernel(n, cc, c, w, s) for n, c, w, s in KERNELS[1:]]


if __name__ == "__main__":
    print(json.dumps([r for cc in (sys.argv[1:] or ["80", "90"]) for r in compile_all(int(cc))], indent=1))
