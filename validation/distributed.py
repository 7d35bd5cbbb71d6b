"""Validation on a real distributed engine: ring attention and tensor-parallel attention written over
torch.distributed point-to-point calls (NCCL on GPUs, gloo on the CPU), with every byte counted, and
a collective micro-benchmark that records link measurements.

    results = launch(engine_worker, 4, args=(cases,))        # 4 gloo processes on the CPU
    reports = [compare_case(c, results, i) for i, c in enumerate(cases)]
    collective_benchmark(2, "gloo", out="links.jsonl")       # or backend="nccl" on a multi-GPU machine

What it checks against `simulator.parallel.predict_parallel`:

* the numbers: every implementation computes in float64 on each rank and is compared with a
  single-process float64 softmax attention (and float64 autograd for the gradients);
* the bytes: `P2P` wraps ``dist.isend``/``dist.irecv`` and counts, per rank, the bytes each call
  sends and receives (``numel x element_size`` of the buffer handed to torch). Every exchange here
  goes through it — the all-reduce too, written as a ring of isend/irecv (reduce-scatter, then
  all-gather), since gloo's built-in collectives expose no byte counts. `model_bytes_sent_per_rank`
  turns the model's `collectives` into the same per-rank figure.

Wire dtype. The model counts K/V and activations in its dtype (fp16, bf16, fp32); the buffers sent
here are cast to that dtype (`wire_dtype`) while each rank computes in float64, so the counted bytes
are those of real tensors of the model's dtype, not a conversion of float64 counts. Ring attention's
forward sends only inputs (K and V): drawn on a grid that fp16 and bf16 hold exactly
(`grid_tensor`), they cross the wire losslessly, and the output equals the float64 reference to
float64 rounding *with* fp16 transfers. Sums sent over the wire — the all-reduce's partial outputs,
the backward ring's dK/dV accumulators — do round to the wire dtype (as they do on a GPU cluster);
run with ``wire_dtype=torch.float64`` those equal float64 references to rounding, and the byte counts
are then exactly (8 / model bytes) times the model's (`EngineCase.wire`).

Ring attention (``cp=N``): rank i holds the tokens of chunk i (or, causal zigzag, chunks i and
2N-1-i of 2N: `shard_sequence`). Forward: N steps; at step s rank i holds the K/V chunk of rank
i-s, attends its queries to it (the blocks of `ring_blocks`: causal skips what the mask hides, zigzag
gives every rank the same work) and merges with the log-sum-exp; the K/V chunk (one buffer, K then V)
goes on to rank i+1 during the step, N-1 sends. Backward: K/V circulate again (N-1 sends) and each
chunk's dK/dV accumulator follows it, starting at the rank after its owner and ending back at the
owner (N-1 sends of the same size): 2 x (K/V bytes) x (N-1) per rank, what the model's
"ring K/V + dK/dV (backward)" counts (the model's per-call size is 2 x K/V; here K/V leave at the
start of a step and the accumulator at its end, so the calls differ, the per-rank total does not).

Tensor parallel (``tp=N``): heads split over ranks; each rank computes its heads' attention and its
partial output projection; one all-reduce of the output (tokens x d_model). Train: the input's
gradient is all-reduced too (Megatron's f/g pair), the model's second all-reduce.

The launcher (`launch`) starts P processes (MASTER_ADDR 127.0.0.1, a free port), one per rank, runs
``fn(rank, world, *args)`` in each and returns the results by rank; an exception on a rank, a rank
that dies, or a run past its timeout ends every rank and raises `DistributedError` with the rank's
traceback. Processes start from a fork server that has imported torch once ("forkserver", a clean
process like "spawn", without its torch import per launch: about 0.2 s instead of several seconds a
launch on a small CPU machine); where it does not exist, "spawn".

The collective micro-benchmark (`collective_benchmark`) writes records of kind ``"collective"`` in
the measurement format of `validation.records` (schema ``attnsim.measurement/1``; device, timing,
date and version blocks as ``attnsim validate`` writes them; a CPU run's device block: `cpu_device_block`),
see `collective_record`; `calibrate_link` fits a cluster link's `LinkCalibration` to them
(`validation.links.fit_link`); `records.check_record` / `append_record` check and append them.

NCCL: the code paths for GPUs (``backend="nccl"``: one GPU per rank, batched p2p calls) are written
for it, but only gloo runs in the tests.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import pickle
import platform
import queue as queue_mod
import socket
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import torch
import torch.distributed as dist

from attnsim.simulator.ops import COLLECTIVE_OPS
from attnsim.simulator.pricing import collective_coefficients

from . import records

__all__ = ["ByteCount", "P2P", "DistributedError", "launch", "free_port", "chunk_bounds", "token_positions",
           "shard_sequence", "unshard_sequence", "ring_blocks", "ring_attention_forward", "ring_attention_backward",
           "ring_attention", "ring_all_reduce", "tp_attention", "reference_attention", "reference_tp_attention",
           "model_bytes_sent_per_rank", "EngineCase", "engine_worker", "compare_case", "default_cases",
           "grid_tensor", "collective_benchmark", "collective_record", "check_collective_record",
           "append_collective_record", "link_rows", "calibrate_link", "cpu_device_block"]

TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32, "fp64": torch.float64}
TAG_KV, TAG_ACC, TAG_REDUCE, TAG_BENCH = 1, 2, 3, 4


class DistributedError(RuntimeError):
    """A distributed run that failed: a rank raised, died or ran past the timeout. The message names
    the rank and carries its traceback."""


# -- the byte-counting point-to-point layer ----------------------------------------------------

@dataclass
class ByteCount:
    """What one rank sent and received through a `P2P`: bytes and calls, in total and per peer."""
    sent_bytes: int = 0
    recv_bytes: int = 0
    sends: int = 0
    recvs: int = 0
    sent_to: dict = field(default_factory=dict)
    recv_from: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _nbytes(t) -> int:
    return t.numel() * t.element_size()


class P2P:
    """``dist.isend``/``dist.irecv`` over `group` (ranks are the group's), counting bytes in `count`.

    `isend`/`irecv` post one call each; `exchange` posts several at once (on NCCL as one
    ``batch_isend_irecv``, so a ring's send-to-next and receive-from-previous cannot deadlock;
    elsewhere one isend/irecv each). Buffers must be contiguous; the count is the buffer's bytes."""

    def __init__(self, group=None):
        self.group = group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        self.backend = str(dist.get_backend(group)).lower()
        self.count = ByteCount()

    def _global(self, r: int) -> int:
        return r if self.group is None else dist.get_global_rank(self.group, r)

    def _check(self, t, peer):
        if not t.is_contiguous():
            raise ValueError("p2p buffers must be contiguous")
        if not 0 <= peer < self.size or peer == self.rank:
            raise ValueError(f"p2p peer {peer} on rank {self.rank} of {self.size}: expected another rank")

    def _count_send(self, t, dst):
        n = _nbytes(t)
        self.count.sent_bytes += n
        self.count.sends += 1
        self.count.sent_to[dst] = self.count.sent_to.get(dst, 0) + n

    def _count_recv(self, t, src):
        n = _nbytes(t)
        self.count.recv_bytes += n
        self.count.recvs += 1
        self.count.recv_from[src] = self.count.recv_from.get(src, 0) + n

    def isend(self, tensor, dst: int, tag: int = 0):
        self._check(tensor, dst)
        self._count_send(tensor, dst)
        return dist.isend(tensor, self._global(dst), group=self.group, tag=tag)

    def irecv(self, tensor, src: int, tag: int = 0):
        self._check(tensor, src)
        self._count_recv(tensor, src)
        return dist.irecv(tensor, self._global(src), group=self.group, tag=tag)

    def exchange(self, ops, tag: int = 0) -> list:
        """Post ``[(kind, tensor, peer[, tag]), ...]`` (kind "send" or "recv") together, in order;
        returns the works to wait on."""
        ops = [(o[0], o[1], o[2], o[3] if len(o) > 3 else tag) for o in ops]
        if self.backend != "nccl":
            return [self.isend(t, p, g) if kind == "send" else self.irecv(t, p, g) for kind, t, p, g in ops]
        batch = []
        for kind, t, p, g in ops:
            self._check(t, p)
            (self._count_send if kind == "send" else self._count_recv)(t, p)
            fn = dist.isend if kind == "send" else dist.irecv
            batch.append(dist.P2POp(fn, t, self._global(p), group=self.group, tag=g))
        return dist.batch_isend_irecv(batch) if batch else []


def _wait(works):
    """Wait on every work in `works` (other items — buffers kept alive next to their sends — skipped)."""
    for w in works:
        if hasattr(w, "wait"):
            w.wait()


# -- the sequence layout of ring attention -----------------------------------------------------

def chunk_bounds(rank: int, world: int, seqlen: int, zigzag: bool) -> list:
    """The token ranges [(start, stop), ...] rank `rank` of `world` holds: chunk `rank` of `world`
    chunks, or (zigzag) chunks `rank` and 2*world-1-rank of 2*world."""
    parts = 2 * world if zigzag else world
    if seqlen % parts:
        raise ValueError(f"{seqlen} tokens do not split into {parts} equal chunks "
                         f"({world} ranks{', zigzag' if zigzag else ''})")
    c = seqlen // parts
    if zigzag:
        return [(rank * c, (rank + 1) * c), ((2 * world - 1 - rank) * c, (2 * world - rank) * c)]
    return [(rank * c, (rank + 1) * c)]


def token_positions(rank: int, world: int, seqlen: int, zigzag: bool, device=None):
    return torch.cat([torch.arange(a, b, device=device) for a, b in chunk_bounds(rank, world, seqlen, zigzag)])


def shard_sequence(x, rank: int, world: int, zigzag: bool = False, dim: int = -2):
    """Rank `rank`'s tokens of `x` (the sequence along `dim`), contiguous."""
    return torch.cat([x.narrow(dim, a, b - a) for a, b in chunk_bounds(rank, world, x.shape[dim], zigzag)],
                     dim).contiguous()


def unshard_sequence(shards, zigzag: bool = False, dim: int = -2):
    """The whole sequence from every rank's shard (`shard_sequence`'s inverse)."""
    world = len(shards)
    dim = dim % shards[0].dim()
    seqlen = shards[0].shape[dim] * world
    shape = list(shards[0].shape)
    shape[dim] = seqlen
    out = shards[0].new_empty(shape)
    for r, s in enumerate(shards):
        out.index_copy_(dim, token_positions(r, world, seqlen, zigzag, s.device), s)
    return out


def ring_blocks(rank: int, src: int, world: int, local: int, causal: bool, zigzag: bool) -> list:
    """The blocks rank `rank` attends when it holds the K/V chunk of rank `src`: a list of
    (query slice, key slice, diagonal) over the local token indices (`local` tokens a rank). The
    diagonal block (src == rank, causal) is masked by token position; every other block listed is
    fully visible and what causal attention hides is left out."""
    full = slice(0, local)
    if not causal:
        return [(full, full, False)]
    if src == rank:
        return [(full, full, True)]
    if not zigzag:
        return [(full, full, False)] if src < rank else []
    h = local // 2  # zigzag: [chunk rank | chunk 2N-1-rank], the K/V chunk in hand [chunk src | chunk 2N-1-src]
    if src < rank:  # chunk src precedes both query chunks, chunk 2N-1-src follows both
        return [(full, slice(0, h), False)]
    return [(slice(h, local), full, False)]  # src > rank: only the late query chunk sees, and it sees all


# -- attention pieces ----------------------------------------------------------------------------

def _expand(t, groups: int):
    return t if groups == 1 else t.repeat_interleave(groups, dim=1)


def _fold(t, groups: int):
    if groups == 1:
        return t
    b, h, n, d = t.shape
    return t.view(b, h // groups, groups, n, d).sum(2)


def _scores(q, k, scale, mask):
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    return s if mask is None else s.masked_fill(~mask, float("-inf"))


def _finite_or_zero(x):
    return torch.where(torch.isneginf(x), torch.zeros_like(x), x)


def _attend(q, k, v, scale, mask):
    """(normalized output, log-sum-exp) of one block; a row that sees nothing: 0 and -inf."""
    s = _scores(q, k, scale, mask)
    lse = torch.logsumexp(s, dim=-1)
    p = torch.exp(s - _finite_or_zero(lse)[..., None])
    return torch.matmul(p, v), lse


def _merge(o, lse, o_b, lse_b):
    new = torch.logaddexp(lse, lse_b)
    ref = _finite_or_zero(new)
    return o * torch.exp(lse - ref)[..., None] + o_b * torch.exp(lse_b - ref)[..., None], new


def _diag_mask(rank, src, world, local, zigzag, device):
    seqlen = local * world
    qp = token_positions(rank, world, seqlen, zigzag, device)
    kp = token_positions(src, world, seqlen, zigzag, device)
    return qp[:, None] >= kp[None, :]


def _pack(k, v, wire):
    return torch.cat([k.reshape(-1), v.reshape(-1)]).to(wire).contiguous()


def _unpack(buf, k_shape, v_shape, dtype):
    nk = math.prod(k_shape)
    return buf[:nk].view(k_shape).to(dtype), buf[nk:].view(v_shape).to(dtype)


def _setup(q, k, v, causal, zigzag, group, comm, wire_dtype, scale):
    comm = comm or P2P(group)
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("q, k, v: [batch, heads, local tokens, head_dim]")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"{q.shape[1]} query heads do not group over {k.shape[1]} kv heads")
    zig = bool(causal) and (True if zigzag is None else bool(zigzag))
    local = q.shape[2]
    if k.shape[2] != local or v.shape[2] != local:
        raise ValueError("ring attention here: every rank holds as many keys as queries")
    if zig and local % 2:
        raise ValueError(f"zigzag: {local} local tokens do not split into two chunks")
    return (comm, zig, local, wire_dtype or k.dtype, q.shape[-1] ** -0.5 if scale is None else scale,
            q.shape[1] // k.shape[1])


def ring_attention_forward(q, k, v, causal: bool = False, zigzag=None, group=None, *, comm: P2P | None = None,
                           wire_dtype=None, scale=None):
    """Ring attention's forward on this rank: (out, lse) of its queries over the whole sequence.

    q [B, H, L, D], k [B, Hkv, L, D], v [B, Hkv, L, Dv]: this rank's tokens (`shard_sequence`; zigzag:
    chunks rank and 2N-1-rank); `zigzag` defaults to true for causal (as `Scheme.zigzag`). The K/V
    chunk travels as one buffer of `wire_dtype` (default: k's dtype), N-1 sends a rank. out [B, H, L, Dv]
    in q's dtype, lse [B, H, L] (natural log)."""
    comm, zig, local, wire, scale, groups = _setup(q, k, v, causal, zigzag, group, comm, wire_dtype, scale)
    n, r = comm.size, comm.rank
    out = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)
    lse = torch.full(q.shape[:-1], float("-inf"), dtype=q.dtype, device=q.device)
    kv = _pack(k, v, wire)
    for s in range(n):
        src = (r - s) % n
        works, nxt = [], None
        if s < n - 1:  # the chunk in hand moves on while we attend to it
            nxt = torch.empty_like(kv)
            works = comm.exchange([("send", kv, (r + 1) % n), ("recv", nxt, (r - 1) % n)], TAG_KV)
        kk, vv = _unpack(kv, k.shape, v.shape, q.dtype)
        kk, vv = _expand(kk, groups), _expand(vv, groups)
        for qs, ks, diag in ring_blocks(r, src, n, local, causal, zig):
            mask = _diag_mask(r, src, n, local, zig, q.device)[qs, ks] if diag else None
            o_b, lse_b = _attend(q[:, :, qs], kk[:, :, ks], vv[:, :, ks], scale, mask)
            out[:, :, qs], lse[:, :, qs] = _merge(out[:, :, qs], lse[:, :, qs], o_b, lse_b)
        _wait(works)
        kv = nxt
    return out, lse


def ring_attention_backward(dout, q, k, v, out, lse, causal: bool = False, zigzag=None, group=None, *,
                            comm: P2P | None = None, wire_dtype=None, scale=None):
    """Ring attention's backward on this rank: (dq, dk, dv) of its tokens, from the forward's `out`
    and `lse` (`ring_attention_forward`). K/V circulate again (N-1 sends); the dK/dV accumulator of
    each chunk follows its K/V from the rank after its owner back to the owner (N-1 sends of the
    same size, in `wire_dtype`); the owner's own contribution never leaves it."""
    comm, zig, local, wire, scale, groups = _setup(q, k, v, causal, zigzag, group, comm, wire_dtype, scale)
    n, r = comm.size, comm.rank
    nxt_rank, prv_rank = (r + 1) % n, (r - 1) % n
    delta = (dout * out).sum(-1)  # D_i = rowsum(dO * O)
    dq = torch.zeros_like(q)
    kv = _pack(k, v, wire)
    own = None  # this rank's contribution to its own chunk's dK, dV: never leaves the rank
    acc_sent = []  # the accumulator sent at the end of the last step, and its buffer (alive until sent)
    for s in range(n):
        src = (r - s) % n
        ops, acc_in, nxt = [], None, None
        if s >= 2:  # chunk src's accumulator, from the rank that held it last step (posted first: NCCL's order)
            acc_in = torch.empty_like(kv)
            ops.append(("recv", acc_in, prv_rank, TAG_ACC))
        if s < n - 1:
            nxt = torch.empty_like(kv)
            ops += [("send", kv, nxt_rank, TAG_KV), ("recv", nxt, prv_rank, TAG_KV)]
        works = comm.exchange(ops)
        kk, vv = _unpack(kv, k.shape, v.shape, q.dtype)
        ke, ve = _expand(kk, groups), _expand(vv, groups)
        dk, dv = torch.zeros_like(ke), torch.zeros_like(ve)
        for qs, ks, diag in ring_blocks(r, src, n, local, causal, zig):
            mask = _diag_mask(r, src, n, local, zig, q.device)[qs, ks] if diag else None
            qi, doi = q[:, :, qs], dout[:, :, qs]
            p = torch.exp(_scores(qi, ke[:, :, ks], scale, mask) - lse[:, :, qs, None])
            dv[:, :, ks] += torch.matmul(p.transpose(-1, -2), doi)
            ds = p * (torch.matmul(doi, ve[:, :, ks].transpose(-1, -2)) - delta[:, :, qs, None])
            dq[:, :, qs] += torch.matmul(ds, ke[:, :, ks]) * scale
            dk[:, :, ks] += torch.matmul(ds.transpose(-1, -2), qi) * scale
        dk, dv = _fold(dk, groups), _fold(dv, groups)
        _wait(works)
        _wait(acc_sent)
        if s == 0:
            own, acc_sent = (dk, dv), []
        else:
            if acc_in is not None:
                ak, av = _unpack(acc_in, k.shape, v.shape, q.dtype)
                dk, dv = dk + ak, dv + av
            acc_out = _pack(dk, dv, wire)
            acc_sent = comm.exchange([("send", acc_out, nxt_rank, TAG_ACC)]) + [acc_out]
        if nxt is not None:
            kv = nxt
    if n > 1:  # our own chunk's accumulator, from the rank before us (its last step)
        acc_in = torch.empty_like(kv)
        _wait(comm.exchange([("recv", acc_in, prv_rank, TAG_ACC)]))
        ak, av = _unpack(acc_in, k.shape, v.shape, q.dtype)
        own = (own[0] + ak, own[1] + av)
    _wait(acc_sent)
    return dq, own[0], own[1]


class _RingAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, zigzag, comm, wire_dtype, scale):
        out, lse = ring_attention_forward(q, k, v, causal, zigzag, comm=comm, wire_dtype=wire_dtype, scale=scale)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.args = (causal, zigzag, comm, wire_dtype, scale)
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        causal, zigzag, comm, wire_dtype, scale = ctx.args
        dq, dk, dv = ring_attention_backward(dout.contiguous(), q, k, v, out, lse, causal, zigzag, comm=comm,
                                             wire_dtype=wire_dtype, scale=scale)
        return dq, dk, dv, None, None, None, None, None


