"""One place that resolves an attention problem: a variant, its -p parameters and the workload flags
-> a `Problem` (defaults, presets and refusals), then -> a `Prediction` (the kernel family fallback,
the eager contrast, the notes).

    problem = resolve("gqa", {"q_per_step": 2}, phase="decode", seqlen_kv=32768)
    pred = predict_problem(problem, "h100")          # pred.params: the resolved -p values
    pred = predict_variant("h100", "swa", {"window_size": "1024,0"}, seqlen=8192)

The CLI (`attnsim predict`, `attnsim compare`) and the kernels' `plan.mask_of` resolve through
here, so a refusal reads the same everywhere (its messages name the CLI's flags). Nothing inside
the simulator imports this module: it sits on top of variants, workload, layouts, model and rates.
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .errors import AttnsimError, UnsupportedCore
from .hardware import Hardware, load_hardware
from .layouts import check_rope
from .model import Prediction
from .model import predict as run
from .rates import peak_rates
from .variants import Variant, get_variant, parse_param, sample_lengths
from .workload import MAX_D_MODEL, Workload, check_limit

# when the hardware's default family has no kernel for a core (UnsupportedCore), the families tried
# next, in order; the default itself and any family that refuses (not on the arch, a dtype) are skipped
FALLBACK_FAMILIES = ("fa3", "fa2", "triton", "eager")
DEFAULT_SEQLEN = 4096  # query tokens (decode: the context) when no length is given
DEFAULT_HEAD_DIM = 128
DEFAULT_GQA_KV_HEADS = 8  # gqa/kvcompress/ccgqa without --kv-heads, when 8 divides --heads (and is fewer)


@dataclass(frozen=True)
class Problem:
    """A resolved attention problem: what `model.predict` runs (see `predict_problem`)."""
    variant: Variant
    params: dict  # the variant's -p parameters, defaults filled in and checked (layouts: the values used)
    workload: Workload
    mask: object  # masks.Mask
    layout: object | None  # layouts.Layout of a head-layout variant; None: the standard MHA/GQA layout
    kernel: str | None  # the family asked for (eager: the variant's own); None: the hardware's default
    scope: str = "attention"
    d_model: int | None = None  # None: heads x head dim
    rope_dim: int | None = None  # None: the head dim
    notes: tuple = ()  # the defaults chosen for the caller, one sentence each
    hardware: Hardware | None = None  # loaded when resolve() was given hw (predict_problem's default)


def fmt_time(t: float) -> str:
    """A time for people: s, ms or us (the CLI's format)."""
    if t >= 1:
        return f"{t:.3f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.3f} ms"
    return f"{t * 1e6:.2f} us"


def _integer(name: str, v):
    """An integer argument (numpy integers too) as a Python int; None stays None."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise AttnsimError(f"{name}={v!r} must be an integer")
    return int(v)


def _text(name: str, v, optional: bool):
    """A name argument (a dtype, phase, scope, family): a string; None only where it has a default."""
    if v is None and optional:
        return None
    if not isinstance(v, str):
        raise AttnsimError(f"{name}={v!r} must be a name (a string)")
    return v


def _given(var: Variant, params) -> dict:
    """The caller's -p values by name. `params`: None, a mapping name -> value (a string as after
    `-p name=`, parsed by the -p grammar, or a typed value; None = not given), or an iterable of
    'KEY=VALUE' strings (the CLI's -p, each name at most once)."""
    given = {}
    if params is None:
        return given
    if isinstance(params, str):
        params = (params,)
    if not isinstance(params, Mapping):
        for text in params:
            key, value = parse_param(text)
            if key in given:
                raise AttnsimError(f"-p {key} given twice ({given[key]!r} and {value!r}); give it once")
            given[key] = value
        return given
    types = {p.name: p.type for p in var.params}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, np.ndarray):  # numpy values as the Python values they hold
            value = tuple(value.tolist()) if value.ndim else value.item()
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, str):
            key, value = parse_param(f"{key}={value}")
        elif isinstance(value, tuple) and types.get(key) is list:  # a,b,c parameters parse to lists
            value = list(value)
        given[key] = value
    return given


def _token_grid(token_shape) -> tuple:
    if isinstance(token_shape, str):
        try:
            return tuple(int(x) for x in token_shape.lower().split("x"))
        except ValueError:
            raise AttnsimError(f"--token-shape {token_shape!r}: expected integers joined by 'x' (e.g. 256x256)") from None
    if isinstance(token_shape, int) and not isinstance(token_shape, bool):
        return (token_shape,)
    return tuple(token_shape)


def _lengths_given(seqlens):
    if isinstance(seqlens, str):
        return parse_param(f"lengths={seqlens}")[1]
    if isinstance(seqlens, int) and not isinstance(seqlens, bool):
        return seqlens
    return list(seqlens)


