"""Design-search throughput (issue 14's targets): 10,000 GNA candidates in <= 2 s on one core (every stride of
the 30x48x80 video grid with an 18x24x24 window: 10,368 candidates), and the same example with every stride and
every legal power-of-two tile pair (11.6 million candidates) in <= 30 s; plus the GNA paper's 1-D example.

    python benchmarks/bench_search.py [--quick]     (--quick: skips the 11.6-million-candidate search)
"""
from __future__ import annotations

import argparse
import resource
import time

from attnsim.simulator import search as Q


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip the full tile-pair search (5 GB, ~30 s)")
    a = ap.parse_args(argv)
    video = {"token_shape": "30x48x80", "kernel_size": "18x24x24"}
    cases = [("1-D 32K tokens, 2K window: every stride", {"token_shape": "32768", "kernel_size": "2048"},
              {"stride": None}),
             ("3-D 30x48x80, 18x24x24 window: every stride", video, {"stride": None})]
    if not a.quick:
        cases.append(("3-D 30x48x80, 18x24x24 window: every stride x every power-of-two tile pair", video,
                      {"stride": None, "q_tile": None, "kv_tile": None}))
    for label, fixed, vary in cases:
        spec = Q.Spec(variant="gna", hardware="b200", vary=vary, fixed=fixed, workload={"heads": 24})
        t = time.perf_counter()
        res = Q.run(spec, force=True)
        dt = time.perf_counter() - t
        print(f"{label}: {res.evaluated:,} candidates in {dt:.2f} s ({dt / max(res.evaluated, 1) * 1e6:.1f} us each); "
              f"smallest block-sparse stride {res.fully_block_sparse_min_stride}; best "
              f"{res.candidates[0]['params']} at {res.candidates[0]['time_s'] * 1e3:.3f} ms")
    print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")


if __name__ == "__main__":
    main()