def ring_attention(q, k, v, causal: bool = False, zigzag=None, group=None, *, comm: P2P | None = None,
                   wire_dtype=None, scale=None):
    """`ring_attention_forward`'s output with autograd: its backward is `ring_attention_backward`."""
    return _RingAttention.apply(q, k, v, causal, zigzag, comm or P2P(group), wire_dtype, scale)


# -- tensor parallel ------------------------------------------------------------------------------

def ring_all_reduce(tensor, group=None, *, comm: P2P | None = None, wire_dtype=None):
    """The sum of `tensor` over the ranks, as a ring of isend/irecv: reduce-scatter (p-1 steps), then
    all-gather (p-1 steps), each step one chunk of n/p to the next rank: 2(p-1)/p x n bytes sent and
    received per rank (n the tensor's bytes in `wire_dtype`; exact when p divides the element count).
    Sums are computed in the tensor's dtype and cross the wire in `wire_dtype` (default: the tensor's);
    the reduced chunk is rounded to `wire_dtype` on its owner too, so every rank returns the same."""
    comm = comm or P2P(group)
    p, r = comm.size, comm.rank
    wire = wire_dtype or tensor.dtype
    flat = tensor.detach().reshape(-1).clone()
    if p == 1:
        return flat.to(wire).to(tensor.dtype).view_as(tensor)
    chunks = list(flat.tensor_split(p))
    nxt, prv = (r + 1) % p, (r - 1) % p
    for s in range(p - 1):  # reduce-scatter: after it, rank r holds the sum of chunk r+1
        si, ri = (r - s) % p, (r - s - 1) % p
        send = chunks[si].to(wire).contiguous()
        buf = torch.empty(chunks[ri].shape, dtype=wire, device=flat.device)
        _wait(comm.exchange([("send", send, nxt), ("recv", buf, prv)], TAG_REDUCE))
        chunks[ri].add_(buf.to(flat.dtype))
    own = (r + 1) % p
    chunks[own].copy_(chunks[own].to(wire).to(flat.dtype))
    for s in range(p - 1):  # all-gather
        si, ri = (r + 1 - s) % p, (r - s) % p
        send = chunks[si].to(wire).contiguous()
        buf = torch.empty(chunks[ri].shape, dtype=wire, device=flat.device)
        _wait(comm.exchange([("send", send, nxt), ("recv", buf, prv)], TAG_REDUCE))
        chunks[ri].copy_(buf.to(flat.dtype))
    return flat.view_as(tensor)


