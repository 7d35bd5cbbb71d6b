"""Variants: a name, a description, a paper, parameters, and how a workload lowers to kernels.

`VARIANTS` is one plain dict (gpt-fast's preset pattern). `-p KEY=VALUE` parameters are parsed
by `parse_param` with the grammar documented in `PARAM_GRAMMAR` (shown by `attnsim variants`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from . import heads
from .errors import AttnsimError, unknown
from .masks import (BlockSelectMask, BoxBlockSelectMask, DuplexMask, ElasticWindowMask, HeadMixMask, OccupancyMask,
                    mask_for, segment_mask, window_mask)
from .na import NAMask
from .workload import MAX_TOKENS, MAX_VARLEN_SEQUENCES, check_limit

MAX_FLOAT_PARAM = float(1 << 53)  # a number parameter (work per score or per query, a fraction) stays below it

PARAM_GRAMMAR = """\
-p/--param KEY=VALUE (repeatable). VALUE is one of:
  an integer        -p q_per_step=4
  a float           -p ratio=0.5        (1e-3 works too)
  a boolean         -p flag=true        (true/false, case-insensitive)
  a tuple           -p kernel_size=13x13x13   (integers joined by 'x')
  a list            -p windows=128,256,512    (values joined by ',')
  a string          anything else, e.g. -p order=rowmajor"""


MAX_DIGITS = 30  # a -p integer past this many digits is refused before it is converted


def _short(text, n: int = 40) -> str:
    """A value as echoed in an error message: at most n characters."""
    text = str(text)
    return text if len(text) <= n else f"{text[:n]}... ({len(text)} characters)"


def _scalar(text: str):
    t = text.strip()
    if len(re.sub(r"\D", "", t)) > MAX_DIGITS and re.fullmatch(r"[+-]?[\d.eE+x-]+", t):
        raise AttnsimError(f"value {_short(t)!r} has more than {MAX_DIGITS} digits; attnsim's parameters are "
                           f"counts up to 2^24 and finite numbers up to 2^53")
    if re.fullmatch(r"[+-]?[0-9]+", t):
        return int(t)
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    try:
        f = float(t)
    except ValueError:
        pass
    else:
        if not math.isfinite(f):
            raise AttnsimError(f"value {text!r} is not a finite number; parameters take finite values")
        return f
    if re.fullmatch(r"[0-9]+(x[0-9]+)+", t):
        return tuple(int(x) for x in t.split("x"))
    if not re.fullmatch(r"[A-Za-z_][\w.:-]*", t):
        raise AttnsimError(f"cannot parse value {_short(text)!r}; allowed: int, float, true/false, AxBxC, a,b,c, or a name")
    return t


def parse_param(text: str):
    """'KEY=VALUE' -> (key, value) by the grammar above."""
    if "=" not in text:
        raise AttnsimError(f"malformed -p {text!r}: expected KEY=VALUE (see 'attnsim variants' for the grammar)")
    key, _, value = text.partition("=")
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_]\w*", key):
        raise AttnsimError(f"malformed -p {text!r}: KEY must be a name like q_per_step")
    if value.strip() == "":
        raise AttnsimError(f"malformed -p {text!r}: empty VALUE")
    try:
        if "," in value:
            return key, [_scalar(v) for v in value.split(",")]
        return key, _scalar(value)
    except AttnsimError as e:
        raise AttnsimError(f"-p {key}: {e}") from None


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    default: object
    help: str
    phases: tuple = ("prefill", "decode", "train")
    check: object = None  # value -> normalized value, raising AttnsimError; for non-int types

    def to_json(self) -> dict:
        """`attnsim variants --json`: name, type (the Python type's name), default (tuples as lists), help."""
        default = list(self.default) if isinstance(self.default, tuple) else self.default
        return {"name": self.name, "type": self.type.__name__, "default": default, "help": self.help,
                "phases": list(self.phases)}


def _window_size(v):
    """window_size: 'L,R' (FlashAttention's (left, right); -1 = unbounded) or one int W for (W, W)."""
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v, v]
    if (not isinstance(v, list) or len(v) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) and x >= -1 for x in v)):
        raise AttnsimError(f"-p window_size={v!r}: expected LEFT,RIGHT integers >= -1 (-1 = unbounded) "
                           f"or one integer W for W,W")
    return tuple(v)


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    paper: str
    params: tuple = field(default_factory=tuple)  # of Param
    heads_kv_rule: str = "any"  # "mha": heads_kv = heads_q; "mqa": heads_kv = 1; "gqa": as given (default 8);
    # "any": as given, default heads_q
    mask: object = None  # (params, causal) -> Mask; None: dense or causal
    layout: object = None  # (params, workload, d_model, rope_dim) -> layouts.Layout; None: the standard layout
    kernel: str | None = None  # the kernel family the variant is (eager attention)
    kv_heads_hint: str = "use --variant gqa"  # what to do instead of --kv-heads under the "mha"/"mqa" rules
    rope: bool = True  # the layer has RoPE (--rope-dim applies)
    head_dims_from_params: bool = False  # -p parameters set the head dims (MLA): --head-dim does not apply
    d_model_in_core: bool = False  # the core's shape follows --d-model (SHViT): --d-model applies to either scope

    def to_json(self) -> dict:
        """`attnsim variants --json`: what the variant is, its parameters and how it resolves."""
        return {"name": self.name, "description": self.description, "paper": self.paper,
                "params": [p.to_json() for p in self.params], "kernel": self.kernel, "kv_heads": self.heads_kv_rule,
                "head_layout": self.layout is not None, "rope": self.rope,
                "head_dims_from_params": self.head_dims_from_params}

    def make_mask(self, params: dict, causal: bool):
        return self.mask(params, causal) if self.mask else mask_for(causal)

    def resolve(self, given: dict) -> dict:
        """Validate -p values against the variant's parameters; fill defaults."""
        names = {p.name: p for p in self.params}
        out = {p.name: p.default for p in self.params}
        for k, v in given.items():
            if k not in names:
                allowed = ", ".join(names) or "none"
                raise unknown(f"parameter of variant {self.name!r}:", k, names) if names else AttnsimError(
                    f"variant {self.name!r} takes no parameter {k!r}; allowed: {allowed}")
            out[k] = _check_value(names[k], v)
        return out


