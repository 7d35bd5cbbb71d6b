"""Tile classification speed of structured masks (issue 3 targets).

Prints: a 3D GNA problem of about 1M tokens (64x128x128, 128-token box tiles) in <= 0.5 s, and a 1D
window over 64k tokens (128-token tiles) in <= 50 ms, for a sliding window and for 1D neighborhood
attention. Run: python benchmarks/bench_masks.py
"""
import time

from attnsim.simulator.masks import WindowMask
from attnsim.simulator.na import NAMask


def best_of(fn, repeats=5):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    L3 = 64 * 128 * 128

    def gna3d():  # a fresh mask each time: nothing cached
        m = NAMask((64, 128, 128), (16, 32, 32), (2, 4, 4), q_tile=(2, 8, 8), kv_tile=(2, 8, 8))
        m.tile_rows(L3, L3, 128, 128), m.iterated_rows(L3, L3, 128, 128), m.tile_cols(L3, L3, 128, 128)
    t = best_of(gna3d)
    print(f"3D GNA 64x128x128 ({L3:,} tokens), kernel 16x32x32, stride 2x4x4, 128-token boxes: "
          f"{t * 1e3:.2f} ms (target <= 500 ms)")

    def gna3d_search():  # the tile search picks the boxes
        m = NAMask((64, 128, 128), (16, 32, 32), (2, 4, 4))
        m.tile_rows(L3, L3, 128, 128), m.iterated_rows(L3, L3, 128, 128)
    t = best_of(gna3d_search)
    print(f"3D GNA as above with the tile search choosing the 128-token boxes: {t * 1e3:.2f} ms (target <= 500 ms)")
    L1 = 65536
    t = best_of(lambda: WindowMask(4096, 0).tile_rows(L1, L1, 128, 128))
    print(f"1D sliding window (4096, 0) over {L1:,} tokens, 128 x 128 tiles: {t * 1e3:.2f} ms (target <= 50 ms)")
    t = best_of(lambda: NAMask((L1,), (4097,)).tile_rows(L1, L1, 128, 128))
    print(f"1D neighborhood attention, kernel 4097 over {L1:,} tokens, 128 x 128 tiles: {t * 1e3:.2f} ms "
          f"(target <= 50 ms)")


if __name__ == "__main__":
    main()
