"""An independent oracle when torch is installed: FlexAttention's create_block_mask classifies the
tiles of a mask_mod into full and partial blocks (its BlockMask's full_kv_num_blocks and
kv_num_blocks); attnsim's analytic tiles must agree. Skipped without torch (the simulator never
needs it)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
flex = pytest.importorskip("torch.nn.attention.flex_attention")

from attnsim.simulator.masks import CausalMask, SegmentMask, WindowMask, window_mask  # noqa: E402
from attnsim.simulator.na import NAMask  # noqa: E402


def flex_counts(mask_mod, lq, lk, block):
    """(full, partial) kv blocks per query block from FlexAttention's BlockMask."""
    bm = flex.create_block_mask(mask_mod, B=None, H=None, Q_LEN=lq, KV_LEN=lk, device="cpu", BLOCK_SIZE=block,
                                _compile=False)
    partial = bm.kv_num_blocks[0, 0].numpy()
    full = bm.full_kv_num_blocks[0, 0].numpy() if bm.full_kv_num_blocks is not None else np.zeros_like(partial)
    return full, partial


def causal_mod(b, h, q, k):
    return q >= k


CASES = [
    ("causal", CausalMask(), causal_mod),
    ("window 100/0", WindowMask(100, 0), lambda b, h, q, k: (k <= q) & (k >= q - 100)),
    ("window 50/70", WindowMask(50, 70), lambda b, h, q, k: (k <= q + 70) & (k >= q - 50)),
    ("chunk 300 causal", window_mask((-1, 0), False, chunk=300), lambda b, h, q, k: (k <= q) & (k // 300 == q // 300)),
]


@pytest.mark.parametrize("name,mask,mod", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("length", [512, 1000])
def test_tiles_agree_with_flex_block_mask(name, mask, mod, length):
    # FlexAttention pads ragged blocks and counts a ragged block as partial, as attnsim does
    block = 128
    full, partial = flex_counts(mod, length, length, block)
    f, p = mask.tile_rows(length, length, block, block)
    assert f.tolist() == full.tolist() and p.tolist() == partial.tolist()


def test_segments_agree_with_flex_document_mask():
    sizes = (200, 312, 500)
    doc = torch.tensor(np.repeat(np.arange(len(sizes)), sizes))
    full, partial = flex_counts(lambda b, h, q, k: doc[q] == doc[k], sum(sizes), sum(sizes), 128)
    f, p = SegmentMask(sizes).tile_rows(sum(sizes), sum(sizes), 128, 128)
    assert f.tolist() == full.tolist() and p.tolist() == partial.tolist()


def test_neighborhood_row_major_agrees_with_flex():
    """2D neighborhood attention, row-major tokens, 64-token tiles (rows of the 64-wide grid are boxes)."""
    m = NAMask((16, 64), (5, 9), token_order="rowmajor")
    L = 16 * 64
    idx = np.arange(L)
    dense = torch.as_tensor(m.mask_mod(idx[:, None], idx[None, :], L, L))  # NATTEN semantics, as a lookup
    full, partial = flex_counts(lambda b, h, q, k: dense[q, k], L, L, 64)
    f, p = m.tile_rows(L, L, 64, 64)
    assert f.tolist() == full.tolist() and p.tolist() == partial.tolist()