def _numbers(v):
    """The numbers in a parameter value (a scalar, or the items of a tuple or list)."""
    items = v if isinstance(v, (tuple, list)) else (v,)
    return [x for x in items if isinstance(x, (int, float)) and not isinstance(x, bool)]


def _check_value(p: Param, v):
    """One -p value, checked in this order for every parameter: finite numbers only; an integer
    parameter takes an integer (never a fraction); integers that count tokens, blocks, heads or dims
    stay within MAX_TOKENS; then the parameter's own check (or, for a plain integer, >= 1)."""
    bad = [x for x in _numbers(v) if isinstance(x, float) and not math.isfinite(x)]
    if bad:
        raise AttnsimError(f"-p {p.name}={_short(v)}: not a finite number; parameters take finite values")
    huge = [x for x in _numbers(v) if abs(x) > MAX_FLOAT_PARAM]
    if p.type is float and huge:  # per-score or per-query work this large overflows the times it scales
        raise AttnsimError(f"-p {p.name}={huge[0]:g} exceeds attnsim's limit of {MAX_FLOAT_PARAM:g} (2^53) "
                           f"for a number parameter")
    if p.type is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise AttnsimError(f"-p {p.name}={v!r} must be an integer")
    if p.type is not float:
        big = [x for x in _numbers(v) if isinstance(x, int) and abs(x) > MAX_TOKENS]
        if big:
            raise AttnsimError(f"-p {p.name}={_short(big[0])} exceeds attnsim's limit of {MAX_TOKENS:,} (2^24, "
                               f"the longest sequence it models)")
    if p.check is not None:
        return p.check(v)
    if p.type is int and v < 1:
        raise AttnsimError(f"-p {p.name}={v!r} must be a positive integer")
    return v


def _ints(name, allow_none=False):
    """int, AxBxC or a,b,c -> tuple of positive ints."""
    def check(v):
        if v is None and allow_none:
            return None
        vals = (v,) if isinstance(v, int) and not isinstance(v, bool) else v
        if (not isinstance(vals, (tuple, list)) or not vals
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in vals)):
            raise AttnsimError(f"-p {name}={v!r}: expected positive integers (one value, AxBxC or a,b,c)")
        return tuple(vals)
    return check


def _count(name):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise AttnsimError(f"-p {name}={v!r}: expected an integer >= 0")
        return v
    return check


def _bools(v):
    vals = (v,) if isinstance(v, bool) else v
    if not isinstance(vals, (tuple, list)) or not vals or not all(isinstance(x, bool) for x in vals):
        raise AttnsimError(f"-p is_causal={v!r}: expected true/false, or one per dimension (true,false,false)")
    return tuple(vals)


