"""The layouts of the head-layout, latent and projected variants (issue 4).

Each function takes the variant's resolved parameters `p`, the model's shape as a `Workload` `w`
(heads = the model's H, head dims, tokens, phase), d_model and the RoPE width, and returns a
`Layout`: the core the kernels run, the ops around it and the KV cache. T below is the tokens the
layer processes (`layouts.tokens`), s the dtype's bytes. Formulas are written from each paper's
definition, cited in each docstring; where a paper leaves a detail open the choice is stated.
"""
from __future__ import annotations

from dataclasses import replace

from .errors import AttnsimError
from .layouts import Layout, cache_append, depthwise_conv, rmsnorm, rope, standard, tokens
from .masks import SpreadCausalMask
from .ops import Gemm, Pointwise
from .workload import Workload


def _divides(what: str, a: int, b: int):
    if a < 1 or b % a:
        raise AttnsimError(f"{what}={a} must be a positive divisor of {b}")


# -- SQA ------------------------------------------------------------------------------------------
def sqa(p, w: Workload, d_model: int, rope_dim: int) -> Layout:
    """Sparse Query Attention (Filipek 2025, arXiv 2510.01817; variants as in the author's RxNN
    docs/research/sparse_query_attention.md): H_q < H query heads of the baseline's head dim, H_kv
    kv heads (H_kv divides H_q, shared GQA-style). Attention FLOPs 4 * B * H_q * L^2 * d: H_q/H of
    MHA's. W_Q: d_model -> H_q d, W_K, W_V: d_model -> H_kv d, W_O: H_q d -> d_model.
    Presets: sqa H_q = H/2, H_kv = H/4; ssqa (symmetric) H_q = H_kv = H/2; xsqa (extreme)
    H_q = H_kv = H/4."""
    for given, quarters in ((p["query_heads"], p["preset_q"]), (p["kv_heads"], p["preset_kv"])):
        if not given and (w.heads_q * quarters) % 4:
            raise AttnsimError(f"--heads {w.heads_q}: SQA's preset takes {quarters}/4 of the heads; give --heads "
                               f"divisible by {4 // quarters if quarters in (1, 2) else 4} or -p query_heads/kv_heads")
    hq = p["query_heads"] or w.heads_q * p["preset_q"] // 4
    hkv = p["kv_heads"] or w.heads_q * p["preset_kv"] // 4
    if hq == w.heads_q and not p["query_heads"]:
        raise AttnsimError(f"--heads {w.heads_q}: the preset leaves every query head (no reduction); give more heads")
    if hq > w.heads_q:
        raise AttnsimError(f"-p query_heads={hq} exceeds the model's {w.heads_q} heads (--heads)")
    _divides("kv heads", hkv, hq)
    lay = standard(replace(w, heads_q=hq, heads_kv=hkv), d_model, rope_dim)
    lay.shapes.update(baseline_heads=w.heads_q, query_heads=hq, kv_heads=hkv)
    return lay


