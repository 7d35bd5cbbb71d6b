"""Throughput of the vectorized prediction over >= 1,000,000 dense/causal prefill configurations.

Prints configurations per second on one core (target: >= 1e6/s). Run: python benchmarks/bench_vectorized.py
"""
import os
import time

import numpy as np

from attnsim import load_hardware, predict_many


def main(n=1_000_000, repeats=3):
    rng = np.random.default_rng(0)
    hw = load_hardware("h100")
    batch = rng.integers(1, 17, n)
    seqlen = rng.integers(128, 32769, n)
    heads = rng.choice([8, 16, 32, 64], n)
    head_dim = rng.choice([64, 128], n)
    causal = rng.integers(0, 2, n).astype(bool)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = predict_many(hw, "fa3", batch=batch, seqlen_q=seqlen, heads_q=heads, head_dim_qk=head_dim, causal=causal)
        best = min(best, time.perf_counter() - t0)
    assert np.isfinite(out["time_s"]).all() and (out["time_s"] >= out["bound_s"]).all()
    print(f"vectorized prefill (fa3, h100, dense+causal, d in {{64,128}}): {n:,} configurations in {best:.3f} s "
          f"-> {n / best:,.0f} configurations/s (best of {repeats}; target >= 1,000,000/s); "
          f"threads: OMP/OPENBLAS env = {os.environ.get('OMP_NUM_THREADS', 'unset')}")


if __name__ == "__main__":
    main()
