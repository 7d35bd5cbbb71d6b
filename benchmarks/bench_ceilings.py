"""Measure the hardware ceilings (HBM copy, cuBLAS GEMM fp16/fp32, exp, L2 read) on the GPU in hand.

Prints one line per figure; with ``--out FILE.jsonl`` also appends one JSON record per figure (the
dict ``attnsim.kernels.microbench`` returns). Without a CUDA device (or without CuPy) it prints
"no GPU: nothing measured" and exits 0. Run: python benchmarks/bench_ceilings.py [--out FILE.jsonl]
"""
import argparse

from attnsim.kernels import microbench
from attnsim.validation.records import append_jsonl


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", metavar="FILE.jsonl", help="append one JSON record per measurement")
    args = parser.parse_args(argv)
    if not microbench.gpu_present():
        print("no GPU: nothing measured")
        return 0
    records = microbench.run_all()
    for r in records:
        print(f"{r['what']:<28} {r['value']:.4g} {r['unit']:<8} (median {r['median_s'] * 1e3:.3f} ms of {r['reps']}) "
              f"on {r['device']}, CUDA runtime {r['cuda_runtime']}, CuPy {r['cupy']}")
    if args.out:
        append_jsonl(args.out, records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