def resolve(variant="mha", params=None, *, batch=1, seqlen=None, seqlen_kv=None, seqlens=None, token_shape=None,
            heads=32, kv_heads=None, head_dim=None, head_dim_v=None, dtype="bf16", kv_dtype=None, qk_accum="fp32",
            pv_accum="fp32", phase="prefill", causal=False, scope="attention", d_model=None, rope_dim=None,
            kernel=None, hw=None) -> Problem:
    """A variant, its parameters and the workload flags -> a Problem, or AttnsimError saying what is
    wrong. The arguments are `attnsim predict`'s options (same defaults); `params` as in `_given`;
    `seqlens`: 'a,b,c', 'uniform:LO:HI' or a list of lengths; `token_shape`: 'AxBxC' or a tuple.
    `hw` (optional: a name, a YAML path or a Hardware) is loaded where the CLI loads it — after the
    workload validates, before the mask and layout — so refusals come in the CLI's order; it is
    kept as `Problem.hardware`. Nothing of the resolution depends on it."""
    batch, seqlen, seqlen_kv, heads, kv_heads, head_dim, head_dim_v, d_model, rope_dim = (
        _integer(name, v) for name, v in (("batch", batch), ("seqlen", seqlen), ("seqlen_kv", seqlen_kv), ("heads", heads),
                                          ("kv_heads", kv_heads), ("head_dim", head_dim), ("head_dim_v", head_dim_v),
                                          ("d_model", d_model), ("rope_dim", rope_dim)))
    dtype, kv_dtype, qk_accum, pv_accum, phase, scope, kernel = (
        _text(name, v, optional) for name, v, optional in (
            ("dtype", dtype, False), ("kv_dtype", kv_dtype, True), ("qk_accum", qk_accum, False),
            ("pv_accum", pv_accum, False), ("phase", phase, False), ("scope", scope, False), ("kernel", kernel, True)))
    if causal is None or isinstance(causal, str) or causal not in (True, False):
        raise AttnsimError(f"causal={causal!r} must be true or false")
    causal = bool(causal)
    var = variant if isinstance(variant, Variant) else get_variant(variant)
    notes = []
    given = _given(var, params)
    if token_shape is not None:
        if "token_shape" not in {p.name for p in var.params}:
            raise AttnsimError(f"--token-shape applies to the grid variants (na, gna, vmoba), not {var.name!r}")
        if "token_shape" in given:
            raise AttnsimError("give the token grid once: --token-shape or -p token_shape")
        given["token_shape"] = _token_grid(token_shape)
    if seqlens is not None:
        if var.name != "varlen":
            raise AttnsimError(f"--seqlens applies to --variant varlen, not {var.name!r}")
        if "lengths" in given:
            raise AttnsimError("give the lengths once: --seqlens or -p lengths")
        given["lengths"] = _lengths_given(seqlens)
    resolved = var.resolve(given)
    lengths = None
    if var.name == "varlen":
        if resolved["lengths"] is None:
            raise AttnsimError("variant 'varlen' needs --seqlens a,b,c (or uniform:LO:HI with --batch)")
        if resolved["lengths"][0] == "uniform":
            if batch < 1:
                raise AttnsimError(f"batch={batch} must be a positive integer")
            if batch == 1:
                notes.append("one sequence sampled: give --batch for a batch of lengths")
            lengths = sample_lengths(resolved["lengths"], batch)
            notes.append(f"lengths sampled from {':'.join(map(str, resolved['lengths']))} with seed 0")
        else:
            lengths = resolved["lengths"]
            if batch not in (1, len(lengths)):
                raise AttnsimError(f"--batch {batch} does not match the {len(lengths)} lengths given; "
                                   f"drop --batch or give {batch} lengths")
        for flag, v in (("--seqlen", seqlen), ("--seqlen-kv", seqlen_kv)):
            if v is not None:
                raise AttnsimError(f"{flag} does not apply with per-sequence lengths (--seqlens)")
        resolved["lengths"] = list(lengths)
    if resolved.get("token_shape") is not None:
        n_tokens = 1
        for x in resolved["token_shape"]:
            n_tokens *= x
        for flag, v in (("--seqlen", seqlen), ("--seqlen-kv", seqlen_kv)):
            if v is not None and v != n_tokens:
                raise AttnsimError(f"{flag} {v} differs from the {n_tokens} tokens of token shape "
                                   f"{'x'.join(map(str, resolved['token_shape']))}; drop {flag}")
        seqlen = n_tokens
        if causal and given.get("is_causal") is not None:
            raise AttnsimError("--causal and -p is_causal both given: give causality once (-p is_causal per dimension)")
    if "q_per_step" in given and phase != "decode":
        raise AttnsimError("-p q_per_step applies to --phase decode only")
    kv_heads = _kv_heads(var, heads, kv_heads, notes)
    if var.head_dims_from_params:
        for flag, v in (("--head-dim", head_dim), ("--head-dim-v", head_dim_v)):
            if v is not None:
                notes.append(f"{flag} {v} not used: {var.name}'s head dims come from its -p parameters")
        head_dim, head_dim_v = DEFAULT_HEAD_DIM, None
    head_dim = DEFAULT_HEAD_DIM if head_dim is None else head_dim
    if d_model is not None and scope != "layer" and not var.d_model_in_core:
        if d_model != heads * head_dim:
            raise AttnsimError("--d-model applies to --scope layer only")
        d_model = None  # the default (heads x head dim) restated: accepted, no effect at attention scope
    if d_model is not None and d_model < 1:
        raise AttnsimError(f"--d-model={d_model} must be a positive integer")
    if d_model is not None:
        check_limit("--d-model", d_model, MAX_D_MODEL, "channels (2^20)")
    if rope_dim is not None:
        if scope != "layer":
            raise AttnsimError("--rope-dim applies to --scope layer only")
        if not var.rope:
            raise AttnsimError(f"variant {var.name!r} has no RoPE (its positions come from its own score); drop --rope-dim")
        if var.head_dims_from_params:
            raise AttnsimError(f"variant {var.name!r} sets its RoPE dims with -p qk_rope_head_dim; drop --rope-dim")
    if var.kernel is not None:
        if kernel is not None and kernel.strip().lower() != var.kernel:
            raise AttnsimError(f"variant {var.name!r} is the {var.kernel} kernel; got --kernel {kernel}: drop --kernel "
                               f"(the output contrasts it with the fused kernel)")
        kernel = var.kernel
    if lengths is not None:
        seqlen_q, context = (resolved.get("q_per_step", 1), None) if phase == "decode" else (None, None)
    elif phase == "decode":
        if seqlen is not None and seqlen_kv is not None:
            raise AttnsimError(f"in decode --seqlen-kv is the context and the query tokens of a step are "
                               f"-p q_per_step (default 1); got --seqlen {seqlen} as well: drop it")
        context = seqlen_kv if seqlen_kv is not None else (DEFAULT_SEQLEN if seqlen is None else seqlen)
        seqlen_q = resolved.get("q_per_step", 1)
        if context < 1:
            raise AttnsimError(f"the decode context (--seqlen-kv) is {context}: it must be a positive integer")
        if seqlen_q > context:
            raise AttnsimError(f"-p q_per_step={seqlen_q} exceeds the context of {context} tokens")
    else:
        seqlen_q, context = (DEFAULT_SEQLEN if seqlen is None else seqlen), seqlen_kv
    dtype, kv_dtype = dtype.lower(), kv_dtype.lower() if kv_dtype else None
    if kernel is not None and not kernel.strip():
        raise AttnsimError("--kernel is empty; allowed: eager, fa2, fa3, fa4, triton")
    if lengths is not None and phase == "decode" and seqlen_q > min(lengths):
        raise AttnsimError(f"-p q_per_step={seqlen_q} exceeds the shortest context ({min(lengths)} tokens)")
    w = Workload(batch=batch, seqlen_q=seqlen_q, seqlen_kv=context, heads_q=heads, heads_kv=kv_heads,
                 head_dim_qk=head_dim, head_dim_v=head_dim_v, dtype=dtype, kv_dtype=kv_dtype, qk_accum=qk_accum,
                 pv_accum=pv_accum, causal=causal, phase=phase, seqlens=lengths,
                 varlen=resolved.get("layout", "packed"))
    if isinstance(hw, str):
        hw = load_hardware(hw)
    mask = var.make_mask(resolved, causal)
    layout = None
    rd = head_dim if rope_dim is None else rope_dim
    if var.layout is not None or rope_dim is not None:
        check_rope(rd, head_dim)
    if var.layout is not None:
        layout = var.layout(resolved, w, d_model or heads * head_dim, rd)
        resolved.update({k: v for k, v in layout.shapes.items() if k in resolved})  # the values used, not placeholders
    return Problem(variant=var, params=resolved, workload=w, mask=mask, layout=layout, kernel=kernel, scope=scope,
                   d_model=d_model, rope_dim=rope_dim, notes=tuple(notes), hardware=hw)


