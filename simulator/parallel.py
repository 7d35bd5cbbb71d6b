"""Attention over several GPUs: tensor parallel, ring (context-parallel), Ulysses and TPLA.

    scheme = parse_parallel("ulysses=2,cp=4")
    pp = predict_parallel("8xh100-nvlink", scheme, "mha", None, seqlen=131072, heads=32, causal=True)
    pp.time_s, pp.compute_s, pp.exposed_comm_s, pp.collectives

A scheme lowers the problem to per-rank problems (the same variant with fewer heads, a shorter
sequence, a narrower latent) priced by the single-GPU model on the cluster's device, and to
`Collective` operations priced on the cluster's links (`pricing.collective_time`, `rates.link_rates`).
Ranks are laid out with tp (or tpla) innermost, then ulysses, then cp: a group of consecutive ranks
stays inside a node when it fits.

    tp=N       heads split over N ranks; one all-reduce of the layer's output (B x tokens x d_model)
               after the output projection (train: a second one in the backward); exposed.
    cp=N       ring attention: the sequence split over N ranks; N steps, each attending the local
               queries to the K/V chunk in hand while the chunk moves on to the next rank by p2p;
               a step takes the larger of its compute and its transfer (the last step sends nothing).
               Causal: zigzag (default; -p zigzag=false to turn it off) gives every rank two chunks,
               i and 2N-1-i, so every step carries the same work; without it the step time is the
               slowest rank's (a full block) and the ring costs as much as non-causal attention.
               Train: the backward ring circulates K, V and the dK, dV accumulators (twice the bytes).
    ulysses=N  all-to-all of Q, K, V before attention and of O after it (train: dO, then dQ, dK, dV):
               each rank attends the whole sequence for H/N heads; the all-to-alls are exposed.
    tpla=N     MLA only (TPLA, Tang et al. 2025): the latent (kv_lora_rank) and each head's input
               dimension sharded over N ranks; every rank attends all heads over its latent shard and
               an all-reduce combines; compared with MLA under tp=N, where each rank holds H/N heads
               but reads the whole latent cache.

Efficiency = (one GPU's time) / (ranks x the cluster's time). The per-rank compute is the attention
core (the variant's scope), the communication the scheme's own collectives.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .cluster import Cluster, load_cluster
from .dtypes import DTYPE_BYTES
from .errors import AttnsimError
from .ops import Collective
from .pricing import collective_time
from .problem import _given, predict_problem, resolve
from .rates import link_rates

SCHEMES = ("tp", "cp", "ulysses", "tpla")
RING_VARIANTS = ("mha", "gqa", "mqa")  # ring attention here: dense or causal masks only
MAX_RANKS = 1 << 20


@dataclass(frozen=True)
class Scheme:
    tp: int = 1
    cp: int = 1
    ulysses: int = 1
    tpla: int = 1
    zigzag: bool = True

    @property
    def ranks(self) -> int:
        return self.tp * self.cp * self.ulysses * self.tpla

    def sizes(self) -> dict:
        return {k: getattr(self, k) for k in SCHEMES if getattr(self, k) > 1}

    def __str__(self) -> str:
        parts = [f"{k}={v}" for k, v in self.sizes().items()]
        return ",".join(parts) or "none"


def parse_parallel(text: str, zigzag=None) -> Scheme:
    """'tp=4', 'cp=8', 'ulysses=2,cp=4', 'tpla=2' -> Scheme; AttnsimError (one line) otherwise."""
    s = str(text).strip().lower()
    if not s:
        raise AttnsimError("--parallel is empty; expected e.g. tp=4, cp=8, ulysses=4, tpla=2 or ulysses=2,cp=4")
    sizes = {}
    for part in s.split(","):
        m = re.fullmatch(r"\s*([a-z]+)\s*=\s*(\S*)\s*", part)
        if not m:
            raise AttnsimError(f"--parallel {text!r}: {part.strip()!r} is not NAME=N; expected NAME=N joined by commas "
                               f"(NAME one of {', '.join(SCHEMES)}), e.g. ulysses=2,cp=4")
        name, value = m.group(1), m.group(2)
        if name not in SCHEMES:
            raise AttnsimError(f"--parallel {text!r}: unknown scheme {name!r}; allowed: {', '.join(SCHEMES)}")
        if name in sizes:
            raise AttnsimError(f"--parallel {text!r}: {name} given twice")
        if not re.fullmatch(r"[0-9]+", value) or not 1 <= int(value[:12]) <= MAX_RANKS or len(value) > 12:
            raise AttnsimError(f"--parallel {text!r}: {name}={value!r}: N must be a whole number of ranks, "
                               f"1..{MAX_RANKS}")
        n = int(value)
        sizes[name] = n
    if sizes.get("tp", 1) > 1 and sizes.get("tpla", 1) > 1:
        raise AttnsimError(f"--parallel {text!r}: tp and tpla both shard the heads' work; choose one")
    if zigzag is not None and sizes.get("cp", 1) <= 1:
        raise AttnsimError("-p zigzag applies to ring attention (--parallel cp=N)")
    return Scheme(**sizes, zigzag=True if zigzag is None else _bool(zigzag))


def _bool(v) -> bool:
    if isinstance(v, bool):
        return v
    t = str(v).strip().lower()
    if t in ("true", "1", "yes", "on"):
        return True
    if t in ("false", "0", "no", "off"):
        return False
    raise AttnsimError(f"zigzag={v!r}: expected true or false")


@dataclass
class ParallelPrediction:
    cluster: Cluster
    scheme: Scheme
    time_s: float  # the step's time on the cluster
    bound_s: float  # speed of light: per-rank compute bound, communication at link peak
    compute_s: float  # per rank
    comm_s: float  # every collective's time, overlapped or not
    exposed_comm_s: float  # what the compute does not hide
    memory_bytes_per_gpu: int
    collectives: list  # dicts {op, bytes, group_size, link, time_s, count, name}
    single: object  # the one-GPU Prediction of the whole problem (the efficiency's reference)
    rank: object  # a per-rank Prediction (the first step's, for ring attention)
    notes: list = field(default_factory=list)
    compared: dict | None = None  # tpla: the same MLA under tp=N
    link_calibrations: dict = field(default_factory=dict)  # link name -> the fit applied (info); {}: profile figures

    @property
    def overlapped_comm_s(self) -> float:
        return self.comm_s - self.exposed_comm_s

    @property
    def efficiency(self) -> float:
        return self.single.time_s / (self.scheme.ranks * self.time_s) if self.time_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {"scheme": str(self.scheme), "ranks": self.scheme.sizes(), "zigzag": self.scheme.zigzag,
                "cluster": self.cluster.key, "gpus": self.cluster.gpus,
                "compute_s": self.compute_s, "comm_s": self.comm_s, "overlapped_comm_s": self.overlapped_comm_s,
                "exposed_comm_s": self.exposed_comm_s, "memory_bytes_per_gpu": self.memory_bytes_per_gpu,
                "fits": self.memory_bytes_per_gpu <= self.cluster.device.hbm_capacity_bytes,
                "single_gpu_time_s": self.single.time_s, "efficiency": self.efficiency,
                "collectives": self.collectives, **({"compared": self.compared} if self.compared else {}),
                "links_calibrated": self.link_calibrations,
                "notes": self.notes}


def _kv_bytes(w) -> int:
    return DTYPE_BYTES[w.kv_dtype or w.dtype]


def _split_heads(w, n: int, what: str):
    """Per-rank (heads_q, heads_kv) of workload `w` when `n` ranks split the heads; K/V heads fewer than
    ranks are replicated (each rank keeps the K/V head its query heads use)."""
    if w.heads_q % n:
        raise AttnsimError(f"{what}={n} does not divide the {w.heads_q} query heads; choose a divisor of {w.heads_q}")
    hkv = w.heads_kv
    if hkv % n and n % hkv:
        raise AttnsimError(f"{what}={n} and the {hkv} kv heads: one must divide the other (kv heads are split, "
                           f"or replicated when fewer than the ranks)")
    return w.heads_q // n, max(1, hkv // n)


def _shapes_for(problem, shapes: dict, heads_q: int, heads_kv: int) -> dict:
    out = dict(shapes)
    out["heads"] = heads_q
    if problem.variant.name == "gqa" or shapes.get("kv_heads") is not None:
        out["kv_heads"] = heads_kv
    return out


def predict_parallel(cluster, scheme, variant="mha", params=None, kernel=None, calibration="default",
                     link_calibration="same", **shapes) -> ParallelPrediction:
    """The time of one attention call (resolve()'s keywords in `shapes`) on `cluster` (a name, a path or
    a Cluster) under `scheme` (a Scheme or the --parallel text). `link_calibration`: "same" (the links'
    fits in the file `calibration` names: calibrations.choose_link), None (profile figures), a
    LinkCalibration for every link, or a calibration file's path."""
    cl = cluster if isinstance(cluster, Cluster) else load_cluster(cluster)
    sc = scheme if isinstance(scheme, Scheme) else parse_parallel(scheme)
    if sc.ranks > cl.gpus:
        raise AttnsimError(f"--parallel {sc} uses {sc.ranks} GPUs; {cl.key} has {cl.gpus}")
    hw = cl.device
    shapes = dict(shapes)
    full = resolve(variant, params, kernel=kernel, hw=hw, **shapes)
    params = _given(full.variant, params)  # the caller's -p values by name (strings or typed)
    single = predict_problem(full, calibration=calibration)
    w = full.workload
    core = full.layout.core if full.layout is not None else w  # the attention core's heads and dims
    var = full.variant.name
    if sc.tpla > 1 and (var != "mla" or w.phase != "decode"):
        raise AttnsimError(f"tpla shards MLA's latent cache in decode (--variant mla --phase decode), not {var} "
                           f"{w.phase}; use tp=N otherwise")
    if w.seqlens is not None and (sc.cp > 1 or sc.ulysses > 1):
        raise AttnsimError("cp and ulysses split a sequence; varlen batches (--seqlens) take tp only")
    if w.phase == "decode" and (sc.cp > 1 or sc.ulysses > 1):
        raise AttnsimError("cp and ulysses split the query sequence of prefill or train; decode takes tp"
                           + (" or tpla" if var == "mla" else ""))
    notes = []

    link_cals = {}

    def link(size, stride):
        name, lk = cl.link_for(size, stride)
        if name not in link_cals:
            from .calibrations import choose_link
            link_cals[name] = choose_link(calibration if link_calibration == "same" else link_calibration,
                                          cl.key, name)
        return name, link_rates(lk, link_cals[name][0])

    colls = []

    def coll(name, op, nbytes, size, stride, count=1):
        lname, lr = link(size, stride)
        c = Collective(name=name, op=op, bytes=float(nbytes), group_size=size, link=lname, count=count)
        t = collective_time(c, lr)
        colls.append({"name": name, "op": op, "bytes": int(nbytes), "group_size": size, "link": lname,
                      "time_s": t, "count": count, "peak_time_s": collective_time(c, lr, peak=True)})
        return t

    heads_split = sc.tp * sc.ulysses
    train = w.phase == "train"
    s_act = DTYPE_BYTES[w.dtype]
    d_model = (full.layout.d_model if full.layout is not None else None) or full.d_model or core.heads_q * core.head_dim_v
    tokens = sum(w.seqlens) if w.seqlens is not None and w.phase != "decode" else w.batch * w.seqlen_q

    # -- per-rank shapes -------------------------------------------------------------------------
    hq, hkv = (_split_heads(core, heads_split, "tp x ulysses" if sc.tp > 1 and sc.ulysses > 1
                            else ("tp" if sc.tp > 1 else "ulysses"))
               if heads_split > 1 else (core.heads_q, core.heads_kv))
    if heads_split > 1 and core.heads_kv < heads_split:
        notes.append(f"{core.heads_kv} kv head(s) over {heads_split} ranks: each rank keeps a copy of the kv head its "
                     f"query heads use")
    rank_shapes = _shapes_for(full, shapes, hq, hkv) if heads_split > 1 else dict(shapes)
    rank_params = dict(params)
    if sc.tpla > 1:
        rank = full.params.get("kv_lora_rank")
        if rank % sc.tpla:
            raise AttnsimError(f"tpla={sc.tpla} does not divide kv_lora_rank={rank}; choose a divisor")
        rank_params["kv_lora_rank"] = rank // sc.tpla
        notes.append(f"TPLA: each rank holds kv_lora_rank/{sc.tpla} = {rank // sc.tpla} latent dims of every head "
                     f"(the RoPE key replicated)")

    compute = comm = exposed = 0.0
    bound = 0.0
    if sc.cp > 1:
        if var not in RING_VARIANTS:
            raise AttnsimError(f"cp (ring attention) here takes dense or causal attention ({', '.join(RING_VARIANTS)}), "
                               f"not {var!r}")
        if w.seqlen_q != w.seqlen_kv:
            raise AttnsimError("cp (ring attention) here needs --seqlen-kv equal to --seqlen")
        zig = sc.zigzag and w.causal
        parts = 2 * sc.cp if zig else sc.cp
        if w.seqlen_q % parts:
            raise AttnsimError(f"cp={sc.cp}{' with zigzag' if zig else ''} splits the sequence into {parts} chunks; "
                               f"{w.seqlen_q} tokens do not divide by {parts}")
        chunk = w.seqlen_q // sc.cp  # tokens each rank holds
        base = dict(rank_shapes)

        def step(q, kv, causal):
            s = dict(base, seqlen=q, seqlen_kv=kv, causal=causal)
            return predict_problem(resolve(variant, rank_params, kernel=kernel, hw=hw, **s),
                                   calibration=calibration)
        first = step(chunk, chunk, w.causal)
        if not w.causal:
            steps = [first] * sc.cp
        elif zig:
            other = step(chunk // 2, chunk, False)
            steps = [first] + [other] * (sc.cp - 1)
            notes.append(f"zigzag: each rank holds chunks i and {2 * sc.cp - 1}-i of {chunk // 2} tokens; "
                         f"every step after the first attends {chunk // 2} x {chunk} tokens")
        else:
            other = step(chunk, chunk, False)
            steps = [first] + [other] * (sc.cp - 1)
            notes.append("causal without zigzag: every step after the first waits for the rank holding a full "
                         "block (the last rank): a causal block plus N-1 full blocks, near non-causal attention's cost")
        kv_chunk = w.batch * chunk * hkv * (core.head_dim_qk + core.head_dim_v) * _kv_bytes(w)
        stride = sc.tp * sc.tpla * sc.ulysses
        t_fwd = coll("ring K/V (forward)", "p2p", kv_chunk, sc.cp, stride, count=sc.cp - 1)
        t_bwd = coll("ring K/V + dK/dV (backward)", "p2p", 2 * kv_chunk, sc.cp, stride, count=sc.cp - 1) if train else 0.0
        lr = link(sc.cp, stride)[1]
        for j, p in enumerate(steps):
            if train:
                f = sum(k.time_s for k in p.kernels if k.role != "backward")
                b = p.time_s - f
                fb = p.bound.time_s * (f / p.time_s if p.time_s else 0.0)
                bb = p.bound.time_s - fb
                if j < sc.cp - 1:
                    compute += f + b
                    step_t = max(f, t_fwd) + max(b, t_bwd)
                    comm += t_fwd + t_bwd
                    exposed += step_t - f - b
                    bound += max(fb, kv_chunk / lr.peak_bytes_per_s) + max(bb, 2 * kv_chunk / lr.peak_bytes_per_s)
                else:
                    compute += f + b
                    bound += p.bound.time_s
            else:
                compute += p.time_s
                if j < sc.cp - 1:
                    comm += t_fwd
                    exposed += max(p.time_s, t_fwd) - p.time_s
                    bound += max(p.bound.time_s, kv_chunk / lr.peak_bytes_per_s)
                else:
                    bound += p.bound.time_s
        rank_pred = first
        memory = first.memory_bytes + kv_chunk * (3 if train else 1)  # the chunk in flight (+ dK, dV in train)
        tokens_rank = w.batch * chunk
    else:
        rank_pred = predict_problem(resolve(variant, rank_params, kernel=kernel, hw=hw, **rank_shapes),
                                    calibration=calibration)
        compute = rank_pred.time_s
        bound = rank_pred.bound.time_s
        memory = rank_pred.memory_bytes
        tokens_rank = tokens

    # -- Ulysses all-to-alls (exposed) -----------------------------------------------------------
    if sc.ulysses > 1:
        u = sc.ulysses
        hkv_all = core.heads_kv if core.heads_kv % u == 0 else u  # fewer kv heads than ranks: one copy each
        if w.seqlen_q % (u * sc.cp):
            raise AttnsimError(f"ulysses={u} splits the sequence over {u * sc.cp} ranks; {w.seqlen_q} query tokens "
                               f"do not divide by {u * sc.cp}")
        per = w.batch * (w.seqlen_q // (u * sc.cp))
        n_q = per * core.heads_q * core.head_dim_qk * s_act
        n_kv = per * hkv_all * (core.head_dim_qk + core.head_dim_v) * _kv_bytes(w)
        n_o = per * core.heads_q * core.head_dim_v * s_act
        stride = sc.tp * sc.tpla
        t = coll("all-to-all Q, K, V", "all_to_all", n_q + n_kv, u, stride)
        t += coll("all-to-all O", "all_to_all", n_o, u, stride)
        if train:
            t += coll("all-to-all dO", "all_to_all", n_o, u, stride)
            t += coll("all-to-all dQ, dK, dV", "all_to_all", n_q + n_kv, u, stride)
        comm += t
        exposed += t
        bound += sum(c["peak_time_s"] for c in colls if c["op"] == "all_to_all")
        memory += int(n_q + n_kv + n_o)  # the exchange buffers

    # -- tp / tpla all-reduce of the output (exposed) ---------------------------------------------
    for name, n in (("tp", sc.tp), ("tpla", sc.tpla)):
        if n > 1:
            rows = tokens_rank if w.phase != "decode" else w.batch * w.seqlen_q
            nbytes = rows * d_model * s_act
            t = coll(f"{name} all-reduce of the output", "all_reduce", nbytes, n, 1, count=2 if train else 1)
            t *= 2 if train else 1
            comm += t
            exposed += t
            bound += colls[-1]["peak_time_s"] * (2 if train else 1)

    time_s = compute + exposed
    if time_s > 0 and single.time_s / (sc.ranks * time_s) > 1:
        notes.append("efficiency above 100%: a rank's kernels run at a better rate than one GPU's kernel on the "
                     "whole problem (e.g. ring steps after the first are non-causal blocks, without the causal "
                     "per-tile cost, and shorter tails)")
    pp = ParallelPrediction(cluster=cl, scheme=sc, time_s=time_s, bound_s=bound, compute_s=compute, comm_s=comm,
                            exposed_comm_s=exposed, memory_bytes_per_gpu=int(memory), collectives=colls,
                            single=single, rank=rank_pred, notes=notes,
                            link_calibrations={k: v[1] for k, v in link_cals.items() if v[0] is not None})
    if sc.tpla > 1:
        tp_pp = predict_parallel(cl, Scheme(tp=sc.tpla, cp=sc.cp, ulysses=sc.ulysses, zigzag=sc.zigzag), variant,
                                 params, kernel, calibration, link_calibration, **shapes)
        pp.compared = {"scheme": str(tp_pp.scheme), "time_s": tp_pp.time_s, "compute_s": tp_pp.compute_s,
                       "exposed_comm_s": tp_pp.exposed_comm_s, "memory_bytes_per_gpu": tp_pp.memory_bytes_per_gpu,
                       "kv_cache_bytes_per_gpu": tp_pp.rank.kv_cache_bytes,
                       "tpla_kv_cache_bytes_per_gpu": rank_pred.kv_cache_bytes,
                       "speedup_of_tpla": tp_pp.time_s / time_s if time_s else None}
    return pp


def scaling(cluster, scheme_name: str, ranks, variant="mha", params=None, kernel=None, calibration="default",
            zigzag=None, **shapes) -> list:
    """One row per rank count of one scheme (`scheme_name` in SCHEMES): time, compute, exposed
    communication, memory per GPU, parallel efficiency. Rank count 1 is the single GPU."""
    if scheme_name not in SCHEMES:
        raise AttnsimError(f"--ranks varies one scheme; {scheme_name!r} is not one of {', '.join(SCHEMES)}")
    rows = []
    for n in ranks:
        sc = Scheme(**{scheme_name: n}, zigzag=True if zigzag is None else _bool(zigzag))
        pp = predict_parallel(cluster, sc, variant, params, kernel, calibration, **shapes)
        rows.append({"ranks": n, "scheme": str(sc), "time_s": pp.time_s, "compute_s": pp.compute_s,
                     "exposed_comm_s": pp.exposed_comm_s, "comm_s": pp.comm_s,
                     "memory_bytes_per_gpu": pp.memory_bytes_per_gpu, "efficiency": pp.efficiency})
    return rows
