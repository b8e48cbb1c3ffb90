import numpy as np
import torch

from mmgen.viz import code_histogram, code_palette, image_grid, token_map, usage_bars


def test_token_map_size_and_highlight():
    ids = torch.tensor([[0, 1], [1, 2]])
    im = token_map(ids, num_codes=4, cell=5)
    assert im.size == (10, 10) and im.mode == "RGB"
    arr = np.asarray(token_map(ids, num_codes=4, cell=1, highlight=1))
    palette = code_palette(4)
    assert tuple(arr[0, 1]) == tuple(palette[1]) and tuple(arr[0, 0]) != tuple(palette[0])


def test_palette_is_fixed_and_distinct():
    p = code_palette(512)
    assert np.array_equal(p, code_palette(512)) and len({tuple(c) for c in p}) > 500


def test_histogram_and_bars():
    counts = code_histogram(np.array([[0, 0, 3]]), 5)
    assert counts.tolist() == [2, 0, 0, 1, 0]
    bars = usage_bars(counts, height=10, bar_width=2)
    assert bars.size == (4, 10)


def test_image_grid():
    assert image_grid(torch.zeros(5, 3, 8, 8), rows=2, pad=1).size == (3 * 9 + 1, 2 * 9 + 1)


def test_upscale_nearest_and_cell_size():
    from PIL import Image

    from mmgen.viz import cell_size, upscale_nearest

    im = upscale_nearest(Image.new("RGB", (64, 48)), 256)
    assert im.size == (64 * 6, 48 * 6)
    assert upscale_nearest(Image.new("RGB", (300, 300)), 256).size == (300, 300)
    assert cell_size((16, 16)) == 24 and cell_size((64, 64)) == 6 and cell_size((1000, 10)) == 2
