"""Compile the Triton kernels for a GPU architecture without a GPU (`triton.compile` with a
target), at the tiles the kernels would choose on that card, and report what the hardware sees:
shared memory (Triton's metadata), registers and spills (ptxas -v on the PTX, through
kernels/nvrtc.py's parser, when triton ships ptxas), and what the main loop's SASS does
(`loop_stats`: nvdisasm on the cubin).

`hints=True` compiles as Triton's JIT specializes a launch on contiguous tensors: every pointer and
every `stride_*` argument divisible by 16 (`tt.divisibility`, the JIT's "D" specialization of 16-byte
aligned pointers and integers that are multiples of 16) and `group` (query heads per kv head) = 1 as a
constant (the JIT specializes integer arguments equal to 1), as tools/compile.py of Triton does for
ahead-of-time builds with `:16` and `:1` hints.

Run it in a process without TRITON_INTERPRET: the interpreter replaces the kernels' language
functions, and compilation needs the real ones (`python -m attnsim.kernels.compile 80 90`).
"""
from __future__ import annotations

import json
import re
import sys

# argument name -> Triton type (t: the tensors' dtype); every other runtime argument is an i32
_TYPES = {"Q": "*{t}", "K": "*{t}", "V": "*{t}", "O": "*{t}", "DO": "*{t}", "DQ": "*{t}", "DK": "*fp32",
          "DV_": "*fp32", "LSE": "*fp32", "DELTA": "*fp32", "OP": "*fp32", "LP": "*fp32", "ROWS": "*i64",
          "KV_START": "*i32", "Q_START": "*i32", "PART": "*i32", "MASKS": "*u8", "FIRST_PART": "*i32", "ctx_lens": "*i32", "scale": "fp32"}
PROFILE = {80: "a100", 90: "h100"}  # the card each architecture is checked against