class _ReduceForward(torch.autograd.Function):  # Megatron's g: all-reduce forward, identity backward
    @staticmethod
    def forward(ctx, t, comm, wire):
        return ring_all_reduce(t, comm=comm, wire_dtype=wire)

    @staticmethod
    def backward(ctx, g):
        return g, None, None


class _ReduceBackward(torch.autograd.Function):  # Megatron's f: identity forward, all-reduce backward
    @staticmethod
    def forward(ctx, t, comm, wire):
        ctx.comm, ctx.wire = comm, wire
        return t.clone()

    @staticmethod
    def backward(ctx, g):
        return ring_all_reduce(g.contiguous(), comm=ctx.comm, wire_dtype=ctx.wire), None, None


def _heads_attention(q, k, v, causal, scale):
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    if causal:
        n = q.shape[-2]
        s = s.masked_fill(~torch.ones(n, n, dtype=torch.bool, device=q.device).tril(), float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1), v)


def tp_attention(x, w_qkv, w_o, heads: int, group=None, *, causal: bool = False, comm: P2P | None = None,
                 wire_dtype=None, scale=None):
    """Tensor-parallel multi-head attention on this rank: its heads' share of the work, then one ring
    all-reduce of the output (and, with autograd, one of the input's gradient).

    x [B, S, d_model] (replicated), w_qkv [d_model, 3 * heads * head_dim] (Q, K, V columns, head by
    head), w_o [heads * head_dim, d_model]: the whole weights; rank r takes the columns and rows of
    heads r*H/p .. (r+1)*H/p - 1. Returns y [B, S, d_model], the same on every rank."""
    comm = comm or P2P(group)
    p, r = comm.size, comm.rank
    if heads % p:
        raise ValueError(f"tp={p} does not divide {heads} heads")
    hd = w_qkv.shape[1] // (3 * heads)
    if w_qkv.shape[1] != 3 * heads * hd or w_o.shape[0] != heads * hd:
        raise ValueError("w_qkv [d_model, 3*heads*head_dim], w_o [heads*head_dim, d_model]")
    hl = heads // p
    cols = slice(r * hl * hd, (r + 1) * hl * hd)
    scale = hd ** -0.5 if scale is None else scale
    xin = _ReduceBackward.apply(x, comm, wire_dtype) if torch.is_grad_enabled() and x.requires_grad else x
    b, s, _ = x.shape

    def heads_of(w):
        return torch.matmul(xin, w).view(b, s, hl, hd).transpose(1, 2)
    q, k, v = (heads_of(w_qkv[:, j * heads * hd:(j + 1) * heads * hd][:, cols]) for j in range(3))
    o = _heads_attention(q, k, v, causal, scale).transpose(1, 2).reshape(b, s, hl * hd)
    partial = torch.matmul(o, w_o[cols])
    return _ReduceForward.apply(partial, comm, wire_dtype)


