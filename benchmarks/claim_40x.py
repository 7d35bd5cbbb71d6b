"""What attnsim says of a published claim: "distributed multi-head attention ... can scale up attention
computation by almost 40x using four GeForce RTX 4090 GPUs, compared to vanilla multi-head attention"
(Hè and Kabic 2023, "A Unified View of Long-Sequence Models towards Modeling Million-Scale
Dependencies", arXiv 2302.06218, abstract).

Vanilla attention = eager attention (QK^T, softmax, PV as separate kernels, the score matrix in memory) on
one RTX 4090; distributed = fused attention (FlashAttention-2 class, `fa2`) as ring attention (`cp=4`) on
`4xrtx4090-pcie` (PCIe 4.0, no peer-to-peer: transfers staged through host memory). The speedup splits
exactly into three factors:

    eager (1 GPU) / ring (4 GPUs) = fusion x parallelism x communication
      fusion        = eager (1 GPU) / fused (1 GPU)
      parallelism   = fused (1 GPU) / per-rank compute of the ring (4 GPUs)
      communication = per-rank compute / (compute + exposed transfer)

and the capacity side: the longest sequence eager attention fits on one 24 GB card against the longest the
ring fits per card. Run: python benchmarks/claim_40x.py [--heads 16 --head-dim 64 --dtype fp16]
"""
from __future__ import annotations

import argparse

from attnsim import predict_variant
from attnsim.simulator.cluster import load_cluster
from attnsim.simulator.errors import AttnsimError
from attnsim.simulator.parallel import predict_parallel


def factors(seqlen: int, heads: int, head_dim: int, dtype: str, batch: int = 1, causal: bool = False) -> dict:
    sh = dict(batch=batch, seqlen=seqlen, heads=heads, head_dim=head_dim, dtype=dtype, causal=causal)
    eager = predict_variant("rtx4090", "mha", None, kernel="eager", **sh)
    fused = predict_variant("rtx4090", "mha", None, kernel="fa2", **sh)
    ring = predict_parallel("4xrtx4090-pcie", "cp=4", "mha", None, kernel="fa2", **sh)
    return {"seqlen": seqlen, "eager_s": eager.time_s, "eager_fits": eager.fits, "fused_s": fused.time_s,
            "ring_s": ring.time_s, "ring_compute_s": ring.compute_s, "ring_exposed_s": ring.exposed_comm_s,
            "ring_memory_per_gpu": ring.memory_bytes_per_gpu,
            "fusion": eager.time_s / fused.time_s, "parallelism": fused.time_s / ring.compute_s,
            "communication": ring.compute_s / ring.time_s, "total": eager.time_s / ring.time_s}


MAX_TOKENS = 1 << 24  # attnsim's limit of tokens per sequence


def longest(fits, lo: int = 1024, hi: int = MAX_TOKENS, step: int = 1024) -> int:
    """The longest multiple of `step` in [lo, hi] for which fits(seqlen) holds (fits is monotone)."""
    if not fits(lo):
        return 0
    if fits(hi):
        return hi
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def capacity(heads: int, head_dim: int, dtype: str) -> tuple:
    """(eager's longest, the ring's longest, whether the ring's is attnsim's pricing limit, not memory)."""
    sh = dict(batch=1, heads=heads, head_dim=head_dim, dtype=dtype)
    cap = load_cluster("4xrtx4090-pcie").device.hbm_capacity_bytes
    limited = []

    def priced(f):
        def g(L):
            try:
                return f(L)
            except AttnsimError:  # beyond what attnsim prices (tokens or FLOPs per call): not a memory verdict
                limited.append(L)
                return False
        return g
    eager = longest(priced(lambda L: predict_variant("rtx4090", "mha", None, kernel="eager", seqlen=L, **sh).fits))
    limited.clear()
    ring = longest(priced(lambda L: predict_parallel("4xrtx4090-pcie", "cp=4", "mha", None, kernel="fa2", seqlen=L,
                                                     **sh).memory_bytes_per_gpu <= cap), step=8192)
    return eager, ring, bool(limited) or ring >= MAX_TOKENS


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--dtype", default="fp16")
    ap.add_argument("--causal", action="store_true", help="causal attention (the ring with zigzag)")
    a = ap.parse_args(argv)
    print(f"eager on 1 x RTX 4090 vs ring attention (fa2, cp=4) on 4xrtx4090-pcie; batch 1, {a.heads} heads, "
          f"head dim {a.head_dim}, {a.dtype}, {'causal (zigzag ring)' if a.causal else 'non-causal'}")
    print(f"{'seqlen':>8} {'eager':>11} {'fused 1 GPU':>12} {'ring 4 GPUs':>12} {'exposed':>10}  "
          f"{'fusion':>6} {'x parallel':>10} {'x comm':>7} {'= total':>8}  eager fits")
    for L in (2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144):
        f = factors(L, a.heads, a.head_dim, a.dtype, causal=a.causal)
        print(f"{L:>8} {f['eager_s'] * 1e3:>9.3f}ms {f['fused_s'] * 1e3:>10.3f}ms {f['ring_s'] * 1e3:>10.3f}ms "
              f"{f['ring_exposed_s'] * 1e3:>8.3f}ms  {f['fusion']:>6.2f} {f['parallelism']:>10.2f} "
              f"{f['communication']:>7.2f} {f['total']:>8.2f}  {'yes' if f['eager_fits'] else 'NO (24 GB)'}")
    e, r, limited = capacity(a.heads, a.head_dim, a.dtype)
    at_least = "at least " if limited else ""
    print(f"longest sequence: eager on one card {e:,} tokens; ring attention on four cards {at_least}{r:,} tokens "
          f"({at_least}{r / e:.0f}x{'; longer calls are beyond what attnsim prices' if limited else ''})")


if __name__ == "__main__":
    main()
