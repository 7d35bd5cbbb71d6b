"""The model against published FlashAttention throughputs (shared/reference/published_flashattention.csv).

Prints, per (GPU, kernel, direction): bound/measured (must stay <= 1: no real kernel beats the bound)
and predicted/measured for the kernels attnsim models (fa2, fa3, triton, eager), uncalibrated.
Run: python benchmarks/bench_published.py [path/to/published_flashattention.csv]
(without a path: $ATTNSIM_PUBLISHED_CSV, else the checkout's ../shared/reference/; see validation/published.py)
"""
import statistics
import sys
from collections import defaultdict

from attnsim.simulator.bound import bound
from attnsim.simulator.errors import AttnsimError
from attnsim.simulator.hardware import load_hardware
from attnsim.simulator.model import predict
from attnsim.validation.published import FAMILY, HARDWARE, load_published, published_time_s, workload_of


def main(path=None):
    rows = load_published(path)
    b_ratio, p_ratio = defaultdict(list), defaultdict(list)
    for r in rows:
        hw = load_hardware(HARDWARE[r["hardware"]])
        w = workload_of(r)
        measured = published_time_s(r)
        key = (r["hardware"], r["kernel"], r["direction"])
        b_ratio[key].append(bound(w, hw).time_s / measured)
        fam = FAMILY.get(r["kernel"])
        if fam:
            try:
                p_ratio[key].append(predict(w, hw, fam).time_s / measured)
            except AttnsimError:
                pass
    print(f"{'GPU':<16}{'kernel':<30}{'dir':<9}{'rows':>5}  {'bound/measured (min med max)':<30}"
          f"{'predicted/measured (min med max)'}")
    for key in sorted(b_ratio):
        b = b_ratio[key]
        p = p_ratio.get(key)
        ptxt = f"{min(p):.2f} {statistics.median(p):.2f} {max(p):.2f}" if p else "-"
        print(f"{key[0]:<16}{key[1]:<30}{key[2]:<9}{len(b):>5}  {min(b):.2f} {statistics.median(b):.2f} {max(b):.2f}"
              f"{'':<16}{ptxt}")
    worst = max(max(v) for v in b_ratio.values())
    print(f"largest bound/measured over {len(rows)} rows: {worst:.3f} (must be <= 1)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
