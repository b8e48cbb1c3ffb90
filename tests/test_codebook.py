import numpy as np
import pytest

from mmgen.codebook import CodebookAtlas, reference_images, usage_stats
from mmgen.models.vqvae import VQVAE


@pytest.fixture
def atlas(tiny_model_dir):
    vq = VQVAE.from_pretrained(tiny_model_dir, subfolder="vqvae").eval()
    return CodebookAtlas.build(vq, reference_images(n_shapes=6)), vq


def test_atlas_counts_every_token_of_the_reference_set(atlas):
    atlas, vq = atlas
    assert len(atlas.tiles) == vq.config.num_codes and atlas.tiles[0].size == (16, 16)
    assert atlas.counts.sum() == 6 * 16 * 16  # six 64x64 scenes, 16x16 tokens each
    order = atlas.order("usage")
    assert atlas.counts[order[0]] == atlas.counts.max() and sorted(order) == list(range(vq.config.num_codes))
    assert atlas.stats["dead_codes"] == int((atlas.counts == 0).sum())


def test_neighbours_and_examples(atlas):
    atlas, _ = atlas
    code = int(np.argmax(atlas.counts))
    near = atlas.neighbours(code, k=3)
    assert len(near) == 3 and code not in [c for c, _ in near]
    assert near[0][1] >= near[1][1] >= near[2][1]
    crops = atlas.examples(code)
    assert 1 <= len(crops) <= 6 and crops[0].size == (20, 20)  # 5x5 cells of 4 px
    assert crops[0].getpixel((7, 7)) == (255, 0, 200) and crops[0].getpixel((12, 12)) == (255, 0, 200)  # the cell
    kept, atlas.occurrences[code] = atlas.occurrences[code], [(0, 0, 0)]  # a cell at an image's corner
    corner = atlas.examples(code)[0]
    atlas.occurrences[code] = kept
    # past the image's edge a checkerboard, which no scene's flat gray background looks like
    assert {corner.getpixel((0, 0)), corner.getpixel((2, 0))} == {(235, 235, 235), (200, 200, 200)}
    assert corner.getpixel((10, 10)) == atlas.images[0].convert("RGB").getpixel((2, 2))
    with pytest.raises(ValueError, match="code id"):
        atlas.neighbours(10_000)


def test_usage_stats():
    s = usage_stats(np.array([5, 5, 0, 0]))
    assert s == {"usage": 0.5, "perplexity": pytest.approx(2.0), "dead_codes": 2}


def test_the_reference_scenes_are_drawn_at_the_size_each_tokenizer_makes_16x16_tokens_of():
    """mmgen-base's f8 had its usage counted on 64-px scenes, which its generator never draws."""
    assert [reference_images(n_shapes=1, downsample_factor=f)[0].size for f in (4, 8, 16)] == [
        (64, 64),
        (128, 128),
        (256, 256),
    ]