# -- MLA ------------------------------------------------------------------------------------------
def mla(p, w: Workload, d_model: int, rope_dim: int) -> Layout:
    """Multi-head Latent Attention (DeepSeek-AI 2024, 'DeepSeek-V2', arXiv 2405.04434, section 2.1):

    c_KV = x W^DKV (d_c = kv_lora_rank), k_R = RoPE(x W^KR) (d_R = qk_rope_head_dim, one per token,
    shared by the heads); c_Q = x W^DQ (d_c' = q_lora_rank; 0: q = x W^Q), q = c_Q W^UQ (H heads of
    nope + rope dims); k_nope, v = c_KV W^UK, c_KV W^UV (H heads of nope, v dims); o = W^O [o_h].
    The KV cache holds c_KV and k_R: (d_c + d_R) elements per token per layer, for all heads.

    * up-projected form (prefill and train; absorb=false): K = [k_nope, k_R broadcast], V: an MHA
      core of H heads with head dims (nope + rope, v). In decode it up-projects every cached token
      each step.
    * absorbed form (decode; absorb=true): q_nope W^UK_h^T goes into the query (q_lat, d_c per
      head) and W^UV_h into the output, so the core is MQA over the latent: one kv head with
      K = [c_KV, k_R] (d_c + d_R) and V = c_KV (d_c) read from the same rows (v_in_k). It reads
      the cache once for all heads: its bytes do not depend on H.
    X-EcoMLA-style upcycling of a trained MHA is this layout at a chosen kv_lora_rank."""
    h = w.heads_q
    rank, qrank = p["kv_lora_rank"], p["q_lora_rank"]
    nope, rdim, vdim = p["qk_nope_head_dim"], p["qk_rope_head_dim"], p["v_head_dim"]
    absorb = p["absorb"] if p["absorb"] != "auto" else ("true" if w.phase == "decode" else "false")
    if absorb == "true" and w.phase == "train":
        raise AttnsimError("-p absorb=true is an inference form (decode, prefill); train runs absorb=false")
    t, s = tokens(w), w.dtype_bytes
    pre = []
    if qrank:
        pre += [Gemm("q_down", t, qrank, d_model, input="x"), rmsnorm("q_norm", t, qrank, s, "c_q"),
                Gemm("q_up", t, h * (nope + rdim), qrank, input="c_q_normed")]
    else:
        pre.append(Gemm("q_proj", t, h * (nope + rdim), d_model, input="x"))
    pre += [Gemm("kv_down", t, rank + rdim, d_model, input="x"), rmsnorm("kv_norm", t, rank, s, "c_kv"),
            rope("rope", t, (h + 1) * rdim, s)]
    cache_tokens = sum(k * m for _, k, m in w.real_segments())  # every sequence's context
    cache = cache_tokens * (rank + rdim) * w.kv_dtype_bytes
    if w.phase == "decode":
        pre.append(cache_append(w, t, rank + rdim))
    post = []
    if absorb == "true":
        core = replace(w, heads_kv=1, head_dim_qk=rank + rdim, head_dim_v=rank, v_in_k=True)
        pre.append(Gemm("q_absorb", t, rank, nope, batch=h, input="q_nope"))  # q_nope W^UK_h^T per head
        post.append(Gemm("o_absorb", t, vdim, rank, batch=h, input="o_latent"))  # o_lat W^UV_h per head
        cache_is_core = True
    else:
        core = replace(w, heads_kv=h, head_dim_qk=nope + rdim, head_dim_v=vdim)
        # K/V up-projected from the latent: the new tokens (prefill, train) or the whole cache (decode)
        kv_rows = cache_tokens if w.phase == "decode" else t
        pre.append(Gemm("kv_up", kv_rows, h * (nope + vdim), rank, input="c_kv_normed"))
        pre.append(Pointwise("k_concat", read=kv_rows * (h * nope + rdim) * s, write=kv_rows * h * (nope + rdim) * s,
                             saved=0.0))  # K = [k_nope, k_R broadcast to every head], as FlashAttention takes it
        cache_is_core = False
    post.append(Gemm("o_proj", t, d_model, h * vdim, input="attn_out"))
    notes = [f"MLA {'absorbed: MQA over the latent cache' if absorb == 'true' else 'up-projected K/V'}; "
             f"KV cache {rank + rdim} elements per token per layer, shared by the {h} heads"]
    if w.phase == "decode" and absorb == "false":
        notes.append("absorb=false in decode up-projects every cached token each step (kv_up over the context)")
    return Layout(core=core, pre=pre, post=post, kv_cache_bytes=cache, d_model=d_model,
                  cache_is_core_kv=cache_is_core, notes=notes,
                  shapes={"d_model": d_model, "heads": h, "kv_lora_rank": rank, "q_lora_rank": qrank,
                          "qk_nope_head_dim": nope, "qk_rope_head_dim": rdim, "v_head_dim": vdim, "absorb": absorb,
                          "core_head_dim_qk": core.head_dim_qk, "core_head_dim_v": core.head_dim_v,
                          "core_heads_kv": core.heads_kv, "kv_cache_elements_per_token": rank + rdim})