def _choice(name, allowed):
    def check(v):
        if v not in allowed:
            raise AttnsimError(f"-p {name}={v!r}; allowed: {', '.join(allowed)}")
        return v
    return check


def _lengths(v):
    """lengths: a list a,b,c, one integer, or a distribution 'uniform:LO:HI' (sampled for the batch)."""
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v]
    if isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v):
        return tuple(v)
    if isinstance(v, str):
        parts = v.split(":")
        ok = len(parts) == 3 and parts[0] == "uniform" and all(re.fullmatch(r"[0-9]+", x) for x in parts[1:])
        if ok and max(len(x) for x in parts[1:]) > MAX_DIGITS or ok and int(parts[2]) > MAX_TOKENS:
            raise AttnsimError(f"-p lengths={_short(v)}: HI={_short(parts[2])} exceeds attnsim's limit of "
                               f"{MAX_TOKENS:,} tokens per sequence (2^24)")
        if ok and 1 <= int(parts[1]) <= int(parts[2]):
            return ("uniform", int(parts[1]), int(parts[2]))
    raise AttnsimError(f"-p lengths={_short(v)}: expected positive integers a,b,c (one per sequence) or uniform:LO:HI")


def sample_lengths(spec, batch: int):
    """A lengths spec -> one length per sequence. Distributions are sampled with a fixed seed (0),
    so a prediction is reproducible; the sampled lengths are echoed in the JSON."""
    if spec and spec[0] == "uniform":
        check_limit("batch", batch, MAX_VARLEN_SEQUENCES, "sequences of a varlen batch (2^16)")
        import numpy as np
        _, lo, hi = spec
        return tuple(int(x) for x in np.random.default_rng(0).integers(lo, hi + 1, batch))
    return tuple(spec)


def _fraction_named(name):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
            raise AttnsimError(f"-p {name}={v!r}: expected a fraction in (0, 1]")
        return float(v)
    return check


_fraction = _fraction_named("density")


def _nonneg(name):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise AttnsimError(f"-p {name}={v!r}: expected a number >= 0")
        return v
    return check


def _fractions(name):
    def check(v):
        vals = [v] if isinstance(v, (int, float)) and not isinstance(v, bool) else v
        if (not isinstance(vals, (list, tuple)) or not vals
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1 for x in vals)):
            raise AttnsimError(f"-p {name}={v!r}: expected fractions in [0, 1] (one per head group)")
        return tuple(float(x) for x in vals)
    return check


def _moa(p, causal):
    spans, betas = p["spans"], p["betas"] or (0.0,) * len(p["spans"])
    if len(betas) != len(spans):
        raise AttnsimError(f"-p betas has {len(betas)} values and -p spans {len(spans)}; give one each per head group")
    return HeadMixMask([ElasticWindowMask(a, b, causal) for a, b in zip(spans, betas)],
                       name="moa_" + "_".join(str(a) + (f"+{b:g}N" if b else "") for a, b in zip(spans, betas)))


def _vmoba(p, causal):
    if p["token_shape"] is None or p["block"] is None:
        raise AttnsimError("variant 'vmoba' needs --token-shape and -p block=AxBxC (a block box per dimension)")
    if len(p["block"]) not in (1, len(p["token_shape"])):
        raise AttnsimError(f"-p block has {len(p['block'])} values; the token grid has {len(p['token_shape'])} dimensions")
    return BoxBlockSelectMask(p["token_shape"], p["block"], p["top_k"], causal, p["density"])


def _clusters(default: str):
    """The runs-per-query parameter of the top-k occupancy variants (0: the variant's default)."""
    return Param("clusters", int, 0, f"runs per query [default: {default}]", check=_count("clusters"))


def _selection(default):
    """The selection-cost parameters of the occupancy variants: (select, predictor_flops_per_query)."""
    return (Param("select", str, default, "scores (compute every allowed score first, then select) or none",
                  check=_choice("select", ("none", "scores"))),
            Param("predictor_flops_per_query", float, 0.0, "FLOPs of a learned mask predictor per query",
                  check=_nonneg("predictor_flops_per_query")))


