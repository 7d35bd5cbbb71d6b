"""Wall time of `attnsim predict` for the data-dependent and block-selection masks (issue 9: every
such prediction answers in about 1 s, or is refused up front with a stated limit).

The worst cases: Triton's training tile search (it prices the most tile shapes, forward and
backward), causal and not, on H100 and A100, for sparse / topk / dma (the occupancy model) and
moba / vmoba (block selection), from 16k tokens to the 2^24-token cap. The occupancy model's
hardest lengths are where its exact per-row sums are largest (16k-45k causal) and where its
middle-row sums reach their limit (about 174k causal for sparse on Triton's tiles).

Each prediction runs in this process on fresh masks, as `attnsim predict --json` would; printed:
its wall time, the part spent in the mask's own methods (tiles, pairs, keys), and the wall time
of the same call for plain attention (mha), the reference for everything that is not the mask.
A refusal prints its one-line message.

Run: python benchmarks/bench_mask_speed.py [--quick]   (--quick: H100 only, fewer lengths)
"""
import contextlib
import functools
import io
import json
import sys
import time

from attnsim.cli import cli
from attnsim.simulator.masks import BlockSelectMask, OccupancyMask

SIZES = (16384, 32768, 45000, 131072, 174000, 1048576, 16777216)
VARIANTS = ("sparse", "topk", "dma", "moba")
MASK_TIME = [0.0, 0]  # seconds in mask methods, call depth


def _timed(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        MASK_TIME[1] += 1
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            MASK_TIME[1] -= 1
            if not MASK_TIME[1]:  # outermost call only
                MASK_TIME[0] += time.perf_counter() - t0
    return wrapper


for cls in (OccupancyMask, BlockSelectMask):
    for name in ("tile_rows", "tile_cols", "row_tiles", "col_tiles", "live_pairs", "live_keys"):
        if name in vars(cls) or cls is BlockSelectMask:
            setattr(cls, name, _timed(getattr(cls, name)))


def run(args):
    """(wall seconds, seconds in the mask, what it answered) of one `attnsim predict --json`."""
    out, err = io.StringIO(), io.StringIO()
    MASK_TIME[0] = 0.0
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(["predict", "--json", *args], standalone_mode=False)
            code = 0
        except SystemExit as e:
            code = e.code
    dt = time.perf_counter() - t0
    if code:
        return dt, MASK_TIME[0], "refused: " + err.getvalue().strip()
    return dt, MASK_TIME[0], f"predicted {json.loads(out.getvalue())['time_s'] * 1e3:.3f} ms"


def main():
    quick = "--quick" in sys.argv
    worst = (0.0, "")
    for hw in ("h100",) if quick else ("h100", "a100"):
        for seqlen in (32768, 174000, 16777216) if quick else SIZES:
            for causal in ([], ["--causal"]):
                common = ["--hw", hw, "--kernel", "triton", "--phase", "train", "--heads", "8",
                          "--seqlen", str(seqlen), *causal]
                ref, _, _ = run(["--variant", "mha", *common])
                label = f"{hw} triton train {seqlen:>8} {'causal' if causal else 'full  '}"
                for variant in VARIANTS:
                    dt, in_mask, what = run(["--variant", variant, *common])
                    worst = max(worst, (in_mask, f"{variant} {label}"))
                    print(f"{label}  {variant:<6} {dt:5.2f} s, {in_mask:5.2f} s in the mask (mha {ref:5.2f} s)  {what}",
                          flush=True)
        for shape, box in (("16x64x64", "4x8x8"), ("32x256x256", "4x16x16"), ("64x512x512", "8x16x16")):
            dt, in_mask, what = run(["--variant", "vmoba", "--hw", hw, "--kernel", "triton", "--phase", "train",
                                     "--heads", "8", "--token-shape", shape, "-p", f"block={box}"])
            worst = max(worst, (in_mask, f"vmoba {shape} {hw}"))
            print(f"{hw} triton train vmoba {shape} block {box}  {dt:5.2f} s, {in_mask:5.2f} s in the mask  {what}",
                  flush=True)
    print(f"most time in a mask: {worst[0]:.2f} s ({worst[1]}); target: about 1 s")


if __name__ == "__main__":
    main()