# -- single-process references --------------------------------------------------------------------

def reference_attention(q, k, v, causal: bool = False, scale=None):
    """Softmax attention of the whole sequence in one process: q [B, H, S, D], k, v [B, Hkv, S, D]."""
    g = q.shape[1] // k.shape[1]
    return _heads_attention(q, _expand(k, g), _expand(v, g), causal, q.shape[-1] ** -0.5 if scale is None else scale)


def reference_tp_attention(x, w_qkv, w_o, heads: int, causal: bool = False, scale=None):
    b, s, _ = x.shape
    hd = w_qkv.shape[1] // (3 * heads)
    q, k, v = (torch.matmul(x, w_qkv[:, j * heads * hd:(j + 1) * heads * hd]).view(b, s, heads, hd).transpose(1, 2)
               for j in range(3))
    o = _heads_attention(q, k, v, causal, hd ** -0.5 if scale is None else scale)
    return torch.matmul(o.transpose(1, 2).reshape(b, s, heads * hd), w_o)


# -- the model's bytes -----------------------------------------------------------------------------

def _field(c, name):
    return c[name] if isinstance(c, dict) else getattr(c, name)


def model_bytes_sent_per_rank(collectives) -> int | float:
    """What one rank sends (and, the algorithms being symmetric, receives) for the model's collectives
    (`ParallelPrediction.collectives`: dicts, or `ops.Collective`s), n = `bytes`, p = `group_size`:

        p2p                                        n x count        (n: what one rank sends per call)
        all_reduce (ring: reduce-scatter, all-gather)  2(p-1)/p x n x count
        all_gather, reduce_scatter, all_to_all     (p-1)/p x n x count

    The ring algorithms' traffic, whatever the link (an in-switch reduction moves the bytes otherwise;
    the rank still hands the same buffer pieces over). A group of one sends nothing. Exact (a
    Fraction): an int when whole, else a float."""
    total = Fraction(0)
    for c in collectives:
        op, n, p, count = (_field(c, k) for k in ("op", "bytes", "group_size", "count"))
        if op not in COLLECTIVE_OPS:
            raise ValueError(f"unknown collective {op!r}; allowed: {', '.join(COLLECTIVE_OPS)}")
        if p <= 1:
            continue
        factor = {"p2p": Fraction(1), "all_reduce": Fraction(2 * (p - 1), p)}.get(op, Fraction(p - 1, p))
        total += factor * Fraction(n) * count
    return int(total) if total.denominator == 1 else float(total)


