"""Sweep throughput: a 1,000,000-configuration dense/causal sweep end to end (pricing and writing) to CSV,
then Parquet; then a 10,000-row workbook (XLSX with live formulas). Targets (issue 13): CSV in <= 10 s on
one core, Parquet faster, XLSX of 10,000 rows in <= 10 s.

    python benchmarks/bench_sweep.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="62,500 rows instead of 1,000,000")
    a = ap.parse_args(argv)
    # gqa with 8 or 32 kv heads x 4 head counts x 2 dtypes x 2 GPUs x causal both x 125 batches x 125 lengths
    # = 2 x 4 x 2 x 2 x 2 x 15,625 = 1,000,000 (--quick: 31 x 32 lengths, 63,488)
    batch, seqlen = ("1..125:1", "256..32000:256") if not a.quick else ("1..31:1", "512..16384:512")
    with tempfile.TemporaryDirectory() as d:
        for ext in ("csv", "parquet"):
            out = os.path.join(d, f"sweep.{ext}")
            cmd = [sys.executable, "-c", "from attnsim.cli import main; main()", "sweep", "--variant", "gqa", "--hw", "h100,b200",
                   "--causal", "both", "--batch", batch, "--seqlen", seqlen, "--heads", "32,64,96,128",
                   "--kv-heads", "8,32", "--dtype", "bf16,fp16", "-o", out]
            t = time.perf_counter()
            subprocess.run(cmd, check=True, stderr=subprocess.PIPE)
            dt = time.perf_counter() - t
            rows = sum(1 for _ in open(out)) - 1 if ext == "csv" else None
            size = os.path.getsize(out)
            print(f"{ext:<8} {dt:6.2f} s end to end  ({size / 2**20:.1f} MiB" + (f", {rows:,} rows" if rows else "")
                  + ")")
        # the workbook: gqa x 2 GPUs x causal both x 25 batches x 100 lengths = 10,000 rows (--quick: 1,000)
        out = os.path.join(d, "whatif.xlsx")
        cmd = [sys.executable, "-c", "from attnsim.cli import main; main()", "sweep", "--variant", "gqa", "--hw", "h100,b200",
               "--causal", "both", "--batch", "1..25:1" if not a.quick else "1..5:1",
               "--seqlen", "256..25600:256" if not a.quick else "512..25600:512", "-o", out]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stderr=subprocess.PIPE)
        dt = time.perf_counter() - t
        rows = 2 * 2 * (25 * 100 if not a.quick else 5 * 50)
        print(f"{'xlsx':<8} {dt:6.2f} s end to end  ({os.path.getsize(out) / 2**20:.1f} MiB, {rows:,} rows; "
              f"{dt / rows * 1e3:.2f} ms a row)")


if __name__ == "__main__":
    main()
