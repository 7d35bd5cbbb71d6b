"""Head layouts and the attention layer around the core (`--scope layer`), as operations (`ops`).

A variant's *layout* turns the model's shape (d_model, heads, head dims: the user's `Workload`)
into
* the attention **core** the kernels run (a `Workload`: SQA's fewer query heads, MLA's latent
  MQA in absorbed decode, CCA's heads in the compressed latent, a relative-position or complex
  score's second QK^T-shaped matmul, a Gaussian score's own work), with its mask;
* the **ops around it**, in order: `Gemm`s (projections, latent down/up, absorbed projections,
  routers, grouped convolutions) and `Pointwise` ops (RoPE, norms, depthwise convolutions, gates,
  copies into the cache) — listed by `layer_ops` around the core for prefill, decode and train;
* the **KV cache** the layer keeps (the latent of MLA, CCA's compressed K/V plus its conv state);
* the resolved shapes, echoed in the JSON (`layout` block).

Train: every GEMM adds its input-gradient GEMM (dX = dY W^T) and, for a weight, its
weight-gradient GEMM (dW = X^T dY): 3x its forward FLOPs. A pointwise op's backward reads the
output gradient and what it saved and writes the input gradient, at twice its FP32 work and once
its SFU work. Activations saved for the backward: each op's input (RoPE saves nothing: a rotation
needs only the positions), deduplicated by tensor name, plus the core's Q, K, V, O and LSE.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import AttnsimError
from .ops import Gemm, Pointwise, Work
from .workload import Workload


@dataclass
class Layout:
    core: Workload
    pre: list  # ops before the core
    post: list  # ops after the core
    kv_cache_bytes: int
    d_model: int
    shapes: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    mask: object = None  # the core's mask when the layout sets it (MoH's gathered queries)
    cache_is_core_kv: bool = True  # the core reads the cache itself (False: MLA's up-projected K/V)
    alternative: tuple | None = None  # (label, Layout): the other implementation (MoH ideal/masked)
    useful_from_alternative: bool = False  # this implementation computes work it drops: the useful work and the
    # bound are the alternative's (MoH masked: only the chosen heads' outputs are used)


# -- building blocks ----------------------------------------------------------------------------
def tokens(w: Workload) -> int:
    """Query tokens the layer processes: every sequence's (padded when the varlen layout pads)."""
    return w.aggregate().seqlen_q


def rope(name: str, n_tokens: int, rotated: int, s: int) -> Pointwise:
    """RoPE (Su et al. 2021, 'RoFormer', eq. 34): x'_2i = x_2i cos - x_2i+1 sin, x'_2i+1 = x_2i sin +
    x_2i+1 cos: a multiply and an FMA per rotated element; reads the elements and a cos/sin table
    (`rotated` channels per token: the rotated dims of every head), writes the elements."""
    e = n_tokens * rotated
    return Pointwise(name, read=e * s + n_tokens * rotated * s, write=e * s, fp32_ops=2.0 * e, saved=0.0)


def rmsnorm(name: str, n_tokens: int, width: int, s: int, inp: str) -> Pointwise:
    """RMSNorm (Zhang & Sennrich 2019): a square-accumulate and a scale-multiply per element, one
    rsqrt per row; `width` learned scales."""
    return Pointwise(name, read=n_tokens * width * s, write=n_tokens * width * s, fp32_ops=3.0 * n_tokens * width,
                     sfu_ops=float(n_tokens), params=width, input=inp)


def depthwise_conv(name: str, n_tokens: int, channels: int, kernel: int, s: int, inp: str) -> Pointwise:
    """A depthwise convolution over the sequence: `kernel` FMAs per output element, `kernel` weights
    per channel; reads its input (neighbouring taps hit the cache) and writes its output."""
    e = n_tokens * channels
    return Pointwise(name, read=e * s, write=e * s, fp32_ops=float(kernel) * e, params=kernel * channels, input=inp)


