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


def agree(ours, mod, lq, lk, block):
    """attnsim's (full, partial) per query tile against FlexAttention's BlockMask. Flex counts a
    ragged query block as partial; attnsim does not (rows past lq are predicated, not masked), so
    full tiles are compared with Flex on the query axis padded to whole blocks whose extra rows are
    live everywhere (a tile is then full when its real rows see all its in-bounds keys), and
    non-empty tiles with Flex on the real lengths."""
    f, p = ours
    full_flex, partial_flex = flex_counts(mod, lq, lk, block)
    padded = -(-lq // block) * block
    full_pad, _ = flex_counts(lambda b, h, q, k: mod(b, h, q, k) | (q >= lq), padded, lk, block)
    assert f.tolist() == full_pad.tolist()
    assert (f + p).tolist() == (full_flex + partial_flex).tolist()


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
    agree(mask.tile_rows(length, length, 128, 128), mod, length, length, 128)


def test_segments_agree_with_flex_document_mask():
    sizes = (200, 312, 500)
    doc = torch.tensor(np.repeat(np.arange(len(sizes)), sizes))
    L = sum(sizes)
    agree(SegmentMask(sizes).tile_rows(L, L, 128, 128),
          lambda b, h, q, k: doc[torch.clamp(q, max=L - 1)] == doc[k], L, L, 128)


def test_neighborhood_row_major_agrees_with_flex():
    """2D neighborhood attention, row-major tokens, 64-token tiles (rows of the 64-wide grid are boxes)."""
    m = NAMask((16, 64), (5, 9), token_order="rowmajor")
    L = 16 * 64
    idx = np.arange(L)
    dense = torch.as_tensor(m.mask_mod(idx[:, None], idx[None, :], L, L))  # NATTEN semantics, as a lookup
    full, partial = flex_counts(lambda b, h, q, k: dense[q, k], L, L, 64)
    f, p = m.tile_rows(L, L, 64, 64)
    assert f.tolist() == full.tolist() and p.tolist() == partial.tolist()