# -- engine cases: inputs, the per-rank run, the comparison ------------------------------------------

@dataclass(frozen=True)
class EngineCase:
    """One run on the engine. `scheme` "cp" (ring attention) or "tp"; shapes as `predict_parallel`
    takes them; `dtype` the model's (and the wire's, unless `wire` is "fp64": float64 transfers, the
    exactness run); `train`: forward and backward. Every rank computes in float64."""
    scheme: str
    causal: bool = False
    zigzag: bool = True
    train: bool = False
    wire: str = "model"  # "model": buffers in `dtype`; "fp64": buffers in float64
    batch: int = 2
    seqlen: int = 24
    heads: int = 4
    kv_heads: int | None = None
    head_dim: int = 8
    dtype: str = "fp16"
    seed: int = 0

    @property
    def wire_dtype(self):
        return TORCH_DTYPES["fp64" if self.wire == "fp64" else self.dtype]

    @property
    def zig(self) -> bool:
        return self.causal and self.zigzag

    def label(self) -> str:
        mode = "dense" if not self.causal else ("causal zigzag" if self.zig and self.scheme == "cp" else "causal")
        kv = f"/{self.kv_heads}" if self.kv_heads else ""
        return (f"{self.scheme} {mode} {'train' if self.train else 'fwd'} b{self.batch} s{self.seqlen} "
                f"h{self.heads}{kv} d{self.head_dim} wire {self.wire if self.wire == 'fp64' else self.dtype}")

    def variant(self) -> str:
        return "gqa" if self.kv_heads and self.kv_heads != self.heads else "mha"

    def shapes(self) -> dict:
        out = dict(batch=self.batch, seqlen=self.seqlen, heads=self.heads, head_dim=self.head_dim, dtype=self.dtype,
                   causal=self.causal, phase="train" if self.train else "prefill")
        if self.variant() == "gqa":
            out["kv_heads"] = self.kv_heads
        return out


def grid_tensor(gen, *shape, steps: int = 32, span: int = 2):
    """float64 values k/steps, |k| <= span*steps: exactly representable in fp16 and bf16 (8 bits)."""
    return torch.randint(-span * steps, span * steps + 1, shape, generator=gen, dtype=torch.int64).double() / steps


def case_inputs(case: EngineCase) -> dict:
    """The whole problem's float64 inputs, the same on every rank (a seeded CPU generator)."""
    g = torch.Generator().manual_seed(case.seed)
    b, s, h, d = case.batch, case.seqlen, case.heads, case.head_dim
    if case.scheme == "cp":
        hkv = case.kv_heads or h
        return {"q": grid_tensor(g, b, h, s, d), "k": grid_tensor(g, b, hkv, s, d), "v": grid_tensor(g, b, hkv, s, d),
                "dout": grid_tensor(g, b, h, s, d)}
    dm = h * d
    return {"x": grid_tensor(g, b, s, dm), "w_qkv": grid_tensor(g, dm, 3 * dm) / 4, "w_o": grid_tensor(g, dm, dm) / 4,
            "dy": grid_tensor(g, b, s, dm)}


def engine_worker(rank: int, world: int, cases) -> list:
    """Run each `EngineCase` on this rank (under `launch`); per case: this rank's outputs (ring: its
    shard; tp: the whole output) and gradients, and its `ByteCount` (forward, and backward when
    `train`) as a dict."""
    device = torch.device("cuda", torch.cuda.current_device()) if str(dist.get_backend()) == "nccl" else "cpu"
    results = []
    for case in cases:
        t = {k: v.to(device) for k, v in case_inputs(case).items()}
        comm = P2P()
        res = {}
        if case.scheme == "cp":
            q, k, v, do = (shard_sequence(t[n], rank, world, case.zig) for n in ("q", "k", "v", "dout"))
            out, lse = ring_attention_forward(q, k, v, case.causal, case.zigzag, comm=comm, wire_dtype=case.wire_dtype)
            res["out"] = out.cpu()
            res["fwd"] = dict(comm.count.as_dict())
            if case.train:
                dq, dk, dv = ring_attention_backward(do, q, k, v, out, lse, case.causal, case.zigzag, comm=comm,
                                                     wire_dtype=case.wire_dtype)
                res.update(dq=dq.cpu(), dk=dk.cpu(), dv=dv.cpu())
                # the autograd wrapper (its own P2P, not counted) gives the same, bit for bit
                qa, ka, va = (x.clone().requires_grad_() for x in (q, k, v))
                oa = ring_attention(qa, ka, va, case.causal, case.zigzag, wire_dtype=case.wire_dtype)
                oa.backward(do)
                res["autograd_equal"] = bool(torch.equal(oa.detach(), out) and torch.equal(qa.grad, dq)
                                             and torch.equal(ka.grad, dk) and torch.equal(va.grad, dv))
        elif case.scheme == "tp":
            x, wq, wo = (t[n].clone().requires_grad_(case.train) for n in ("x", "w_qkv", "w_o"))
            y = tp_attention(x, wq, wo, case.heads, causal=case.causal, comm=comm, wire_dtype=case.wire_dtype)
            res["out"] = y.detach().cpu()
            res["fwd"] = dict(comm.count.as_dict())
            if case.train:
                y.backward(t["dy"])
                res.update(dx=x.grad.cpu(), dw_qkv=wq.grad.cpu(), dw_o=wo.grad.cpu())
        else:
            raise ValueError(f"scheme {case.scheme!r}; allowed: cp, tp")
        res["count"] = comm.count.as_dict()
        results.append(res)
    return results


