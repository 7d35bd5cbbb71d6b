"""Scalar `predict` calls per second on one core (target >= 2,000 dense or causal calls/s), and the
vectorized `predict_many` for comparison.

    python benchmarks/bench_predict.py

Each call prices a different configuration: batch 1-16, lengths drawn from 256..32768 (distinct
lengths: no memo helps) or from eight lengths (a sweep's grid: the masks' memo of tile arrays serves
repeats), heads 8-64, head dim 64 or 128; the hardware's default family (FA3 on the H100, FA2 on
the A100) and Triton (36 autotune candidates per call). `compare=False` (the default): no dense
re-prediction for the speedup block, which `--json`/the CLI asks for.
"""
import time

import numpy as np

from attnsim import Workload, load_hardware, predict


def configs(rng, n, causal, distinct):
    lengths = rng.integers(256, 32769, n) if distinct else rng.choice([512, 1024, 2048, 3000, 4096, 8192, 16384,
                                                                        32768], n)
    return [Workload(batch=int(rng.integers(1, 17)), seqlen_q=int(lengths[i]), heads_q=int(rng.choice([8, 16, 32, 64])),
                     head_dim_qk=int(rng.choice([64, 128])), causal=causal) for i in range(n)]


def rate(hw, fam, ws, repeats=3):
    predict(ws[0], hw, fam)  # imports and first-call setup out of the timing
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for w in ws:
            predict(w, hw, fam)
        best = min(best, time.perf_counter() - t0)
    return len(ws) / best


def main(n=2000):
    rng = np.random.default_rng(0)
    for key, fam, m in (("h100", None, n), ("a100", None, n), ("h100", "triton", n // 10)):
        hw = load_hardware(key)
        for distinct in (True, False):
            cells = []
            for causal in (False, True):
                cells.append(f"{'causal' if causal else 'dense'} {rate(hw, fam, configs(rng, m, causal, distinct)):,.0f}/s")
            print(f"predict {key} {fam or hw.default_kernel + ' (default)':<15} "
                  f"{'distinct lengths' if distinct else 'eight lengths   '}: " + " · ".join(cells)
                  + ("  (target >= 2,000/s)" if fam is None else ""))


if __name__ == "__main__":
    main()