def cache_append(w: Workload, n_tokens: int, per_token: int) -> Pointwise:
    """Decode: the step's new K/V (or latent) rows written into the cache (`per_token` elements)."""
    b = n_tokens * per_token
    return Pointwise("cache_append", read=b * w.dtype_bytes, write=b * w.kv_dtype_bytes, saved=0.0)


def standard(w: Workload, d_model: int, rope_dim: int) -> Layout:
    """MHA / GQA / MQA (and every mask variant): one fused QKV projection, RoPE on `rope_dim`
    channels of every query and key head, the core, the output projection."""
    t, s = tokens(w), w.dtype_bytes
    d, dv = w.head_dim_qk, w.head_dim_v
    pre = [Gemm("qkv_proj", t, w.heads_q * d + w.heads_kv * (d + dv), d_model, input="x")]
    if rope_dim:
        pre.append(rope("rope", t, (w.heads_q + w.heads_kv) * rope_dim, s))
    if w.phase == "decode":
        pre.append(cache_append(w, t, w.heads_kv * (d + dv)))
    return Layout(core=w, pre=pre, post=[Gemm("o_proj", t, d_model, w.heads_q * dv, input="attn_out")],
                  kv_cache_bytes=w.kv_cache_bytes(), d_model=d_model,
                  shapes={"d_model": d_model, "heads_q": w.heads_q, "heads_kv": w.heads_kv, "head_dim_qk": d,
                          "head_dim_v": dv, "rope_dim": rope_dim})


def check_rope(rope_dim: int, head_dim: int):
    if rope_dim < 0 or rope_dim > head_dim or rope_dim % 2:
        raise AttnsimError(f"--rope-dim {rope_dim}: expected an even number of channels in 0..{head_dim} "
                           f"(the head dim; 0: no RoPE)")


def layer_ops(layout: Layout, core: list) -> list:
    """(op, backward) pairs of the layer in kernel order: the ops before the core, the `core` pairs,
    the ops after it; train then lists the backward of every op around the core in reverse order
    (the time is their sum either way)."""
    train = layout.core.phase == "train"
    return ([(op, False) for op in layout.pre] + core + [(op, False) for op in layout.post]
            + [(op, True) for op in (reversed(layout.pre + layout.post) if train else ())])


def layer_accounting(layout: Layout):
    """(useful Work, saved activation bytes, weight bytes) of the ops around the core: each Gemm's
    FLOPs and compulsory bytes (train: dX and, for a weight, dW), each Pointwise op's (train: its
    backward); train saves each op's input once per tensor name (RoPE nothing); weights are the
    learned matrices and a Pointwise op's parameters."""
    w = layout.core
    s = w.dtype_bytes
    train = w.phase == "train"
    work = Work()
    for op, backward in layer_ops(layout, []):
        work = work + (op.work(s, backward) if isinstance(op, Gemm) else op.work(backward))
    work.tensor = [(f, w.dtype, acc) for f, _, acc in work.tensor]
    saved = {}
    for op in layout.pre + layout.post:
        if isinstance(op, Gemm):
            saved.setdefault(op.input or op.name, op.m * op.k * op.batch * s)
        else:
            nbytes = op.read if op.saved is None else op.saved
            if nbytes:
                saved.setdefault(op.input or op.name, nbytes)
    weights = sum(op.k * op.n * op.batch * s for op in layout.pre + layout.post if isinstance(op, Gemm) and op.weight)
    weights += sum(op.params * s for op in layout.pre + layout.post if isinstance(op, Pointwise))
    return work, (int(sum(saved.values())) if train else 0), int(weights)


def core_saved_bytes(w: Workload) -> int:
    """What a FlashAttention backward keeps from the forward: Q, K, V (every key), O and the LSE."""
    a = w.aggregate()
    s = w.dtype_bytes
    rows = a.heads_q * a.seqlen_q
    return int(rows * (a.head_dim_qk + a.head_dim_v) * s + a.heads_kv * a.seqlen_kv * w.stream_dims * s + rows * 4)

