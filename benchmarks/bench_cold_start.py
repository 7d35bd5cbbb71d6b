"""Cold start of `attnsim predict`: process start to exit, median of 10 runs (target <= 0.3 s).

Run: python benchmarks/bench_cold_start.py  (uses the `attnsim` next to this Python, else on PATH)
"""
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main(runs=10):
    exe = Path(sys.executable).with_name("attnsim")
    cmd = [str(exe)] if exe.exists() else [shutil.which("attnsim") or "attnsim"]
    cmd += ["predict", "--hw", "h100", "--seqlen", "8192", "--causal"]
    subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    print(f"attnsim predict cold start: median {statistics.median(times):.3f} s, min {min(times):.3f} s "
          f"over {runs} runs (target <= 0.3 s)")


if __name__ == "__main__":
    main()