def compile_kernel(name: str, cc: int, constexprs: dict, num_warps: int = 4, num_stages: int = 2,
                   dtype: str = "fp16", hints: bool = False, keep: bool = False) -> dict:
    """One kernel of triton_attention compiled for compute capability `cc`: its shared memory,
    registers per thread and spilled bytes (None without ptxas). `hints`: the JIT's specialization of a
    launch on contiguous tensors (the module docstring). `keep`: the compiled kernel too ("compiled")."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    from . import triton_attention as ta
    fn = getattr(ta, name)
    fn = fn if isinstance(fn, JITFunction) else JITFunction(getattr(fn, "fn", fn))
    constexprs = dict(constexprs)
    if hints and "group" in fn.arg_names:
        constexprs.setdefault("group", 1)
    sig = {a: ("constexpr" if a in constexprs else _TYPES.get(a, "i32").format(t=dtype)) for a in fn.arg_names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, a in enumerate(fn.arg_names)
             if hints and a not in constexprs and (sig[a].startswith("*") or a.startswith("stride"))}
    c = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs, attrs=attrs),
                       target=GPUTarget("cuda", cc, 32), options={"num_warps": num_warps, "num_stages": num_stages})
    regs = spill = None
    try:
        from .nvrtc import resource_usage
        target = next((ln.split()[1] for ln in c.asm["ptx"].splitlines() if ln.startswith(".target")), f"sm_{cc}")
        usage = resource_usage(c.asm["ptx"], target.rstrip(",")) or {}  # Hopper PTX targets sm_90a
        if usage:
            u = next(iter(usage.values()))
            regs, spill = u["registers"], u["spill_store_bytes"]
    except ImportError:
        pass
    out = {"arch": f"sm_{cc}", "kernel": name, "dtype": dtype, "constexprs": constexprs,
           "num_warps": num_warps, "num_stages": num_stages, "shared_bytes": int(c.metadata.shared),
           "registers": regs, "spill_bytes": spill}
    if keep:
        out["compiled"] = c
    return out


_INSN = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_LABEL = re.compile(r"^\s*(\.L_x_\d+):")
_TARGET = re.compile(r"BRA\s+`?\(?(\.L_x_\d+)\)?")
_WIDTH = re.compile(r"LDGSTS\.[A-Z0-9.]*?(32|64|128)\b")


def sass(cubin: bytes) -> str | None:
    """nvdisasm's listing of a cubin (Triton's bundled nvdisasm), or None when it is not installed."""
    import os
    import subprocess
    import tempfile

    from .nvrtc import ptxas_path
    ptxas = ptxas_path()
    tool = ptxas and os.path.join(os.path.dirname(ptxas), "nvdisasm")
    if not tool or not os.access(tool, os.X_OK):
        return None
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        run = subprocess.run([tool, "-c", f.name], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"nvdisasm failed: {run.stderr}")
    return run.stdout


def loop_stats(listing: str, block_m: int, block_n: int, num_warps: int, kv_bytes: int) -> dict:
    """What the main loop of a kernel's SASS does per score of its BLOCK_M x BLOCK_N tile. The main loop:
    among the backward branches (a BRA to a label above it), the body holding the most MMA instructions
    (HGMMA, HMMA), the first of equals; every instruction of the body counts, both sides of a branch inside
    it included.

        exp_per_score                MUFU.EX2 x 32 lanes x warps / (BLOCK_M x BLOCK_N)
        loop_instructions_per_score  instructions x warps / (BLOCK_M x BLOCK_N)   (warp issue slots)
        uses_wgmma                   the kernel issues HGMMA (Hopper's warpgroup MMA)
        kv_async                     the loop copies at least `kv_bytes` a tile through cp.async (LDGSTS,
                                     its width x 32 lanes x warps) or loads by TMA (UTMALDG)"""
    insns, labels = [], {}
    pending = []
    for line in listing.splitlines():
        if m := _LABEL.match(line):
            pending.append(m.group(1))
            continue
        if m := _INSN.search(line):
            addr = int(m.group(1), 16)
            for lab in pending:
                labels[lab] = len(insns)
            pending = []
            insns.append((addr, m.group(2)))
    loops = []
    for i, (_a, text) in enumerate(insns):
        t = _TARGET.search(text)
        if t and labels.get(t.group(1), i + 1) <= i:
            loops.append((labels[t.group(1)], i))
    mma = lambda lo, hi: sum(("HGMMA" in x or "HMMA" in x) for _a, x in insns[lo:hi + 1])  # noqa: E731
    if not loops:
        lo, hi = 0, len(insns) - 1
    else:  # the most MMA; among equals the first (the forward's full-tile loop precedes its partial one)
        lo, hi = max(loops, key=lambda p: (mma(*p), -p[0]))
    body = [x for _a, x in insns[lo:hi + 1]]
    scores = block_m * block_n
    exps = sum("MUFU.EX2" in x for x in body)
    async_bytes = 0
    for x in body:
        if "LDGSTS" in x:
            w = _WIDTH.search(x)
            async_bytes += (int(w.group(1)) if w else 32) // 8 * 32 * num_warps
    tma = any("UTMALDG" in x for x in body)
    return {"uses_wgmma": any("HGMMA" in x for _a, x in insns), "kv_async": tma or async_bytes >= kv_bytes,
            "exp_per_score": exps * 32 * num_warps / scores,
            "loop_instructions_per_score": len(body) * num_warps / scores, "loop_instructions": len(body),
            "loop_mma": mma(lo, hi), "loops": len(loops)}


_MMA_DEF = re.compile(r"^(#mma\d*) = #ttg\.nvidia_mma<\{versionMajor = (\d+), versionMinor = \d+, "
                      r"warpsPerCTA = \[(\d+), (\d+)\]", re.M)
_DOT = re.compile(r"(?:tt\.dot|ttng\.warp_group_dot) .*?: (?:tensor|!ttg\.memdesc)<(\d+)x(\d+)x[^>]*>.*"
                  r"-> tensor<(\d+)x(\d+)xf32, (#mma\d*)>")


def dot_layouts(ttgir: str) -> list:
    """The MMA layout of each dot of a kernel's TTGIR, in program order: {"version": 2 (mma.sync, sm_80;
    also sm_90's dots too small for a warpgroup MMA) or 3 (wgmma, sm_90), "warps": [warps along the rows (M),
    warps along the columns (N)], "flops": 2 M N K of the dot (A is M x K, the accumulator M x N)} — Triton's
    `warpsPerCTA` of the dot's accumulator (its AccelerateMatmul pass chooses it: on sm_80 a 64-row
    attention tile gets every warp along N, a 128-row one every warp along M)."""
    defs = {m.group(1): {"version": int(m.group(2)), "warps": [int(m.group(3)), int(m.group(4))]}
            for m in _MMA_DEF.finditer(ttgir)}
    return [{**defs[m.group(5)], "flops": 2 * int(m.group(3)) * int(m.group(4)) * int(m.group(2))}
            for m in _DOT.finditer(ttgir) if m.group(5) in defs]


def _workload(d: int, dtype: str = "fp16"):
    """The problem whose picked tiles the checks compile: a 16k-token, 16-head prefill (training for the
    backward) at head dim d."""
    from attnsim.simulator.workload import Workload
    return Workload(batch=1, seqlen_q=16384, seqlen_kv=16384, heads_q=16, heads_kv=16, head_dim_qk=d, head_dim_v=d,
                    dtype="fp16" if dtype == "fp32" else dtype)


def chosen_launches(cc: int) -> list:
    """(kernel, constexprs, warps, stages, dtype, model_smem) of the launches the kernels choose on the
    architecture's card: forward and backward at head dims 128 and 256 (fp16; fp32 at 256) at the tiles
    the simulator's Triton ranking picks for `_workload`, decode for GQA (64 packed rows) and for MLA's
    latent (512 + 64), the preprocess and the combine."""
    import torch

    from attnsim.simulator.families import Tile, get_family, smem_bytes
    from attnsim.simulator.hardware import load_hardware
    from . import triton_attention as ta
    hw = load_hardware(PROFILE[cc])
    fam = get_family(ta.FAMILY)
    out = []
    for d, tdt, name in ((128, torch.float16, "fp16"), (256, torch.float16, "fp16"), (256, torch.float32, "fp32")):
        s = 4 if name == "fp32" else 2
        base = {"D": d, "DV": d, "BLOCK_D": d, "BLOCK_DV": d, "IEEE": name == "fp32"}
        w = _workload(d, name) if name != "fp32" else None  # the simulator prices no fp32 inputs: the first legal
        bm, bn, wp, st = ta.configs(d, d, tdt, hw=hw, workload=w)[0]
        out.append(("_fwd_kernel", {**base, "BLOCK_M": bm, "BLOCK_N": bn}, wp, st, name,
                    smem_bytes(fam, Tile(bm, bn, wp, st), d, d, s, s)))
        for kernel, part in (("_bwd_dkdv_kernel", "dkdv"), ("_bwd_dq_kernel", "dq")):  # each kernel its own tile
            bm, bn, wp, st = ta.bwd_configs(d, d, tdt, hw=hw, workload=w, part=part)[0]
            out.append((kernel, {**base, "BLOCK_M": bm, "BLOCK_N": bn}, wp, st, name,
                        smem_bytes(fam, Tile(bm, bn, wp, st), d, d, s, s, backward=True)))
    out.append(("_decode_split_kernel", {"causal_off": 1, "D1": 128, "D2": 0, "BLOCK_D1": 128, "BLOCK_D2": 16,
                                         "DV": 128, "BLOCK_DV": 128, "BLOCK_R": 64, "BLOCK_N": 64, "IEEE": False,
                                         "V_IS_K1": False}, 4, 2, "fp16", None))
    out.append(("_decode_split_kernel", {"causal_off": 1, "D1": 512, "D2": 64, "BLOCK_D1": 512, "BLOCK_D2": 64,
                                         "DV": 512, "BLOCK_DV": 512, "BLOCK_R": 16, "BLOCK_N": 32, "IEEE": False,
                                         "V_IS_K1": True}, 8, 2, "fp16", None))
    out.append(("_bwd_preprocess", {"DV": 256, "BLOCK_DV": 256, "BLOCK": 64}, 4, 1, "fp16", None))
    out.append(("_decode_combine_kernel", {"DV": 512, "BLOCK_DV": 512, "BLOCK_S": 64}, 4, 1, "fp32", None))
    return out


def compile_all(cc: int) -> list:
    rows = []
    for name, const, warps, stages, dtype, model in chosen_launches(cc):
        r = compile_kernel(name, cc, const, warps, stages, dtype, hints=True)
        r["model_smem_bytes"] = model
        rows.append(r)
    return rows


STATIC_NAMES = {"_fwd_kernel": "forward", "_bwd_dkdv_kernel": "backward_dkdv", "_bwd_dq_kernel": "backward_dq",
                "_bwd_preprocess": "backward_preprocess", "_decode_split_kernel": "decode",
                "_decode_combine_kernel": "decode_combine"}


def static_launches(cc: int, d: int) -> list:
    """(kernel, constexprs, warps, stages, (BLOCK_M, BLOCK_N) of its scores or None, K/V bytes of a tile) of
    the launches on the architecture's card for `_workload(d)` (forward and backward at the simulator's
    picked tiles), a GQA decode step (64 packed rows) and the helpers, fp16."""
    import torch

    from attnsim.simulator.hardware import load_hardware
    from . import triton_attention as ta
    hw = load_hardware(PROFILE[cc])
    w = _workload(d)
    base = {"D": d, "DV": d, "BLOCK_D": d, "BLOCK_DV": d, "IEEE": False}
    out = []
    bm, bn, wp, st = ta.configs(d, d, torch.float16, hw=hw, workload=w)[0]
    out.append(("_fwd_kernel", {**base, "BLOCK_M": bm, "BLOCK_N": bn}, wp, st, (bm, bn), bn * 2 * d * 2))
    bm, bn, wp, st = ta.bwd_configs(d, d, torch.float16, hw=hw, workload=w, part="dkdv")[0]
    out.append(("_bwd_dkdv_kernel", {**base, "BLOCK_M": bm, "BLOCK_N": bn}, wp, st, (bm, bn), bm * 2 * d * 2))
    bm, bn, wp, st = ta.bwd_configs(d, d, torch.float16, hw=hw, workload=w, part="dq")[0]
    out.append(("_bwd_dq_kernel", {**base, "BLOCK_M": bm, "BLOCK_N": bn}, wp, st, (bm, bn), bn * 2 * d * 2))
    out.append(("_bwd_preprocess", {"DV": d, "BLOCK_DV": d, "BLOCK": 64}, 4, 1, None, 0))
    out.append(("_decode_split_kernel", {"causal_off": 1, "D1": d, "D2": 0, "BLOCK_D1": d, "BLOCK_D2": 16, "DV": d,
                                         "BLOCK_DV": d, "BLOCK_R": 64, "BLOCK_N": 64, "IEEE": False, "V_IS_K1": False},
                4, 2, (64, 64),
                64 * 2 * d * 2))
    out.append(("_decode_combine_kernel", {"DV": d, "BLOCK_DV": d, "BLOCK_S": 64}, 4, 1, None, 0))
    return out


def static_report(cc: int, d: int) -> list:
    """benchmarks/bench_kernels_static.py's rows: each launch of `static_launches` compiled with the JIT's
    hints, its registers, spills, shared memory and its main loop's `loop_stats`."""
    rows = []
    for name, const, warps, stages, scores, kv_bytes in static_launches(cc, d):
        c = compile_kernel(name, cc, const, warps, stages, "fp16", hints=True, keep=True)
        listing = sass(c["compiled"].asm["cubin"])
        stats = loop_stats(listing, *scores, warps, kv_bytes) if scores and listing else {}
        dots = dot_layouts(c["compiled"].asm["ttgir"])
        rows.append({"kernel": STATIC_NAMES[name], "arch": f"sm_{cc}", "head_dim": d,
                     "tile": f"{scores[0]}x{scores[1]}" if scores else None, "warps": warps, "stages": stages,
                     "regs": c["registers"], "spill_bytes": c["spill_bytes"], "smem_bytes": c["shared_bytes"],
                     "uses_wgmma": stats.get("uses_wgmma", False) if listing else None,
                     "every_dot_wgmma": all(x["version"] >= 3 for x in dots) if dots else None,
                     "kv_async": stats.get("kv_async"), "exp_per_score": stats.get("exp_per_score"),
                     "loop_instructions_per_score": stats.get("loop_instructions_per_score")})
    return rows


if __name__ == "__main__":
    print(json.dumps([r for cc in (sys.argv[1:] or ["80", "90"]) for r in compile_all(int(cc))], indent=1))