def case_reference(case: EngineCase) -> dict:
    """The single-process float64 reference: the output and (train) float64 autograd's gradients."""
    t = {k: v.clone().requires_grad_(k not in ("dout", "dy")) for k, v in case_inputs(case).items()}
    if case.scheme == "cp":
        out = reference_attention(t["q"], t["k"], t["v"], case.causal)
        grads = torch.autograd.grad(out, (t["q"], t["k"], t["v"]), t["dout"]) if case.train else ()
        return {"out": out.detach(), **dict(zip(("dq", "dk", "dv"), grads))}
    y = reference_tp_attention(t["x"], t["w_qkv"], t["w_o"], case.heads, case.causal)
    grads = torch.autograd.grad(y, (t["x"], t["w_qkv"], t["w_o"]), t["dy"]) if case.train else ()
    return {"out": y.detach(), **dict(zip(("dx", "dw_qkv", "dw_o"), grads))}


def case_model_bytes(case: EngineCase, world: int, cluster: str = "8xh100-nvlink") -> int | float:
    """The model's per-rank bytes for the case (`predict_parallel` with the case's shapes)."""
    from attnsim.simulator.parallel import Scheme, predict_parallel
    scheme = Scheme(cp=world, zigzag=case.zigzag) if case.scheme == "cp" else Scheme(tp=world)
    pp = predict_parallel(cluster, scheme, case.variant(), None, **case.shapes())
    return model_bytes_sent_per_rank(pp.collectives)


def _rel(a, b) -> float:
    scale = float(b.abs().max()) or 1.0
    return float((a - b).abs().max()) / scale


def compare_case(case: EngineCase, results: list, index: int, cluster: str = "8xh100-nvlink") -> dict:
    """One case against the float64 reference and the model. `results`: `launch(engine_worker, ...)`'s
    per-rank lists; `index`: the case's position. Returns {label, errors: {name: max |a-b| / max |ref|},
    sent, recv, sends, recvs (per rank: bytes and calls), fwd_sent (the forward's bytes), model_bytes
    (per rank, in the case's wire dtype), bytes_equal}."""
    world = len(results)
    per = [r[index] for r in results]
    ref = case_reference(case)
    errors = {}
    if case.scheme == "cp":
        for name in ("out", "dq", "dk", "dv"):
            if name in per[0]:
                errors[name] = _rel(unshard_sequence([p[name] for p in per], case.zig), ref[name])
    else:
        errors["out"] = max(_rel(p["out"], ref["out"]) for p in per)
        if case.train:
            errors["dx"] = max(_rel(p["dx"], ref["dx"]) for p in per)
            for name in ("dw_qkv", "dw_o"):  # each rank's gradient holds its heads' slice; their sum is the whole
                errors[name] = _rel(sum(p[name] for p in per), ref[name])
    model = case_model_bytes(case, world, cluster)
    if case.wire == "fp64":
        from attnsim.simulator.dtypes import DTYPE_BYTES
        model = model * 8 // DTYPE_BYTES[case.dtype] if isinstance(model, int) else model * 8 / DTYPE_BYTES[case.dtype]
    sent = [p["count"]["sent_bytes"] for p in per]
    recv = [p["count"]["recv_bytes"] for p in per]
    return {"label": case.label(), "ranks": world, "errors": errors, "sent": sent, "recv": recv,
            "sends": [p["count"]["sends"] for p in per], "recvs": [p["count"]["recvs"] for p in per],
            "fwd_sent": [p["fwd"]["sent_bytes"] for p in per],
            "autograd_equal": all(p.get("autograd_equal", True) for p in per),
            "model_bytes": model, "bytes_equal": all(x == model for x in sent + recv)}


def default_cases(train: bool = True) -> list:
    """Ring attention (dense, causal, causal zigzag; GQA), tensor parallel; each in the model's wire
    dtype (fp16) and in float64."""
    out = []
    for wire in ("model", "fp64"):
        for tr in ((False, True) if train else (False,)):
            for causal, zz in ((False, True), (True, False), (True, True)):
                out.append(EngineCase("cp", causal=causal, zigzag=zz, train=tr, wire=wire))
            out.append(EngineCase("cp", causal=True, zigzag=True, train=tr, wire=wire, heads=4, kv_heads=2, seed=1))
            out.append(EngineCase("tp", causal=True, train=tr, wire=wire, heads=12, head_dim=4, seed=2))
    return out


# -- the launcher ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_CTX = None


def _context():
    """The multiprocessing context: a fork server that has imported torch and this module (a clean
    process, like spawn, at a fraction of spawn's cost), else spawn."""
    global _CTX
    if _CTX is None:
        import torch.multiprocessing as mp
        try:
            ctx = mp.get_context("forkserver")
            # torch.fx's symbolic shapes (sympy): what autograd's backward imports on first use, seconds a process
            ctx.set_forkserver_preload(["torch", "torch.distributed", "torch.fx.experimental.symbolic_shapes",
                                        "torch.nested._internal.nested_tensor", __name__])
        except ValueError:
            ctx = mp.get_context("spawn")
        _CTX = ctx
    return _CTX


def _worker(rank, world, port, backend, timeout_s, threads, fn, args, kwargs, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    if backend == "gloo" and "GLOO_SOCKET_IFNAME" not in os.environ and os.path.exists("/sys/class/net/lo"):
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # every rank on this host: loopback, whatever the hostname says
    ok = False
    try:
        if threads:
            torch.set_num_threads(threads)
        if backend == "nccl":
            torch.cuda.set_device(rank % max(1, torch.cuda.device_count()))
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s))
        result = fn(rank, world, *args, **kwargs)
        out.put((rank, "ok", pickle.dumps(result)))
        ok = True
    except BaseException:  # noqa: BLE001 - everything goes back to the parent
        try:
            out.put((rank, "error", traceback.format_exc()))
        except Exception:
            pass
    if ok:
        try:
            dist.barrier()  # no rank closes its connections while another still receives
            dist.destroy_process_group()
        except Exception:
            pass
    sys.stdout.flush()