# -- KV-head compression --------------------------------------------------------------------------
def kv_compress(p, w: Workload, d_model: int, rope_dim: int) -> Layout:
    """KV-head compression of a trained MHA (e.g. Yu et al. 2024, 'Effectively Compress KV Heads
    for LLM'; RoPE-aware low-rank: Chen et al. 2024, 'Palu'): H query heads keep their W^Q, K and V
    shrink to `--kv-heads` heads (a GQA core), optionally through low-rank factors W_K ~ A_K B_K,
    W_V ~ A_V B_V of rank r: x A (d_model -> r each) then B (r -> H_kv d), RoPE after the
    up-projection. The cache holds the H_kv heads' K and V."""
    d, dv = w.head_dim_qk, w.head_dim_v
    if w.heads_kv == w.heads_q:
        raise AttnsimError("variant 'kvcompress' needs --kv-heads below --heads (the compressed kv heads)")
    r = p["rank"]
    full = min(d_model, w.heads_kv * max(d, dv))
    if r and r >= full:
        raise AttnsimError(f"-p rank={r} is not below the full rank {full} of W_K, W_V (min of d_model {d_model} and "
                           f"kv heads x head dim); allowed: 1..{full - 1}, or 0 for no factors")
    if not r:
        lay = standard(w, d_model, rope_dim)
    else:
        t, s = tokens(w), w.dtype_bytes
        pre = [Gemm("q_proj", t, w.heads_q * d, d_model, input="x"),
               Gemm("kv_down", t, 2 * r, d_model, input="x"),
               Gemm("kv_up", t, w.heads_kv * (d + dv), r, batch=1, input="kv_latent")]
        if rope_dim:
            pre.append(rope("rope", t, (w.heads_q + w.heads_kv) * rope_dim, s))
        if w.phase == "decode":
            pre.append(cache_append(w, t, w.heads_kv * (d + dv)))
        lay = Layout(core=w, pre=pre, post=[Gemm("o_proj", t, d_model, w.heads_q * dv, input="attn_out")],
                     kv_cache_bytes=w.kv_cache_bytes(), d_model=d_model,
                     shapes={"d_model": d_model, "heads_q": w.heads_q, "heads_kv": w.heads_kv, "rope_dim": rope_dim})
    lay.shapes.update(rank=r)
    return lay


