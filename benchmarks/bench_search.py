"""Design-search throughput: GNA candidates priced per second (issue 14's targets: 10,000 GNA candidates in
<= 2 s on one core; every stride and power-of-two tile pair of the 30x48x80 example in <= 30 s).

    python benchmarks/bench_search.py [--quick]
"""
from __future__ import annotations

import argparse
import time

from attnsim.simulator import search as Q


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer candidates")
    a = ap.parse_args(argv)
    cases = [("1-D 32K tokens, 2K window, every stride", "b200", {"token_shape": "32768", "kernel_size": "2048"},
              {"stride": None}, 512 if a.quick else 2048),
             ("3-D 30x48x80, 18x24x24 window, strides", "b200", {"token_shape": "30x48x80", "kernel_size": "18x24x24"},
              {"stride": None}, 200 if a.quick else 1000)]
    for label, hw, fixed, vary, limit in cases:
        spec = Q.Spec(variant="gna", hardware=hw, vary=vary, fixed=fixed, workload={"heads": 24})
        names, values = Q.combinations(spec)
        spec.vary = {names[0]: values[0][:limit]}
        t = time.perf_counter()
        res = Q.run(spec)
        dt = time.perf_counter() - t
        print(f"{label}: {res.evaluated:,} candidates in {dt:.2f} s ({dt / max(res.evaluated, 1) * 1e3:.2f} ms each; "
              f"10,000 would take {dt / max(res.evaluated, 1) * 1e4:.0f} s); smallest block-sparse stride "
              f"{res.fully_block_sparse_min_stride}")


if __name__ == "__main__":
    main()