def _occupancy(p, causal, label):
    top_k = p.get("top_k")
    clusters = p["clusters"] or (max(1, top_k // 64) if label == "dma" else top_k)
    return OccupancyMask(p.get("density"), int(clusters), causal, label, top_k=top_k, select=p["select"],
                         predictor_flops_per_query=float(p["predictor_flops_per_query"]))


def _duplex(p, causal):
    if p["segments"] is None:
        raise AttnsimError("variant 'duplex' needs -p segments=a,b,c (lengths adding up to the sequence)")
    return DuplexMask(p["segments"], causal)


def _segment_mask(p, causal):
    if p["levels"] is not None:
        if p["segments"] is not None:
            raise AttnsimError("give -p segments or -p levels, not both")
        return HeadMixMask([window_mask(p["window_size"], causal, chunk=n) for n in p["levels"]],
                           name="hier_" + "_".join(map(str, p["levels"])))
    if p["segments"] is None:
        raise AttnsimError("variant 'segment' needs -p segments=a,b,c (lengths adding up to the sequence) "
                           "or -p segments=L (equal segments)")
    if len(p["segments"]) == 1:  # equal segments of L tokens: FlashAttention's attention_chunk
        return window_mask(p["window_size"], causal, chunk=p["segments"][0])
    return segment_mask(p["segments"], p["window_size"], causal)


def _na_mask(p, causal):
    if p["token_shape"] is None:
        raise AttnsimError("neighborhood attention needs the token grid: --token-shape 256x256 (or -p token_shape=...)")
    return NAMask(p["token_shape"], p["kernel_size"], p["stride"], p["dilation"],
                  p["is_causal"] if p["is_causal"] is not None else causal,
                  p["token_order"], p["q_tile"], p["kv_tile"], p["iteration"])


def _na_params(with_stride: bool):
    out = [Param("token_shape", tuple, None, "token grid, row-major, last axis fastest (set by --token-shape)",
                 check=_ints("token_shape")),
           Param("kernel_size", tuple, (7,), "window per dimension (k or AxBxC)", check=_ints("kernel_size")),
           Param("dilation", tuple, (1,), "dilation per dimension", check=_ints("dilation")),
           Param("is_causal", tuple, None, "causal per dimension (true,false,false) [default: --causal]",
                 check=_bools),
           Param("token_order", str, "tiled", "tiled (NATTEN's token permutation: box tiles) or rowmajor",
                 check=_choice("token_order", ("tiled", "rowmajor"))),
           Param("q_tile", tuple, None, "query box shape (AxBxC), tiled order [default: from the kernel's tile]",
                 check=_ints("q_tile", allow_none=True)),
           Param("kv_tile", tuple, None, "key/value box shape (AxBxC), tiled order", check=_ints("kv_tile", allow_none=True)),
           Param("iteration", str, None, "box (NATTEN: a fixed box of kv tiles per query box; default for tiled) "
                 "or live (a block-sparse list of the live tiles; default for rowmajor)",
                 check=_choice("iteration", ("box", "live")))]
    if with_stride:
        out.insert(2, Param("stride", tuple, (1,), "stride per dimension (1: sliding window, = kernel_size: blocked)",
                            check=_ints("stride")))
    return tuple(out)


def _heads():
    return heads


def _need(p, name, variant):
    if p[name] is None:
        raise AttnsimError(f"variant {variant!r} needs -p {name}=N")
    return p


def _moh_defaults(p, w, name):
    h = w.heads_q
    shared = p["shared_heads"] if p["shared_heads"] is not None else h // 2
    active = p["active_heads"] if p["active_heads"] is not None else (h // 4 if name == "moh" else h // 2)
    return {**p, "shared_heads": shared, "active_heads": active}


_Q_PER_STEP = Param("q_per_step", int, 1, "decode: query tokens per sequence per step (speculative decoding, MTP)",
                    phases=("decode",))

VARIANTS = {
    "mha": Variant("mha", "multi-head attention: every query head has its own K/V head",
                   "Vaswani et al. 2017, 'Attention Is All You Need'", (_Q_PER_STEP,), heads_kv_rule="mha"),
    "gqa": Variant("gqa", "grouped-query attention: groups of query heads share a K/V head (--kv-heads)",
                   "Ainslie et al. 2023, 'GQA: Training Generalized Multi-Query Transformer Models'", (_Q_PER_STEP,),
                   heads_kv_rule="gqa"),
    "mqa": Variant("mqa", "multi-query attention: all query heads share one K/V head",
                   "Shazeer 2019, 'Fast Transformer Decoding: One Write-Head is All You Need'", (_Q_PER_STEP,),
                   heads_kv_rule="mqa"),
    "swa": Variant("swa", "sliding-window attention: query i sees keys i-left .. i+right (with --causal: right = 0)",
                   "Beltagy et al. 2020, 'Longformer'; FlashAttention's window_size=(left, right) convention",
                   (Param("window_size", list, (4096, 4096), "LEFT,RIGHT keys each side (-1 = unbounded), or W for W,W; "
                          "bottom-right aligned; --causal caps RIGHT at 0", check=_window_size),
                    Param("sink", int, 0, "sink tokens: keys 0..sink-1 every query also sees (FlashAttention's "
                          "sink_token_length)", check=_count("sink")),
                    Param("attention_chunk", int, 0, "a query sees only keys of its own chunk of this many tokens "
                          "(AND the window; FlashAttention's attention_chunk)", check=_count("attention_chunk")),
                    _Q_PER_STEP),
                   mask=lambda p, causal: window_mask(p["window_size"], causal, p["sink"], p["attention_chunk"])),
    "segment": Variant("segment", "block-diagonal attention: a token sees its own segment only (region, identity "
                       "or group attention; packed documents), optionally windowed and causal",
                       "Region / identity-masked / group attention (RAT, IM-MHA, MoCHA groups); document masks of "
                       "packed sequences",
                       (Param("segments", list, None, "segment lengths a,b,c adding up to the sequence; or one length "
                              "L for equal segments (the last one shorter)", check=_ints("segments")),
                        Param("levels", list, None, "hierarchical groups: equal segments of these lengths, one level "
                              "per equal group of heads (e.g. 256,1024,4096); instead of segments",
                              check=_ints("levels")),
                        Param("window_size", list, (-1, -1), "LEFT,RIGHT window inside the segment (-1 = unbounded)",
                              check=_window_size), _Q_PER_STEP),
                       mask=lambda p, causal: _segment_mask(p, causal)),
    "moba": Variant("moba", "mixture of block attention: each query block attends to the top-k key blocks a gate "
                    "picks (mean-pooled keys), its own block included when causal; the gate is priced",
                    "Lu et al. 2025, 'MoBA: Mixture of Block Attention for Long-Context LLMs'",
                    (Param("block_size", int, 512, "keys per block"),
                     Param("top_k", int, 3, "blocks each query block attends to (causal: its own + top_k - 1 earlier)"),
                     Param("density", float, None, "threshold selection: the expected fraction of blocks kept "
                           "(replaces top_k)", check=_fraction), _Q_PER_STEP),
                    mask=lambda p, causal: BlockSelectMask(p["block_size"], p["top_k"], causal, p["density"])),
    "vmoba": Variant("vmoba", "video mixture of block attention: MoBA over a 1D/2D/3D token grid whose blocks are "
                     "boxes (-p block=AxBxC) in box-major token order; the permutation is priced",
                     "Wu et al. 2025, 'VMoBA: Mixture-of-Block Attention for Video Diffusion Models'",
                     (Param("token_shape", tuple, None, "token grid (set by --token-shape)", check=_ints("token_shape")),
                      Param("block", tuple, None, "block box shape (AxBxC), one block = its product of tokens",
                            check=_ints("block")),
                      Param("top_k", int, 3, "blocks each query block attends to"),
                      Param("density", float, None, "threshold selection: expected fraction of blocks kept",
                            check=_fraction)),
                     mask=lambda p, causal: _vmoba(p, causal)),
    "moa": Variant("moa", "mixture of attention spans: a different sliding window per head (or per equal group of "
                   "heads), each span alpha + beta x seqlen (elastic with the length); --causal: windows to the left",
                   "Fu et al. 2024, 'MoA: Mixture of Sparse Attention for Automatic Large Language Model Compression'",
                   (Param("spans", list, (1024, 2048, 4096, 8192), "alpha per head group: keys each side (causal: to "
                          "the left); one per head or per equal group of heads", check=_ints("spans")),
                    Param("betas", list, None, "beta per head group (fraction of seqlen added to the span) "
                          "[default: 0]", check=_fractions("betas")), _Q_PER_STEP),
                   mask=lambda p, causal: _moa(p, causal)),
    "sparse": Variant("sparse", "unstructured sparsity (Sparsifiner, SPT sparse MHA): each query keeps a density of "
                      "its keys in a number of runs; an occupancy model gives the tiles (printed as an assumption)",
                      "Wei et al. 2023, 'Sparsifiner'; SPT sparse MHA; the occupancy model is attnsim's",
                      (Param("density", float, 0.1, "fraction of its keys each query keeps", check=_fraction),
                       Param("clusters", int, 1, "runs of contiguous keys per query (1: clustered; many: scattered)"),
                       *_selection("none"), _Q_PER_STEP),
                      mask=lambda p, causal: _occupancy(p, causal, "sparse")),
    "topk": Variant("topk", "top-k attention: each query keeps its k highest-scoring keys, found from the full "
                    "scores (select=scores by default): why unstructured sparsity rarely pays on tensor cores",
                    "top-k attention (e.g. Gupta et al. 2021, 'Memory-efficient Transformers via Top-k Attention')",
                    (Param("top_k", int, 64, "keys kept per query"),
                     _clusters("top_k, fully scattered"),
                     *_selection("scores"), _Q_PER_STEP),
                    mask=lambda p, causal: _occupancy(p, causal, "topk")),
    "dma": Variant("dma", "trainable dynamic mask attention: a learned, content-aware mask keeps top-k keys per query "
                   "without computing all scores (a predictor instead)",
                   "Shi et al. 2025, 'Trainable Dynamic Mask Sparse Attention'",
                   (Param("top_k", int, 2048, "keys kept per query"),
                    _clusters("top_k / 64, partly clustered"),
                    _selection("none")[1], _Q_PER_STEP),
                   mask=lambda p, causal: _occupancy({**p, "select": "none"}, causal, "dma")),
    "duplex": Variant("duplex", "duplex attention: two passes with complementary masks, within segments then across "
                      "them, outputs merged",
                      "MODA duplex attention (two complementary attention passes)",
                      (Param("segments", list, None, "segment lengths a,b,c adding up to the sequence",
                             check=_ints("segments")), _Q_PER_STEP),
                      mask=lambda p, causal: _duplex(p, causal)),
    "varlen": Variant("varlen", "variable-length batch: per-sequence lengths (--seqlens), packed (padding-free, "
                      "cu_seqlens) or padded to the longest, side by side",
                      "Zhai et al. 2023, 'ByteTransformer: A High-Performance Transformer Boosted for "
                      "Variable-Length Inputs'; FlashAttention's varlen API",
                      (Param("lengths", list, None, "per-sequence lengths a,b,c (decode: contexts), or uniform:LO:HI "
                             "sampled for --batch with seed 0 (set by --seqlens)", check=_lengths),
                       Param("layout", str, "packed", "packed (padding-free) or padded (every sequence to the longest)",
                             check=_choice("layout", ("packed", "padded"))), _Q_PER_STEP)),
    "na": Variant("na", "neighborhood attention: each token sees a k-window around it on a 1D/2D/3D token grid "
                  "(dilation, causal per dimension)",
                  "Hassani et al. 2023, 'Neighborhood Attention Transformer'; NATTEN's mask semantics",
                  _na_params(with_stride=False), mask=lambda p, causal: _na_mask({**p, "stride": (1,)}, causal)),
    "gna": Variant("gna", "generalized neighborhood attention: neighborhood attention with a stride "
                   "(1: sliding window, between: strided, = kernel_size: blocked)",
                   "Hassani et al. 2025, 'Generalized Neighborhood Attention: Multi-dimensional Sparse Attention "
                   "at the Speed of Light'; NATTEN", _na_params(with_stride=True), mask=_na_mask),
    **{name: Variant(name, desc, "Filipek 2025, 'Sparse Query Attention (SQA): A Computationally Efficient Attention "
                     "Mechanism with Query Heads Reduction' (arXiv 2510.01817)", params + (_Q_PER_STEP,),
                     heads_kv_rule="mha", kv_heads_hint=hint,
                     layout=(lambda q, kv: lambda p, w, dm, r: _heads().sqa({"query_heads": 0, "kv_heads": 0, **p,
                                                                            "preset_q": q, "preset_kv": kv}, w, dm, r))(q, kv))
       for name, desc, params, q, kv, hint in (
           ("sqa", "sparse query attention: fewer query heads (default H/2) and kv heads (H/4) of the baseline's head "
                   "dim; attention FLOPs scale with query_heads / heads (--heads: the baseline's H)",
            (Param("query_heads", int, 0, "query heads [default: --heads / 2]", check=_count("query_heads")),
             Param("kv_heads", int, 0, "kv heads, dividing query_heads [default: --heads / 4]",
                   check=_count("kv_heads"))), 2, 1, "set -p kv_heads for SQA's kv heads"),
           ("ssqa", "symmetric SQA: H/2 query heads and H/2 kv heads", (), 2, 2, "use --variant sqa -p kv_heads=N"),
           ("xsqa", "extreme SQA: H/4 query heads and H/4 kv heads", (), 1, 1, "use --variant sqa -p kv_heads=N"))},
    "mla": Variant("mla", "multi-head latent attention: K/V from a low-rank latent (kv_lora_rank) plus a shared RoPE "
                   "key; prefill/train up-project K/V, decode absorbs the up-projections and reads only the latent "
                   "cache (MQA over rank + rope dims); -p dims win over --head-dim",
                   "DeepSeek-AI 2024, 'DeepSeek-V2' (arXiv 2405.04434) section 2.1; X-EcoMLA upcycling = MLA at a "
                   "chosen kv_lora_rank",
                   (Param("kv_lora_rank", int, 512, "latent width d_c (the cache holds it per token)"),
                    Param("q_lora_rank", int, 1536, "query latent width d_c' (0: a plain query projection)",
                          check=_count("q_lora_rank")),
                    Param("qk_nope_head_dim", int, 128, "per-head q/k dims without RoPE"),
                    Param("qk_rope_head_dim", int, 64, "RoPE dims (one shared key per token)"),
                    Param("v_head_dim", int, 128, "per-head value dims"),
                    Param("absorb", str, "auto", "auto (decode absorbed, prefill/train up-projected), true, false",
                          check=lambda v: _choice("absorb", ("auto", "true", "false"))(
                              str(v).lower() if isinstance(v, bool) else v)), _Q_PER_STEP),
                   heads_kv_rule="mha", kv_heads_hint="MLA's K/V come from one latent per token (no --kv-heads)",
                   layout=lambda p, w, dm, r: _heads().mla(p, w, dm, r), head_dims_from_params=True),
    "kvcompress": Variant("kvcompress", "KV-head compression of a trained MHA: K/V reduced to --kv-heads heads "
                          "(a GQA core), optionally through low-rank factors (-p rank) with RoPE after them",
                          "Yu et al. 2024, 'Effectively Compress KV Heads for LLM'; Chen et al. 2024, 'Palu' "
                          "(low-rank, RoPE-aware)",
                          (Param("rank", int, 0, "rank of the K and V factors (0: full-rank W_K, W_V)",
                                 check=_count("rank")), _Q_PER_STEP),
                          heads_kv_rule="gqa", layout=lambda p, w, dm, r: _heads().kv_compress(p, w, dm, r)),
    **{name: Variant(name, desc, "Figliolia et al. 2025, 'Compressed Convolutional Attention: Efficient Attention in "
                     "a Compressed Latent Space' (arXiv 2510.04476); shapes from the ZAYA implementation",
                     (Param("compression", int, 2, "compression factor C: H/C query and H_kv/C kv heads in the "
                            "latent"),
                      Param("conv1", int, 2, "taps of the depthwise sequence convolution"),
                      Param("conv2", int, 2, "taps of the grouped per-head convolution"),
                      Param("rope_fraction", str, "half", "RoPE on half (ZAYA) or all of the latent head dims",
                            check=_choice("rope_fraction", ("half", "full"))), _Q_PER_STEP),
                     heads_kv_rule=rule, kv_heads_hint="use --variant ccgqa",
                     layout=lambda p, w, dm, r: _heads().cca(p, w, dm, r))
       for name, desc, rule in (
           ("cca", "compressed convolutional attention: q/k/v down-projected by C, convolutions in the latent, "
                   "attention among H/C heads, W_O back up", "mha"),
           ("ccgqa", "CCA with grouped kv heads (--kv-heads before compression)", "gqa"))},
    **{name: Variant(name, desc, paper,
                     (Param("shared_heads", int, shared, f"heads every token uses [default: {shared_doc}]",
                            check=_count("shared_heads")),
                      Param("active_heads", int, None, f"routed heads per token, top-k [default: {act_doc}]",
                            check=_count("active_heads")),
                      Param("impl", str, "masked", "masked (all heads computed, unchosen dropped) or ideal (each "
                            "head gathers its tokens); the other is reported as the alternative",
                            check=_choice("impl", ("masked", "ideal"))), _Q_PER_STEP),
                     heads_kv_rule="mha", kv_heads_hint="the routed heads are MHA heads (no --kv-heads)",
                     layout=(lambda dflt: lambda p, w, dm, r: _heads().moh(_moh_defaults(p, w, dflt), w, dm, r))(name))
       for name, desc, paper, shared, shared_doc, act_doc in (
           ("moh", "mixture-of-head attention: shared heads plus top-k routed heads per token, a router GEMM; masked "
                   "vs ideal implementation", "Jin et al. 2024, 'MoH: Multi-Head Attention as Mixture-of-Head "
                   "Attention' (arXiv 2410.11842)", None, "--heads / 2", "--heads / 4"),
           ("uoe", "selective MHA of Union-of-Experts: a gate picks the top half of the heads per token",
            "Yang et al. 2025, 'Union of Experts' (arXiv 2503.02495), selective MHA", 0, "0", "--heads / 2"))},
    "prune": Variant("prune", "head pruning: -p pruned_heads of the heads removed with their projections (GQA: "
                     "whole kv groups)", "Mugnaini et al. 2024, 'AMP: Attention Heads and MLP Pruning'; Michel "
                     "et al. 2019, 'Are Sixteen Heads Really Better than One?'",
                     (Param("pruned_heads", int, None, "query heads removed, required (a multiple of the GQA group)"),
                      _Q_PER_STEP), layout=lambda p, w, dm, r: _heads().prune(_need(p, "pruned_heads", "prune"), w, dm, r)),
    "shvit": Variant("shvit", "single-head attention on a fraction of the channels (--d-model), the rest untouched",
                     "Yun & Ro 2024, 'SHViT: Single-Head Vision Transformer with Memory Efficient Macro Design' (CVPR)",
                     (Param("partial_ratio", float, 1 / 4.67, "fraction of the d_model channels that attend",
                            check=_fraction_named("partial_ratio")),
                      Param("qk_dim", int, 16, "query/key dim of the single head")),
                     heads_kv_rule="mha", kv_heads_hint="SHViT has one head", rope=False, d_model_in_core=True,
                     layout=lambda p, w, dm, r: _heads().shvit(p, w, dm, r)),
    "rcmha": Variant("rcmha", "relative convolutional MHA: depthwise convolution on Q, K, V and a Transformer-XL "
                     "relative-position score term (a second score matmul against relative embeddings)",
                     "Sun et al. 2023, 'RCMHA: Relative Convolutional Multi-Head Attention for Natural Language "
                     "Modelling' (arXiv 2308.03429); Dai et al. 2019, 'Transformer-XL' section 3.3",
                     (Param("kernel_size", int, 3, "taps of the depthwise convolution on Q, K, V"), _Q_PER_STEP),
                     rope=False, layout=lambda p, w, dm, r: _heads().rcmha(p, w, dm, r)),
    "complexformer": Variant("complexformer", "complex multi-head attention: per-head Euler transform of q/k to "
                             "polar form and an adaptive per-pair rotation; a complex score (two real score matmuls) "
                             "with trigonometric work per score",
                             "Shao et al. 2025, 'ComplexFormer' (arXiv 2505.10222, withdrawn; priced from its abstract)",
                             (Param("score_sfu_ops", float, 3.0, "SFU ops per score (angle, cos, sin)",
                                    check=_nonneg("score_sfu_ops")),
                              Param("score_fp32_ops", float, 8.0, "FP32 instructions per score (adaptation, combine)",
                                    check=_nonneg("score_fp32_ops")),
                              Param("euler_fp32_ops", float, 6.0, "FP32 instructions per complex element of the "
                                    "Euler transform beyond its 2 FMAs", check=_nonneg("euler_fp32_ops")), _Q_PER_STEP),
                             rope=False, layout=lambda p, w, dm, r: _heads().complexformer(p, w, dm, r)),
    "gaam": Variant("gaam", "Gaussian adaptive attention on the scores: row mean and variance (a statistics pass), "
                    "a learnable Gaussian mixture per score instead of the softmax's exp argument",
                    "Ioannides et al. 2024, 'Gaussian Adaptive Attention is All You Need' (arXiv 2401.11143)",
                    (Param("gaussians", int, 1, "Gaussians per head (learnable mean offset and scale each)"),
                     _Q_PER_STEP), layout=lambda p, w, dm, r: _heads().gaam(p, w, dm, r)),
    "eager": Variant("eager", "eager attention: scores materialized (S and P in HBM, a separate softmax kernel), "
                     "what methods that read attention maps need; contrasted with the fused kernel",
                     "'standard attention' of Dao et al. 2022 (FlashAttention) section 2.2; attention-map methods "
                     "(head importance, attention sinks, vision-aware head divergence)", (_Q_PER_STEP,),
                     kernel="eager"),
}


def get_variant(name: str) -> Variant:
    v = VARIANTS.get(str(name).lower())
    if v is None:
        raise unknown("variant", name, VARIANTS)
    return v