def _terminate(procs):
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(2)
        if p.is_alive():
            p.kill()
            p.join(2)


def _run_once(fn, world, args, kwargs, backend, timeout_s, threads, grace_s):
    ctx = _context()
    port = free_port()
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, world, port, backend, timeout_s, threads, fn, args, kwargs, q),
                         daemon=True) for r in range(world)]
    results, errors, dead = {}, {}, {}
    deadline = time.monotonic() + timeout_s
    first_error = None

    def take(block_s):
        nonlocal first_error
        try:
            rank, status, payload = q.get(timeout=block_s)
        except queue_mod.Empty:
            return False
        if status == "ok":
            results[rank] = pickle.loads(payload)
        else:
            errors[rank] = payload
            first_error = first_error or time.monotonic()
        return True

    try:
        for p in procs:
            p.start()
        while True:
            pending = [r for r in range(world) if r not in results and r not in errors and r not in dead]
            if not pending:
                break
            if take(0.05):
                continue
            exited = [r for r in pending if procs[r].exitcode is not None]
            if exited:
                while take(0.5):  # a last report may still be in the pipe
                    pass
                for r in exited:
                    if r not in results and r not in errors:
                        dead[r] = procs[r].exitcode
                        first_error = first_error or time.monotonic()
            now = time.monotonic()
            if (first_error is not None and now - first_error > grace_s) or now > deadline:
                break
        if len(results) == world:  # every rank done: let them leave the barrier and close cleanly
            end = time.monotonic() + 5
            for p in procs:
                p.join(max(0.0, end - time.monotonic()))
    finally:
        _terminate(procs)
        q.close()
        q.join_thread()
    if errors or dead:  # in the order they came: the first is most likely the cause
        lines = [f"rank {r} of {world} failed:\n{errors[r].rstrip()}" for r in errors]
        lines += [f"rank {r} of {world} exited with code {c} without a result" for r, c in sorted(dead.items())]
        waiting = sorted(set(range(world)) - set(results) - set(errors) - set(dead))
        if waiting:
            lines.append(f"ranks {waiting} were stopped (waiting on the failed rank)")
        raise DistributedError("\n".join(lines))
    if len(results) < world:
        missing = sorted(set(range(world)) - set(results))
        raise DistributedError(f"timed out after {timeout_s:g} s: ranks {missing} of {world} gave no result "
                               f"(a deadlock, or a rank waiting on one that never sent)")
    return [results[r] for r in range(world)]


def launch(fn, world_size: int, args=(), kwargs=None, *, backend: str = "gloo", timeout_s: float = 60.0,
           threads: int | None = 1, grace_s: float = 2.0, retries: int = 2) -> list:
    """Run ``fn(rank, world_size, *args, **kwargs)`` on `world_size` processes, one rank each, joined
    in a process group of `backend` (gloo: CPU; nccl: GPU `rank`) over 127.0.0.1 and a free port;
    returns the results by rank. `fn` must be importable by name (a module-level function) and its
    result picklable. `threads`: torch threads a rank (1: P ranks on P cores). Raises
    `DistributedError` when a rank raises or dies (the others are stopped `grace_s` later) or when
    `timeout_s` passes; a port taken in between is retried `retries` times on a fresh port."""
    if world_size < 1:
        raise ValueError(f"world_size={world_size}; expected >= 1")
    if not dist.is_available():
        raise DistributedError("torch.distributed is not available in this torch build")
    if backend == "gloo" and not dist.is_gloo_available():
        raise DistributedError("this torch build has no gloo backend")
    if backend == "nccl" and (not dist.is_nccl_available() or torch.cuda.device_count() < world_size):
        raise DistributedError(f"nccl with {world_size} ranks needs {world_size} CUDA GPUs; "
                               f"{torch.cuda.device_count()} visible")
    for attempt in range(retries + 1):
        try:
            return _run_once(fn, world_size, tuple(args), dict(kwargs or {}), backend, timeout_s, threads, grace_s)
        except DistributedError as e:
            if attempt < retries and ("address already in use" in str(e).lower() or "EADDRINUSE" in str(e)):
                continue
            raise
    raise AssertionError("unreachable")


# -- the collective micro-benchmark ----------------------------------------------------------------

COLLECTIVE_KIND = "collective"
BENCH_OPS = ("all_reduce", "all_to_all", "p2p")
DEFAULT_SIZES = tuple(1 << k for k in range(12, 27, 2))  # 4 KiB .. 64 MiB


def _bench_worker(rank, world, ops, sizes, repeats, warmup):
    cuda = str(dist.get_backend()) == "nccl"
    dev = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    comm = P2P()
    rows = []
    for op in ops:
        if op == "p2p" and world < 2:
            continue
        for n in sizes:
            elems = max(world, n // 4 // world * world)  # float32 elements, a multiple of the ranks (all-to-all)
            buf = torch.zeros(elems, dtype=torch.float32, device=dev)
            other = torch.empty_like(buf)

            if op == "all_reduce":
                def run():
                    dist.all_reduce(buf)
            elif op == "all_to_all":
                def run():
                    dist.all_to_all_single(other, buf)
            elif op == "p2p":
                def run():
                    _wait(comm.exchange([("send", buf, (rank + 1) % world), ("recv", other, (rank - 1) % world)],
                                        TAG_BENCH))
            else:
                raise ValueError(f"op {op!r}; allowed: {', '.join(BENCH_OPS)}")
            for _ in range(warmup):
                run()
            sync()
            times = []
            for _ in range(repeats):
                dist.barrier()
                sync()
                t0 = time.perf_counter()
                run()
                sync()
                times.append(time.perf_counter() - t0)
            t = torch.tensor(times, dtype=torch.float64, device=dev)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)  # per repeat: the slowest rank's time
            rows.append({"op": op, "bytes": elems * 4, "times": t.cpu().tolist()})
    device = None
    if rank == 0:
        device = _gpu_device_block(dev) if cuda else cpu_device_block()
    return {"rows": rows, "device": device}


def _gpu_device_block(dev) -> dict:
    from .validate import TorchBackend, match_profile
    block = TorchBackend(device=dev).device()
    block["hw_key"] = match_profile(block["name"])
    block["type"] = "cuda"
    return block


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def cpu_device_block() -> dict:
    """The records' device block for a CPU run (the fields of ``attnsim validate``'s GPU block):
    `sm_count` holds the CPU count and `memory_bytes` the RAM; the GPU-only figures are null;
    ``"type": "cpu"`` says so."""
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        mem = None
    return {"name": f"CPU: {_cpu_name()}", "hw_key": None, "sm_count": os.cpu_count() or 1, "clock_max_hz": None,
            "memory_bytes": int(mem) if mem else 1, "l2_bytes": None, "driver": None, "cuda": None,
            "torch": str(torch.__version__), "triton": None, "cupy": None, "cc": None, "type": "cpu",
            "memory_known": bool(mem)}


