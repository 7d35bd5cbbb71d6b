"""Collective micro-benchmark: all-reduce, all-to-all and p2p (a ring exchange) over sizes, on gloo
processes on the CPU (default) or one GPU a rank with NCCL; prints the figures and, with --out, appends
measurement records (kind "collective", `attnsim.validation.distributed.collective_record`).

    python benchmarks/bench_collectives.py                                # 2 gloo ranks on this CPU
    python benchmarks/bench_collectives.py --backend nccl --out links.jsonl --cluster 8xh100-nvlink

--cluster adds the model's time for each size on that cluster's link, and the link's calibration
(`validation.links.fit_link`: the achieved bandwidth fraction and per-step latency α, the
`LinkCalibration` for that link) fitted to the measurements. Nothing is written unless --out names a
file.
"""
from __future__ import annotations

import argparse
import re
import sys

UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
         "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in UNITS:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected a byte count such as 4096, 64K or 16M")
    n = int(m.group(1)) * UNITS[m.group(2).lower()]
    if n < 1:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected at least one byte")
    return n


def parse_sizes(text: str) -> list:
    return [parse_size(t) for t in text.split(",") if t.strip()]


def _gbs(x: float) -> str:
    return f"{x / 1e9:9.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="gloo", choices=("gloo", "nccl"),
                    help="gloo: CPU processes; nccl: one CUDA GPU a rank [default: gloo]")
    ap.add_argument("--ranks", type=int, default=None,
                    help="processes [default: 2 for gloo; every visible GPU for nccl]")
    ap.add_argument("--sizes", type=parse_sizes, default=None,
                    help="comma-separated byte counts, K/M/G suffixes allowed [default: 4K,16K,...,64M; "
                         "gloo: up to 4M]")
    ap.add_argument("--ops", default="all_reduce,all_to_all,p2p", help="comma-separated: all_reduce, all_to_all, p2p")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--cluster", default=None, help="a cluster profile: add its model times and a link fit")
    ap.add_argument("--out", default=None, help="append the records to this JSON Lines file")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds before the run is stopped")
    a = ap.parse_args(argv)

    try:
        import torch
    except ImportError as e:
        print(f"bench_collectives: torch is needed ({e})", file=sys.stderr)
        return 2
    from attnsim.validation import distributed as D

    if a.ranks is None:
        a.ranks = torch.cuda.device_count() if a.backend == "nccl" else 2
    if a.ranks < 1:
        print(f"bench_collectives: --ranks {a.ranks}; expected >= 1 (nccl: GPUs visible)", file=sys.stderr)
        return 2
    sizes = a.sizes or [s for s in D.DEFAULT_SIZES if a.backend == "nccl" or s <= 4 << 20]
    ops = [o.strip() for o in a.ops.split(",") if o.strip()]
    try:
        recs = D.collective_benchmark(a.ranks, a.backend, sizes=sizes, ops=ops, repeats=a.repeats, warmup=a.warmup,
                                      out=a.out, cluster=a.cluster, timeout_s=a.timeout)
    except (D.DistributedError, ValueError) as e:
        print(f"bench_collectives: {e}", file=sys.stderr)
        return 1
    if not recs:
        print("bench_collectives: nothing measured (p2p needs 2 ranks or more)", file=sys.stderr)
        return 1
    dev = recs[0]["device"]["name"]
    print(f"{a.backend} x {a.ranks} ranks on {dev}; {a.repeats} repeats, median (p10-p90)")
    print(f"{'op':<11} {'bytes':>10} {'median_us':>10} {'p10_us':>9} {'p90_us':>9} {'algbw_GB/s':>10} "
          f"{'busbw_GB/s':>10}" + (f" {'model_us':>9}" if a.cluster else ""))
    for r in recs:
        t, bw = r["timing"], r["bandwidth"]
        line = (f"{r['op']:<11} {r['bytes']:>10} {t['median_s'] * 1e6:>10.1f} {t['p10_s'] * 1e6:>9.1f} "
                f"{t['p90_s'] * 1e6:>9.1f} {_gbs(bw['algbw_bytes_per_s']):>10} {_gbs(bw['busbw_bytes_per_s']):>10}")
        if r.get("prediction"):
            line += f" {r['prediction']['time_s'] * 1e6:>9.1f}"
        print(line)
    if a.cluster:
        from attnsim.simulator.errors import AttnsimError
        try:
            fit = D.calibrate_link(recs, a.cluster)
        except AttnsimError as e:
            print(f"no link fit: {e}")
        else:
            c = fit.calibration
            print(f"link fit over {fit.rows} records ({a.cluster}): LinkCalibration(bandwidth={c.bandwidth:.3g}, "
                  f"latency_s={c.latency_s:.3g}), {fit.bandwidth_bytes_per_s / 1e9:.3f} GB/s achieved, "
                  f"in-sample error {fit.in_sample_mape:.1f}%")
    if a.out:
        print(f"appended {len(recs)} records to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
