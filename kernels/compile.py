"""Compile the Triton kernels for a GPU architecture without a GPU (`triton.compile` with a
target), at the tiles the kernels would choose on that card, and report what the hardware sees:
shared memory (Triton's metadata) and registers (ptxas -v on the PTX, through kernels/nvrtc.py's
parser, when triton ships ptxas).

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
PROFILE = {80: "a100", 90: "h100"}  # the card each architecture is checked against


def compile_kernel(name: str, cc: int, constexprs: dict, num_warps: int = 4, num_stages: int = 2,
                   dtype: str = "fp16") -> dict:
    """One kernel of triton_attention compiled for compute capability `cc`: its shared memory and
    registers per thread (None without ptxas)."""
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


def chosen_launches(cc: int) -> list:
    """(kernel, constexprs, warps, stages, dtype, model_smem) of the launches the kernels choose on the
    architecture's card: forward and backward at head dims 128 and 256 (fp16; fp32 at 256), decode
    for GQA (64 packed rows) and for MLA's latent (512 + 64), the preprocess and the combine."""
    import torch

    from attnsim.simulator.families import Tile, get_family, smem_bytes
    from attnsim.simulator.hardware import load_hardware
    from . import triton_attention as ta
    hw = load_hardware(PROFILE[cc])
    fam = get_family("triton")
    out = []
    for d, tdt, name in ((128, torch.float16, "fp16"), (256, torch.float16, "fp16"), (256, torch.float32, "fp32")):
        s = 4 if name == "fp32" else 2
        base = {"D": d, "DV": d, "BLOCK_D": d, "BLOCK_DV": d, "IEEE": name == "fp32"}
        bm, bn, w, st = ta.configs(d, d, tdt, hw=hw)[0]
        out.append(("_fwd_kernel", {**base, "BLOCK_M": bm, "BLOCK_N": bn}, w, st, name,
                    smem_bytes(fam, Tile(bm, bn, w, st), d, d, s, s)))
        bm, bn, w, st = ta.bwd_configs(d, d, tdt, hw=hw)[0]
        model = smem_bytes(fam, Tile(bm, bn, w, st), d, d, s, s, backward=True)
        out.append(("_bwd_dkdv_kernel", {**base, "BLOCK_M": bm, "BLOCK_N": bn}, w, st, name, model))
        out.append(("_bwd_dq_kernel", {**base, "BLOCK_M": bm, "BLOCK_N": bn}, w, st, name, model))
    out.append(("_decode_split_kernel", {"causal_off": 1, "D1": 128, "D2": 0, "BLOCK_D1": 128, "BLOCK_D2": 16,
                                         "DV": 128, "BLOCK_DV": 128, "BLOCK_R": 64, "BLOCK_N": 64, "IEEE": False},
                4, 2, "fp16", None))
    out.append(("_decode_split_kernel", {"causal_off": 1, "D1": 512, "D2": 64, "BLOCK_D1": 512, "BLOCK_D2": 64,
                                         "DV": 512, "BLOCK_DV": 512, "BLOCK_R": 16, "BLOCK_N": 32, "IEEE": False},
                8, 2, "fp16", None))
    out.append(("_bwd_preprocess", {"DV": 256, "BLOCK_DV": 256, "BLOCK": 64}, 4, 1, "fp16", None))
    out.append(("_decode_combine_kernel", {"DV": 512, "BLOCK_DV": 512, "BLOCK_S": 64}, 4, 1, "fp32", None))
    return out


def compile_all(cc: int) -> list:
    rows = []
    for name, const, warps, stages, dtype, model in chosen_launches(cc):
        r = compile_kernel(name, cc, const, warps, stages, dtype)
        r["model_smem_bytes"] = model
        rows.append(r)
    return rows


if __name__ == "__main__":
    print(json.dumps([r for cc in (sys.argv[1:] or ["80", "90"]) for r in compile_all(int(cc))], indent=1))