def _kv_heads(var: Variant, heads, kv_heads, notes: list):
    """The kv heads by the variant's rule (mha: = heads; mqa: 1; gqa: as given, default 8; any: as
    given, default heads)."""
    if var.heads_kv_rule == "mha":
        if kv_heads not in (None, heads):
            raise AttnsimError(f"variant {var.name!r} has --kv-heads = --heads ({heads}); got {kv_heads}: "
                               f"{var.kv_heads_hint}")
        return heads
    if var.heads_kv_rule == "mqa":
        if kv_heads not in (None, 1):
            raise AttnsimError(f"variant 'mqa' has one kv head; got --kv-heads {kv_heads}: {var.kv_heads_hint}")
        return 1
    if kv_heads is not None:
        return kv_heads
    if var.heads_kv_rule == "any":
        return heads
    n = DEFAULT_GQA_KV_HEADS
    if heads > n and heads % n == 0:
        notes.append(f"kv heads: {n} (default for {var.name}; set --kv-heads)")
        return n
    raise AttnsimError(f"variant 'gqa' needs --kv-heads (a divisor of --heads={heads})")


def predict_problem(problem: Problem, hw=None, compare: bool = True, calibration="default") -> Prediction:
    """Run a resolved problem on a device: `model.predict`, falling back over FALLBACK_FAMILIES when
    the hardware's default family cannot run the core; the eager variant's fused contrast; the
    notes. `hw`: a Hardware, a name or a path; None: `problem.hardware`. `calibration`: as
    `model.predict` takes it ("default": the shipped one; None: the raw model), for every kernel (the
    fused contrast's too). The Prediction carries
    `params`: the resolved -p values (neighborhood attention adds its per-dimension values and the
    boxes used), what `predict --json` prints as "params"."""
    if hw is None:
        hw = problem.hardware
    if hw is None:
        raise AttnsimError("no hardware: pass hw= (a profile name, a YAML path or a Hardware) or resolve(..., hw=...)")
    if isinstance(hw, str):
        hw = load_hardware(hw)
    var, w, mask, layout, kernel = problem.variant, problem.workload, problem.mask, problem.layout, problem.kernel
    notes = list(problem.notes)

    def attempt(family, **kw):
        return run(w, hw, family, mask=mask, variant=var.name, scope=problem.scope, d_model=problem.d_model,
                   rope_dim=problem.rope_dim, calibration=calibration, **kw)

    try:
        pred = attempt(kernel, layout=layout, compare=compare)
    except UnsupportedCore as e:  # the default family has no kernel for this core: the next family that has one
        if kernel is not None or layout is None:
            raise
        pred = _fallback(e, hw, lambda k: attempt(k, layout=layout, compare=compare), notes)
    if var.kernel is not None:  # eager attention: the fused kernel on the same problem, side by side
        try:
            fused = attempt(None, compare=False)
        except AttnsimError as e:
            fused = None
            notes.append(f"no fused contrast: {e}")
        if fused is not None:
            pred.contrast = {"kernel": fused.family.name, "time_s": fused.time_s, "hbm_bytes": fused.hbm_bytes,
                             "memory_bytes": fused.memory_bytes, "eager_over_fused_time": pred.time_s / fused.time_s,
                             "eager_over_fused_hbm": pred.hbm_bytes / fused.hbm_bytes,
                             "eager_over_fused_memory": pred.memory_bytes / fused.memory_bytes,
                             "eager_hbm_floor_s": pred.hbm_bytes / peak_rates(hw).hbm_bytes_per_s}
            notes.append(f"bound_s is the op's speed of light (what a fused kernel could reach); eager's own traffic "
                         f"alone takes {fmt_time(pred.contrast['eager_hbm_floor_s'])} at full HBM bandwidth")
    pred.notes.extend(notes)
    params = dict(problem.params)
    if hasattr(mask, "resolved"):  # neighborhood attention: per-dimension values and the boxes used
        fwd = next((k.tile_obj for k in pred.kernels_for("forward")), None)
        params.update(mask.resolved(fwd))
    if var.name == "varlen" and not pred.family.fused:  # eager attention: scores materialized, sequences padded
        pred.notes.append("eager attention pads every sequence to the longest: the varlen layout does not apply")
    pred.params = params
    return pred


def _fallback(error: UnsupportedCore, hw: Hardware, attempt, notes: list):
    """The first family of FALLBACK_FAMILIES (the hardware's default skipped) that runs wins, with a
    note saying why; a family that refuses (not on this arch: `check_family`) is skipped. None runs:
    the default's error."""
    for name in FALLBACK_FAMILIES:
        if name == hw.default_kernel:
            continue
        try:
            pred = attempt(name)
        except AttnsimError:
            continue
        notes.append(f"kernel {name}: the default {hw.default_kernel} cannot run this core ({error})")
        return pred
    raise error


def predict_variant(hw, variant="mha", params=None, kernel=None, calibration="default", **shapes) -> Prediction:
    """resolve() and predict_problem() in one call: `hw` a name, a path or a Hardware; `shapes` the
    workload keywords of resolve() (seqlen=8192, phase="decode", causal=True, ...); `calibration`: a
    rates.Calibration (None: uncalibrated)."""
    return predict_problem(resolve(variant, params, kernel=kernel, hw=hw, **shapes), calibration=calibration)
