import numpy as np
import torch

from mmgen.charts import usage_bars
from mmgen.viz import code_histogram, code_palette, image_grid, token_map


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
    under_a_label = np.asarray(usage_bars(counts, height=10, bar_width=2, top=6))
    assert under_a_label.shape == (16, 4, 3) and (under_a_label[:6] == 255).all()  # blank above
    assert (under_a_label[6:, :2] == code_palette(5)[0]).all()  # code 0, the most used, is full height


def test_image_grid():
    assert image_grid(torch.zeros(5, 3, 8, 8), rows=2, pad=1).size == (3 * 9 + 1, 2 * 9 + 1)


def test_upscale_nearest_and_cell_size():
    from PIL import Image

    from mmgen.viz import cell_size, upscale_nearest

    im = upscale_nearest(Image.new("RGB", (64, 48)), 256)
    assert im.size == (64 * 6, 48 * 6)
    assert upscale_nearest(Image.new("RGB", (300, 300)), 256).size == (300, 300)
    assert cell_size((16, 16)) == 24 and cell_size((64, 64)) == 6 and cell_size((1000, 10)) == 2


def test_latent_rgb_principal_axes_and_change_map():
    from mmgen.viz import change_map, latent_rgb, principal_axes

    torch.manual_seed(0)
    vectors = torch.randn(500, 8) * torch.tensor([5.0, 3, 1, 0.1, 0.1, 0.1, 0.1, 0.1])
    axes = principal_axes(vectors)
    assert axes.shape == (3, 8)
    assert torch.allclose(axes @ axes.T, torch.eye(3), atol=1e-5)  # orthonormal
    assert axes[0].abs().argmax() == 0 and axes[1].abs().argmax() == 1  # largest variance first
    latents = torch.zeros(8, 4, 4)
    latents[:, 0, 0] = axes[0] * 10  # saturates the red channel at this cell
    im = np.asarray(latent_rgb(latents, axes, scale=1.0))
    assert im.shape == (4, 4, 3) and tuple(im[1, 1]) == (128, 128, 128)
    # the other two axes project axes[0] to zero only up to float error (SVD numerics vary by CPU): 127.5 +- eps
    assert im[0, 0, 0] == 255 and set(im[0, 0, 1:].tolist()) <= {127, 128}
    changed = torch.zeros(2, 3, dtype=torch.bool)
    changed[1, 2] = True
    cm = np.asarray(change_map(changed, cell=2))
    assert cm.shape == (4, 6, 3) and tuple(cm[2, 4]) == (255, 140, 0) and tuple(cm[0, 0]) == (48, 48, 48)


def test_tile_grid_and_click_mapping():
    from PIL import Image

    from mmgen.viz import tile_at, tile_grid

    tiles = [Image.new("RGB", (4, 4), (i, 0, 0)) for i in range(10)]
    order = list(range(9, -1, -1))
    grid = tile_grid(tiles, order, cols=4, scale=2, highlight=9)
    assert grid.size == (4 * 9 + 1, 3 * 9 + 1)
    assert grid.getpixel((2, 2)) == (9, 0, 0) and grid.getpixel((0, 0)) == (255, 0, 200)  # first: code 9, framed
    assert grid.getpixel((1, 1)) == (255, 0, 200)  # the frame is 2 px over the tile's edge: seen at a glance
    assert tile_at(12, 3, tile_side=4, n=10, cols=4, scale=2) == 1  # second tile of the first row
    assert tile_at(30, 25, tile_side=4, n=10, cols=4, scale=2) is None  # past the last tile
    under = tile_grid(tiles, order, cols=4, scale=2, top=10)  # room for gradio's label and buttons
    assert under.size == (4 * 9 + 1, 10 + 3 * 9 + 1) and under.getpixel((2, 12)) == (9, 0, 0)
    assert tile_at(12, 13, tile_side=4, n=10, cols=4, scale=2, top=10) == 1
    assert tile_at(12, 3, tile_side=4, n=10, cols=4, scale=2, top=10) is None  # on the blank band


def test_usage_bars_on_a_log_scale_show_the_rare_codes():
    """Linear, a code used 10 times beside one used 10,000 is a 1-px bar; on the log scale a quarter of the height."""
    counts = np.array([10_000, 10, 1] + [0] * 200)
    heights = []
    for log in (False, True):
        bars = np.asarray(usage_bars(counts, height=80, bar_width=50, log=log))  # too narrow for the scale's words
        heights.append([(bars[:, 50 * i + 25] != 255).any(axis=1).sum() for i in range(3)])
    assert heights[0][0] == 80 and heights[0][1] == 1
    assert heights[1][0] == 80 and 15 <= heights[1][1] <= 25 and heights[1][2] >= 5


def test_overlay_tokens_and_step_bars():
    from PIL import Image

    from mmgen.charts import step_bars
    from mmgen.viz import overlay_tokens

    image = Image.new("RGB", (8, 8), (0, 0, 0))
    out = np.asarray(overlay_tokens(image, np.zeros((2, 2), dtype=int), num_codes=4, alpha=0.5))
    assert out.shape == (8, 8, 3) and (out[4, :] == 255).all() and (out[:, 4] == 255).all()
    assert not (out[1, 1] == 0).all()  # tinted
    bars = np.asarray(step_bars([4, 2, 0], current=1, height=10, bar=4))
    assert bars.shape == (10, 12, 3) and tuple(bars[-1, 5]) == (255, 140, 0)
    # with axes (the app's): under a label's room, the current step marked under its bar even when it is empty,
    # and a dashed line where guidance stops
    axes = np.asarray(step_bars([40, 20, 0, 0], current=3, height=30, bar=8, top=10, unguided_from=2))
    assert axes.shape == (10 + 30 + 14, 400, 3)  # 4 steps at 100 px: room for the axes' words (8 px ran them together)
    assert tuple(axes[10 + 30 + 2, 3 * 100 + 50]) == (255, 140, 0)  # step 4 changed nothing: marked below the axis
    assert (axes[10 + 15 : 10 + 30, 200] < 200).any() and (axes[10 + 15 : 10 + 30, 199] == 255).all()  # the line
    assert (axes[-12:, :30] < 128).any() and (axes[-12:, -30:] < 128).any()  # "step 1" ... "step 4"
