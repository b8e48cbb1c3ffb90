"""The codebook atlas at scale: any tokenizer, tiles decoded lazily page by page and cached, neighbours in the
quantiser's metric."""

import numpy as np
import pytest
import torch
from tokenizer_families import make_family

from mmgen.codebook import CodebookAtlas, TileCache, reference_images
from mmgen.tokenizers import as_tokenizer


@pytest.fixture(scope="module")
def movq_atlas():
    """A MoVQ-like tokenizer (f8, spatial norm) with 2,048 codes: more than the atlas decodes up front."""
    torch.manual_seed(0)
    tok = as_tokenizer(make_family("movq", num_vq_embeddings=2048), "movq-like")
    return CodebookAtlas.build(tok, reference_images(n_shapes=4)), tok


def test_build_decodes_nothing_and_a_page_decodes_only_itself(movq_atlas):
    atlas, tok = movq_atlas
    assert atlas.tiles.decoded == 0 and len(atlas.tiles) == 2048 and atlas.num_pages(256) == 8
    assert atlas.counts.sum() == 4 * 8 * 8  # four 64x64 scenes at f8
    page = atlas.page(0, per_page=64)
    assert atlas.tiles.decoded == 64 and page.num_pages == 32 and len(page.tiles) == 64
    assert page.codes == atlas.order("usage")[:64] and atlas.counts[page.codes[0]] == atlas.counts.max()
    assert page.tiles[0].size == (16, 16)  # 2x2 tokens of 8 px
    atlas.page(0, per_page=64)
    assert atlas.tiles.decoded == 64  # cached
    # a tile is the decoder's image of a flat grid of its code
    code = page.codes[3]
    flat = tok.decode_indices(torch.full((1, 2, 2), code))[0]
    assert np.array_equal(np.asarray(page.tiles[3]), ((flat + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())
    assert atlas.page_of(code, per_page=64) == 0 and atlas.page_of(page.codes[-1], per_page=16) == 3
    with pytest.raises(ValueError, match="page must be"):
        atlas.page(32, per_page=64)


def test_usage_dead_codes_neighbours_examples(movq_atlas):
    atlas, tok = movq_atlas
    dead = atlas.dead_codes()
    assert len(dead) == atlas.stats["dead_codes"] > 0 and atlas.counts[dead].sum() == 0
    assert (atlas.counts > 0).sum() + len(dead) == 2048
    assert atlas.metric == "euclidean" == tok.metric
    code = int(np.argmax(atlas.counts))
    near = atlas.neighbours(code, k=5)
    brute = torch.cdist(tok.codebook[code][None], tok.codebook)[0]
    brute[code] = float("inf")
    assert [c for c, _ in near] == brute.topk(5, largest=False).indices.tolist()
    assert [d for _, d in near] == sorted(d for _, d in near)
    assert [s for _, s in atlas.neighbours(code, k=3, metric="cosine")][0] <= 1
    crops = atlas.examples(code)
    assert 1 <= len(crops) <= 4 and crops[0].size == (40, 40)  # 5x5 cells of 8 px


def test_tile_cache_is_bounded():
    tok = as_tokenizer(make_family("ldm-f4"))
    tiles = TileCache(tok, tile_tokens=2, batch=4, max_tiles=6)
    first = tiles.get(range(10))
    assert len(first) == 10 and tiles.decoded == 10 and first[0].size == (8, 8)
    tiles.get([9, 8])
    assert tiles.decoded == 10  # the most recent are kept
    tiles[0]
    assert tiles.decoded == 11  # the oldest were dropped
    with pytest.raises(ValueError, match="code id"):
        tiles.get([32])


def test_small_codebooks_are_decoded_at_build(tiny_model_dir):
    from mmgen.tokenizers import load_tokenizer

    atlas = CodebookAtlas.build(load_tokenizer(tiny_model_dir), reference_images(n_shapes=2))
    assert atlas.tiles.decoded == 64 and atlas.metric == "cosine"