# -- CCA / CCGQA ----------------------------------------------------------------------------------
def cca(p, w: Workload, d_model: int, rope_dim: int) -> Layout:
    """Compressed Convolutional (Grouped-Query) Attention (Figliolia et al. 2025, arXiv 2510.04476;
    shapes as in the ZAYA implementation, transformers models/zaya): q, k, v are down-projected
    by the compression factor C into a latent of H/C query heads and H_kv/C kv heads of the same
    head dim (cca: H_kv = H), attention runs in that latent, and W_O maps H/C heads back to d_model.
    Around the core:
    * conv1: a causal depthwise convolution over the sequence (kernel conv1, default 2) on the
      q and k latent channels;
    * conv2: a causal grouped convolution per head (d -> d channels x conv2 taps, default 2): a
      batched GEMM [T, d * conv2] x [d * conv2, d] per q and k head;
    * the q-k mean residual ((q + k)/2, and its group mean for k) added after the convolutions,
      the L2 normalization of q and k with a learned temperature, RoPE on half the head dims;
    * the value shift (half of V from the previous token) costs no extra FLOPs (same projection width).
    The cache: K, V of the latent heads per token, plus per sequence the convolution state
    ((H_q + H_kv)/C heads x d x (conv1 + conv2 - 2) steps) and the delayed half of V."""
    c = p["compression"]
    _divides("-p compression", c, w.heads_q)
    _divides("-p compression", c, w.heads_kv)
    hq, hkv = w.heads_q // c, w.heads_kv // c
    d, dv = w.head_dim_qk, w.head_dim_v
    core = replace(w, heads_q=hq, heads_kv=hkv)
    t, s = tokens(w), w.dtype_bytes
    ch = (hq + hkv) * d  # q and k latent channels
    k1, k2 = p["conv1"], p["conv2"]
    rot = rope_dim // 2 if p["rope_fraction"] == "half" else rope_dim
    rot -= rot % 2
    pre = [Gemm("qkv_down", t, hq * d + hkv * (d + dv), d_model, input="x"),
           depthwise_conv("conv1", t, ch, k1, s, "qk_latent"),
           Gemm("conv2", t, d, d * k2, batch=hq + hkv, input="qk_conv1"),
           Pointwise("qk_mean", read=2 * t * ch * s, write=t * ch * s, fp32_ops=3.0 * t * ch, input="qk_latent"),
           Pointwise("qk_norm", read=t * ch * s, write=t * ch * s, fp32_ops=4.0 * t * ch, sfu_ops=float(t * (hq + hkv)),
                     params=hkv, input="qk_conv2")]
    if rot:
        pre.append(rope("rope", t, (hq + hkv) * rot, s))
    if w.phase == "decode":
        pre.append(cache_append(w, t, hkv * (d + dv)))
    state = w.batch * ((hq + hkv) * d * (k1 + k2 - 2) + hkv * dv // 2) * s
    notes = [f"CCA latent: {hq} query / {hkv} kv heads of dim {d} (compression {c}); conv state "
             f"{state} B per layer counted in the KV cache"]
    return Layout(core=core, pre=pre, post=[Gemm("o_proj", t, d_model, hq * dv, input="attn_out")],
                  kv_cache_bytes=core.kv_cache_bytes() + state, d_model=d_model, notes=notes,
                  shapes={"d_model": d_model, "compression": c, "latent_heads_q": hq, "latent_heads_kv": hkv,
                          "head_dim": d, "conv1": k1, "conv2": k2, "rope_dim": rot, "conv_state_bytes": state})


def conv_ops(lay: Layout) -> list:
    """The ops CCA adds to a GQA layout (for the invariant ccgqa(C=1) = gqa + its convolution)."""
    return [op for op in lay.pre if op.name in ("conv1", "conv2", "qk_mean", "qk_norm")]


# -- MoH / UoE ------------------------------------------------------------------------------------
def moh(p, w: Workload, d_model: int, rope_dim: int) -> Layout:
    """Mixture-of-Head attention (Jin et al. 2024, arXiv 2410.11842; MoH-ViT attention_native.py):
    `shared_heads` heads always active, each token routes to top-k (`active_heads`) of the other
    H - shared heads through a router W_r: d_model -> H - shared (softmax, top-k); the heads'
    outputs are gate-weighted before W_O. UoE's selective MHA (Yang et al. 2025, arXiv 2503.02495)
    is the same with no shared heads: a gate d_model -> H, top H/2 heads per token.

    Two implementations, both priced (the other is the JSON's `alternative`):
    * masked (the reference code): every head computed for every token, outputs of unchosen heads
      dropped: MHA's core and projections plus the router and a gate multiply;
    * ideal (UoE's gather): head h processes only its tokens. Routing is taken as uniform, so each
      head gets a = shared + active of H heads' share of the rows, T a / H rows; queries are
      gathered (q_proj over gathered rows), K and V are projected for every token (any token may
      be a key), outputs are projected per head and scatter-added. Causal: a gathered row keeps
      its position (`SpreadCausalMask`). Decode: the a active heads of each token."""
    h = w.heads_q
    shared, act = p["shared_heads"], p["active_heads"]
    if shared + act > h or act < 0 or shared < 0 or (shared + act) < 1:
        raise AttnsimError(f"-p shared_heads={shared} plus -p active_heads={act} must be 1..{h} (--heads)")
    if w.heads_kv != h:
        raise AttnsimError("variant 'moh' routes the heads of an MHA model: --kv-heads must equal --heads")
    if w.seqlens is not None:
        raise AttnsimError("variant 'moh' takes one sequence length (no --seqlens)")
    a = shared + act
    t, s = tokens(w), w.dtype_bytes
    d, dv = w.head_dim_qk, w.head_dim_v
    routed = h - shared
    router = [Gemm("router", t, routed, d_model, input="x"),
              Pointwise("router_topk", read=t * routed * 4, write=t * act * 8, fp32_ops=4.0 * t * routed,
                        sfu_ops=float(t * routed), input="router_logits")] if routed and act else []
    masked = standard(w, d_model, rope_dim)
    masked.pre = router + masked.pre
    masked.post = [Pointwise("gate", read=t * h * dv * s + t * h * 4, write=t * h * dv * s, fp32_ops=float(t * h * dv),
                             input="attn_out")] + masked.post
    if w.phase == "decode":
        core = replace(w, heads_q=a, heads_kv=a)
        rows, mask = t, None
    else:
        rows = -(-w.seqlen_q * a // h)
        core = replace(w, seqlen_q=rows)
        mask = SpreadCausalMask(w.seqlen_q) if w.causal else None
        if w.causal:
            core = replace(core, causal=False)
    g = rows * w.batch if w.phase != "decode" else t  # gathered rows per head (decode: the step's tokens)
    n_heads = h if w.phase != "decode" else a
    pre = router + [Gemm("q_proj", g, d, d_model, batch=n_heads, input="x_gathered"),
                    Gemm("kv_proj", t, h * (d + dv), d_model, input="x")]
    if rope_dim:
        pre += [rope("rope_q", g * n_heads, rope_dim, s), rope("rope_k", t, h * rope_dim, s)]
    if w.phase == "decode":
        pre.append(cache_append(w, t, h * (d + dv)))
    post = [Gemm("o_proj", g, d_model, dv, batch=n_heads, input="attn_out_gathered"),
            Pointwise("scatter_add", read=g * n_heads * d_model * s + t * a * 4, write=t * d_model * s,
                      fp32_ops=float(g * n_heads * d_model), input="o_heads")]
    ideal = Layout(core=core, pre=pre, post=post, kv_cache_bytes=w.kv_cache_bytes(), d_model=d_model, mask=mask,
                   shapes={"d_model": d_model, "heads": h, "shared_heads": shared, "active_heads": act,
                           "heads_per_token": a, "rows_per_head": rows if w.phase != "decode" else t})
    masked.shapes.update(ideal.shapes)
    note = (f"each token uses {a} of {h} heads ({shared} shared + top-{act}); routing taken as uniform")
    masked.notes.append(note)
    ideal.notes.append(note)
    if p["impl"] == "ideal":
        ideal.alternative = ("masked", masked)
        return ideal
    masked.alternative = ("ideal", ideal)
    masked.useful_from_alternative = True
    return masked


# -- head pruning, SHViT --------------------------------------------------------------------------
def prune(p, w: Workload, d_model: int, rope_dim: int) -> Layout:
    """Attention-head pruning (e.g. AMP, Mugnaini et al. 2024; Michel et al. 2019): `pruned_heads` of
    the H query heads removed with their Q/K/V/O slices. Under GQA whole groups go: the pruned
    count must be a multiple of the group (H / H_kv), and H_kv shrinks by pruned / group."""
    n = p["pruned_heads"]
    g = w.group
    if n >= w.heads_q:
        raise AttnsimError(f"-p pruned_heads={n} must leave at least one of the {w.heads_q} heads")
    if n % g:
        raise AttnsimError(f"-p pruned_heads={n} must be a multiple of the GQA group {g} (whole kv groups are pruned)")
    lay = standard(replace(w, heads_q=w.heads_q - n, heads_kv=w.heads_kv - n // g), d_model, rope_dim)
    lay.shapes.update(pruned_heads=n, baseline_heads=w.heads_q)
    return lay


def shvit(p, w: Workload, d_model: int, rope_dim: int) -> Layout:
    """Single-Head Vision Transformer attention (Yun & Ro 2024, 'SHViT', CVPR; model/shvit.py): one
    head on pdim = round(partial_ratio x C) of the C = d_model channels (partial_ratio 1/4.67),
    query/key dim qk_dim (16), value dim pdim; a GroupNorm on the pdim channels, the qkv 1x1
    projection pdim -> 2 qk_dim + pdim, the other C - pdim channels untouched; then ReLU and a
    C -> C projection over the concatenation. No RoPE (a vision block)."""
    pdim = max(1, round(d_model * p["partial_ratio"]))
    qk = p["qk_dim"]
    t, s = tokens(w), w.dtype_bytes
    core = replace(w, heads_q=1, heads_kv=1, head_dim_qk=qk, head_dim_v=pdim)
    pre = [Pointwise("group_norm", read=t * pdim * s, write=t * pdim * s, fp32_ops=4.0 * t * pdim, params=2 * pdim,
                     input="x_partial"),
           Gemm("qkv_proj", t, 2 * qk + pdim, pdim, input="x_partial_normed")]
    if w.phase == "decode":
        pre.append(cache_append(w, t, qk + pdim))
    post = [Pointwise("concat_relu", read=t * d_model * s, write=t * d_model * s, fp32_ops=float(t * d_model),
                      input="attn_concat"),
            Gemm("proj", t, d_model, d_model, input="attn_concat_relu")]
    return Layout(core=core, pre=pre, post=post, kv_cache_bytes=core.kv_cache_bytes(), d_model=d_model,
                  shapes={"d_model": d_model, "partial_dim": pdim, "qk_dim": qk, "heads": 1})


# -- score-function variants ----------------------------------------------------------------------
def rcmha(p, w: Workload, d_model: int, rope_dim: int) -> Layout:
    """Relative Convolutional MHA (Sun et al. 2023, arXiv 2308.03429): a depthwise convolution over
    the sequence on each of Q, K and V (kernel `kernel_size`; the paper's value was not found:
    default 3, Primer's MDHA), and Transformer-XL relative attention (Dai et al. 2019, section 3.3):
    scores (q + u) k^T + (q + v) R_{i-j}^T with R = sinusoids(positions) W_R. The relative term
    is a second QK^T-shaped matmul per score against R (qk_matmuls = 2; its operand is as wide as
    K) plus the relative shift (an index, free); u and v are two bias adds on q. R W_R is a GEMM
    over the key positions per step in train; in inference it is input-independent and precomputed.
    The cache holds K and V only. No RoPE (relative embeddings instead)."""
    t, s = tokens(w), w.dtype_bytes
    d, dv = w.head_dim_qk, w.head_dim_v
    core = replace(w, qk_matmuls=2, extra_k="per_layer")
    ch = w.heads_q * d + w.heads_kv * (d + dv)
    pre = [Gemm("qkv_proj", t, ch, d_model, input="x"),
           depthwise_conv("qkv_dwconv", t, ch, p["kernel_size"], s, "qkv"),
           Pointwise("uv_bias", read=t * w.heads_q * d * s, write=2 * t * w.heads_q * d * s,
                     fp32_ops=2.0 * t * w.heads_q * d, params=2 * w.heads_q * d, input="q_conv")]
    if w.phase == "train":
        pre.append(Gemm("rel_proj", w.seqlen_kv, w.heads_q * d, d_model, input="sinusoids"))
    if w.phase == "decode":
        pre.append(cache_append(w, t, w.heads_kv * (d + dv)))
    return Layout(core=core, pre=pre, post=[Gemm("o_proj", t, d_model, w.heads_q * dv, input="attn_out")],
                  kv_cache_bytes=w.kv_cache_bytes(), d_model=d_model,
                  notes=["RCMHA: the relative term Q R^T is priced as a second QK^T-shaped matmul per score"],
                  shapes={"d_model": d_model, "kernel_size": p["kernel_size"], "qk_matmuls": 2})


def complexformer(p, w: Workload, d_model: int, rope_dim: int) -> Layout:
    """ComplexFormer's complex multi-head attention (Shao et al. 2025, arXiv 2505.10222; the text was
    withdrawn, so this prices the form its abstract states, parameters exposed): each head's q and
    k become d/2 complex numbers in polar form (the Euler transform: a magnitude, 2 FMAs + a sqrt,
    and a phase, an atan2 taken as 1 SFU op + `euler_fp32_ops` FP32 per complex element); the
    score is Re(e^{i phi_mn} sum_j q_j conj(k_j)) with a per-head, per-pair adaptive rotation
    phi_mn = Adapt(AS_mn) + Delta(P_mn). The complex dot product is two real QK^T-shaped matmuls
    (its real and imaginary parts: qk_matmuls = 2); per score the angle AS_mn (atan2), cos and
    sin of phi are `score_sfu_ops` (3) SFU ops and the adaptation and the combine `score_fp32_ops`
    (8) FP32 instructions. No RoPE (the rotation carries the positions)."""
    t, s = tokens(w), w.dtype_bytes
    d = w.head_dim_qk
    core = replace(w, qk_matmuls=2, extra_k="same_k", score_sfu_ops=float(p["score_sfu_ops"]),
                   score_fp32_ops=float(p["score_fp32_ops"]))
    lay = standard(core, d_model, 0)
    cplx = t * (w.heads_q + w.heads_kv) * d // 2  # complex elements of q and k
    lay.pre.insert(1, Pointwise("euler_transform", read=2 * cplx * s, write=2 * cplx * s,
                                fp32_ops=(2.0 + p["euler_fp32_ops"]) * cplx, sfu_ops=2.0 * cplx, input="qk"))
    lay.notes.append("ComplexFormer (withdrawn text): priced from its abstract's form; -p score_sfu_ops, "
                     "score_fp32_ops and euler_fp32_ops set the per-score and per-element work")
    lay.shapes.update(qk_matmuls=2, score_sfu_ops=p["score_sfu_ops"], score_fp32_ops=p["score_fp32_ops"])
    return lay


def gaam(p, w: Workload, d_model: int, rope_dim: int) -> Layout:
    """Gaussian adaptive attention (Ioannides et al. 2024, arXiv 2401.11143, reference code
    GaussianAdaptiveAttention) applied to the scores along the key axis: per row the mean mu and
    variance sigma^2 of the scores; per score and Gaussian i, y_i = (x - (mu + delta_i)) /
    sqrt(sigma^2 + eps) and exp(-y_i^2 / (2 c_i^2)); the product over the G Gaussians is one exp of
    a sum (a subtract, a multiply and an FMA per Gaussian: 3 G FP32 instructions) that replaces the
    softmax's exp, normalized by its row sum like softmax. The row statistics need every score
    first: a fused kernel makes a statistics pass over the keys (a second QK^T-shaped matmul,
    qk_matmuls = 2, plus 2 FP32 instructions per score for the running mean and variance).
    (GAAM's paper also applies the Gaussian to features; `attnsim` prices the score form.)"""
    g = p["gaussians"]
    core = replace(w, qk_matmuls=2, score_fp32_ops=2.0 + 3.0 * g)
    lay = standard(core, d_model, rope_dim)
    lay.shapes.update(gaussians=g, qk_matmuls=2, score_fp32_ops=2.0 + 3.0 * g)
    lay.notes.append(f"GAAM on the scores: a statistics pass (QK^T twice) and {2 + 3 * g} FP32 ops per score")
    return lay