def check_collective_record(record) -> dict:
    """`record` if it is a valid collective record, else `records.RecordError` (one line)."""
    return records.check_record(record)


def collective_record(*, op: str, nbytes: int, group_size: int, backend: str, device: dict, timing: dict,
                      link: str = "intra_node", prediction: dict | None = None, date: str | None = None,
                      **extra) -> dict:
    """A checked collective record::

        {"schema": "attnsim.measurement/1", "kind": "collective", "op": "all_reduce", "bytes": n,
         "group_size": p, "backend": "nccl", "link": "intra_node", "device": {...}, "timing": {...},
         "terms": {"bytes_factor", "latency_steps"}, "bandwidth": {"algbw_bytes_per_s", "busbw_bytes_per_s"},
         "prediction": {"cluster", "link", "time_s", "peak_time_s"} or null, "date", "attnsim_version"}

    `bytes` is the model's n (`ops.Collective`: all-reduce the tensor each rank holds, all-to-all what
    each rank holds before, p2p what one rank sends); `terms` the α–β formula's factors (t = steps x α
    + factor x n / bw); algbw = n / median, busbw = factor x n / median (the link's achieved bandwidth,
    latency included); `link` where the group runs (one host here: "intra_node")."""
    factor, steps = collective_coefficients(op, group_size)  # t = steps x α + factor x n / bw
    med = timing["median_s"]
    rec = {"schema": records.SCHEMA, "kind": COLLECTIVE_KIND, "op": op, "bytes": int(nbytes), "group_size": group_size,
           "backend": backend, "link": link, "device": device, "timing": timing,
           "terms": {"bytes_factor": factor, "latency_steps": steps},
           "bandwidth": {"algbw_bytes_per_s": nbytes / med, "busbw_bytes_per_s": factor * nbytes / med},
           "prediction": prediction, "date": date or records.utc_now(), "attnsim_version": records._version(),
           **extra}
    return check_collective_record(rec)


def append_collective_record(path, record: dict) -> str | None:
    """Check `record`, then append it to `path` (one fsynced line, as `records.append_record` does)."""
    return records.append_record(path, record)


def _prediction(cluster, op, nbytes, p) -> dict | None:
    if cluster is None:
        return None
    from attnsim.simulator.cluster import Cluster, load_cluster
    from attnsim.simulator.ops import Collective
    from attnsim.simulator.pricing import collective_time
    from attnsim.simulator.rates import link_rates
    cl = cluster if isinstance(cluster, Cluster) else load_cluster(cluster)
    name, lk = cl.link_for(p, 1)
    lr = link_rates(lk)
    c = Collective(name=op, op=op, bytes=float(nbytes), group_size=p, link=name)
    return {"cluster": cl.key, "link": name, "time_s": collective_time(c, lr),
            "peak_time_s": collective_time(c, lr, peak=True)}


def collective_benchmark(world_size: int = 2, backend: str = "gloo", sizes=DEFAULT_SIZES, ops=BENCH_OPS,
                         repeats: int = 20, warmup: int = 3, out=None, cluster=None, timeout_s: float = 300.0) -> list:
    """Time all-reduce (``dist.all_reduce``), all-to-all (``dist.all_to_all_single``) and p2p (a ring
    exchange: every rank sends n bytes to the next while it receives n from the previous, as ring
    attention does) on `world_size` ranks of `backend` (gloo: CPU processes; nccl: one GPU each), each
    size `repeats` times after `warmup` calls: per repeat, a barrier, then the wall-clock time of the
    call (CUDA synchronized), the slowest rank's. Returns the collective records (`collective_record`)
    and appends them to `out` when given. `cluster` (a name): each record's prediction on its link.
    Sizes are rounded down to a multiple of 4 x `world_size` bytes (float32 elements the all-to-all
    splits evenly); the records carry the bytes moved."""
    from .validate import timing_stats
    ops = tuple(ops)
    for op in ops:
        if op not in BENCH_OPS:
            raise ValueError(f"op {op!r}; allowed: {', '.join(BENCH_OPS)}")
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    res = launch(_bench_worker, world_size, args=(ops, tuple(int(s) for s in sizes), repeats, warmup),
                 backend=backend, timeout_s=timeout_s)
    device = res[0]["device"]
    method = (f"wall clock (time.perf_counter) around each call after a barrier"
              f"{', torch.cuda.synchronize before and after' if backend == 'nccl' else ''}; the slowest rank's "
              f"time per repeat; {warmup} warm-up calls; float32 buffers")
    out_records = []
    for row in res[0]["rows"]:
        extra = {"dtype": "fp32", "ranks_per_host": world_size}
        if row["op"] == "p2p":
            extra["pattern"] = "ring exchange: each rank sends n bytes to the next and receives n from the previous"
        rec = collective_record(op=row["op"], nbytes=row["bytes"], group_size=world_size, backend=backend,
                                device=device, timing=timing_stats(row["times"], method),
                                prediction=_prediction(cluster, row["op"], row["bytes"], world_size), **extra)
        if out is not None:
            append_collective_record(out, rec)
        out_records.append(rec)
    return out_records


from .links import calibrate_link, link_rows  # noqa: E402,F401  (the record-based fit lives with the fit)


# -- command line: the engine cases on this machine -------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m attnsim.validation.distributed",
                                 description="Ring and tensor-parallel attention on torch.distributed against the "
                                             "float64 reference and the model's byte counts.")
    ap.add_argument("--ranks", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--backend", default="gloo", choices=("gloo", "nccl"))
    ap.add_argument("--cluster", default="8xh100-nvlink", help="the cluster whose model counts the bytes")
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args(argv)
    cases = default_cases()
    bad = 0
    for world in a.ranks:
        res = launch(engine_worker, world, args=(cases,), backend=a.backend, timeout_s=a.timeout)
        for i, c in enumerate(cases):
            rep = compare_case(c, res, i, a.cluster)
            errs = " ".join(f"{k} {v:.1e}" for k, v in rep["errors"].items())
            ok = rep["bytes_equal"]
            bad += not ok
            print(f"P={world} {rep['label']:<52} {errs:<52} sent {rep['sent'][0]:>7} B/rank, model "
                  f"{rep['model_bytes']:>7} {'=' if ok else '!='}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
