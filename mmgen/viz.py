"""Pure visualisation functions: tensors or token ids in, PIL images out. No model calls, no globals.

The app and the command line compose these; every range is passed explicitly.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch
from PIL import Image

from .images import tensor_to_pil

LABEL_ROOM = 40  # px left blank above a chart the app shows under gradio's label (it covered the tallest bars)


def image_grid(images: torch.Tensor, rows: int, pad: int = 2) -> Image.Image:
    """(N, 3, H, W) images in [-1, 1] -> one PIL grid of `rows` rows, filled row by row."""
    n, _, h, w = images.shape
    cols = -(-n // rows)
    grid = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + pad) + pad), (255, 255, 255))
    for i in range(n):
        r, c = divmod(i, cols)
        grid.paste(tensor_to_pil(images[i]), (pad + c * (w + pad), pad + r * (h + pad)))
    return grid


def code_palette(num_codes: int, seed: int = 0) -> np.ndarray:
    """A fixed, well-spread colour per code id: (K, 3) uint8. Golden-ratio hues, varied value and saturation."""
    rng = np.random.default_rng(seed)
    hues = (np.arange(num_codes) * 0.618033988749895) % 1.0
    sats = 0.45 + 0.5 * rng.random(num_codes)
    vals = 0.55 + 0.45 * rng.random(num_codes)
    rgb = [colorsys.hsv_to_rgb(h, s, v) for h, s, v in zip(hues, sats, vals)]
    return (np.array(rgb) * 255).round().astype(np.uint8)


def token_map(
    indices: torch.Tensor | np.ndarray, num_codes: int, cell: int = 8, highlight: int | None = None
) -> Image.Image:
    """A (h, w) grid of code ids drawn as colours, nearest-neighbour upscaled by `cell`.

    With `highlight`, cells holding that code keep their colour and every other cell is dimmed.
    """
    ids = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices, dtype=np.int64)
    if ids.ndim != 2:
        raise ValueError(f"expected a (h, w) grid of code ids, got shape {ids.shape}")
    rgb = code_palette(num_codes)[ids]  # (h, w, 3)
    if highlight is not None:
        dim = ids != highlight
        rgb = rgb.copy()
        rgb[dim] = (rgb[dim] * 0.2 + 40).astype(np.uint8)
    return Image.fromarray(rgb).resize((ids.shape[1] * cell, ids.shape[0] * cell), Image.Resampling.NEAREST)


def code_histogram(indices: torch.Tensor | np.ndarray, num_codes: int) -> np.ndarray:
    """How many times each code occurs: (K,) int64."""
    ids = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices, dtype=np.int64)
    return np.bincount(ids.ravel(), minlength=num_codes)


def upscale_nearest(image: Image.Image, min_side: int) -> Image.Image:
    """Enlarge by a whole factor (nearest neighbour, so pixels stay crisp) until the shorter side >= min_side."""
    factor = max(1, -(-min_side // min(image.size)))
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def cell_size(grid_shape: tuple[int, int], target: int = 384) -> int:
    """Pixels per token so a token map is about `target` pixels on its longer side (at least 2)."""
    return max(2, target // max(grid_shape))


def captioned(image: Image.Image, text: str, height: int = 20) -> Image.Image:
    """The image over a white band of `height` pixels holding `text` (e.g. an exported frame's step)."""
    from PIL import ImageDraw, ImageFont

    out = Image.new("RGB", (image.width, image.height + height), (255, 255, 255))
    out.paste(image.convert("RGB"), (0, 0))
    font = ImageFont.load_default(size=max(9, height * 3 // 5))
    ImageDraw.Draw(out).text((4, image.height + height // 2), text, fill=(0, 0, 0), font=font, anchor="lm")
    return out


def step_frames(frames: list[Image.Image], timesteps: list[float], scale: int) -> list[Image.Image]:
    """A run's frames (one per step) enlarged `scale` times (nearest neighbour), each over its step and timestep
    ("step 12/50 · t=759"), for a GIF or filmstrip that says where in the run each frame is."""
    big = [f.resize((f.width * scale, f.height * scale), Image.Resampling.NEAREST) for f in frames]
    lines = [f"step {k + 1}/{len(big)} · t={t:.0f}" for k, t in enumerate(timesteps)]
    return [captioned(f, line, height=10 * scale) for f, line in zip(big, lines)]


def filmstrip(frames: list[Image.Image], scale: int = 2, pad: int = 2) -> Image.Image:
    """Frames side by side (nearest-neighbour enlarged by `scale`) in one PNG-ready image."""
    w, h = frames[0].width * scale, frames[0].height * scale
    strip = Image.new("RGB", (len(frames) * (w + pad) + pad, h + 2 * pad), (255, 255, 255))
    for i, frame in enumerate(frames):
        strip.paste(frame.resize((w, h), Image.Resampling.NEAREST), (pad + i * (w + pad), pad))
    return strip


def save_gif(frames: list[Image.Image], path, ms_per_frame: int = 150, hold_last_ms: int = 1200):
    """An animated GIF of the frames as they are (e.g. `step_frames`), holding the last frame a little longer."""
    durations = [ms_per_frame] * (len(frames) - 1) + [hold_last_ms]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0)


def latent_rgb(latents: torch.Tensor, basis: torch.Tensor, scale: float = 2.0) -> Image.Image:
    """A (C, h, w) latent drawn as colour: projected on 3 directions `basis` (3, C), e.g. the codebook's top
    principal axes, then mapped from [-scale, scale] to [0, 255]. Noise looks like confetti; clean latents show
    the same regions as their decoded image."""
    rgb = torch.einsum("chw,kc->khw", latents.float().cpu(), basis.float().cpu())
    rgb = ((rgb / scale).clamp(-1, 1) + 1) * 127.5
    return Image.fromarray(rgb.round().byte().permute(1, 2, 0).numpy())


def principal_axes(vectors: torch.Tensor, k: int = 3) -> torch.Tensor:
    """The top-k principal directions (k, C) of row vectors (N, C), signs fixed so each sums positive."""
    centered = vectors.float() - vectors.float().mean(0)
    _, _, v = torch.linalg.svd(centered, full_matrices=False)
    axes = v[:k]
    return axes * torch.where(axes.sum(1, keepdim=True) < 0, -1.0, 1.0)


def change_map(changed: torch.Tensor | np.ndarray, cell: int = 8) -> Image.Image:
    """A (h, w) bool grid of tokens that changed since the previous step: changed cells orange on dark grey."""
    mask = np.asarray(changed.cpu() if isinstance(changed, torch.Tensor) else changed, dtype=bool)
    rgb = np.where(mask[..., None], np.array([255, 140, 0], np.uint8), np.array([48, 48, 48], np.uint8))
    return Image.fromarray(rgb.astype(np.uint8)).resize(
        (mask.shape[1] * cell, mask.shape[0] * cell), Image.Resampling.NEAREST
    )


def tile_grid(
    tiles: list[Image.Image],
    order: list[int],
    cols: int = 32,
    scale: int = 2,
    pad: int = 1,
    highlight: int | None = None,
    top: int = 0,
) -> Image.Image:
    """Code tiles laid out row by row in `order` (nearest-neighbour enlarged by `scale`), 1 px gaps, under `top`
    blank pixels (`LABEL_ROOM`: gradio's label and buttons covered the first row); the `highlight`ed code gets a
    frame drawn over its edge, 3 px wide. Cell i of the grid shows code order[i] (see `tile_at`)."""
    from PIL import ImageDraw

    w, h = tiles[0].width * scale, tiles[0].height * scale
    rows = -(-len(order) // cols)
    grid = Image.new("RGB", (cols * (w + pad) + pad, top + rows * (h + pad) + pad), (255, 255, 255))
    for i, code in enumerate(order):
        r, c = divmod(i, cols)
        x, y = pad + c * (w + pad), top + pad + r * (h + pad)
        grid.paste(tiles[code].resize((w, h), Image.Resampling.NEAREST), (x, y))
        if code == highlight:
            box = (x - pad, y - pad, x + w + pad - 1, y + h + pad - 1)
            ImageDraw.Draw(grid).rectangle(box, outline=(255, 0, 200), width=min(3, max(pad, w // 4)))
    return grid


def tile_at(
    x: int, y: int, tile_side: int, n: int, cols: int = 32, scale: int = 2, pad: int = 1, top: int = 0
) -> int | None:
    """Which grid position (index into the order) a click at pixel (x, y) of `tile_grid`'s image falls on."""
    step = tile_side * scale + pad
    c, r = (x - pad) // step, (y - top - pad) // step
    i = r * cols + c
    return int(i) if 0 <= c < cols and 0 <= r and 0 <= i < n else None


def overlay_tokens(
    image: Image.Image, tokens: torch.Tensor | np.ndarray, num_codes: int, alpha: float = 0.45, lines: bool = True
) -> Image.Image:
    """The image with its token grid on top: each cell tinted with its code's colour, cell borders drawn."""
    ids = np.asarray(tokens.cpu() if isinstance(tokens, torch.Tensor) else tokens, dtype=np.int64)
    colours = Image.fromarray(code_palette(num_codes)[ids]).resize(image.size, Image.Resampling.NEAREST)
    out = np.asarray(Image.blend(image.convert("RGB"), colours, alpha)).copy()
    if lines:
        ch, cw = image.height / ids.shape[0], image.width / ids.shape[1]
        for r in range(1, ids.shape[0]):
            out[int(round(r * ch)), :] = 255
        for c in range(1, ids.shape[1]):
            out[:, int(round(c * cw))] = 255
    return Image.fromarray(out)


# Stops of the heat colour ramp (value 0 -> 1): black, purple, red, orange, pale yellow; perceptually ordered,
# readable on light and dark pages, and still ordered in grayscale.
HEAT_STOPS = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]],
    dtype=np.float64,
)


def heat_colours(values: np.ndarray | torch.Tensor, vmin: float, vmax: float) -> np.ndarray:
    """Values -> (..., 3) uint8 colours of the heat ramp, `vmin` dark and `vmax` bright (clipped outside)."""
    v = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    if not vmax > vmin:
        raise ValueError(f"vmax must exceed vmin, got {vmin}..{vmax}")
    t = np.clip((v - vmin) / (vmax - vmin), 0, 1) * (len(HEAT_STOPS) - 1)
    lo = np.minimum(t.astype(np.int64), len(HEAT_STOPS) - 2)
    frac = (t - lo)[..., None]
    return (HEAT_STOPS[lo] * (1 - frac) + HEAT_STOPS[lo + 1] * frac).round().astype(np.uint8)


def heatmap(values: np.ndarray | torch.Tensor, vmin: float, vmax: float, cell: int = 1) -> Image.Image:
    """A (h, w) array drawn with the heat ramp, each value a `cell` x `cell` square: an error map (cell 1) or a
    per-token map such as quantisation distance or margin (cell = pixels per token)."""
    rgb = heat_colours(values, vmin, vmax)
    if rgb.ndim != 3:
        raise ValueError(f"expected a (h, w) array, got shape {rgb.shape[:-1]}")
    return Image.fromarray(rgb).resize((rgb.shape[1] * cell, rgb.shape[0] * cell), Image.Resampling.NEAREST)


def colorbar(vmin: float, vmax: float, label: str, width: int = 256, height: int = 44) -> Image.Image:
    """A legend for `heatmap`: the ramp from vmin (left) to vmax (right), its two ends written under it and
    `label` on the line below."""
    from PIL import ImageDraw

    bar = Image.fromarray(np.repeat(heat_colours(np.linspace(vmin, vmax, width), vmin, vmax)[None], 14, axis=0))
    legend = Image.new("RGB", (width, height), (255, 255, 255))
    legend.paste(bar, (0, 0))
    draw = ImageDraw.Draw(legend)
    low, high = f"{vmin:.3g}", f"{vmax:.3g}"
    draw.text((1, 16), low, fill=(0, 0, 0))
    draw.text((width - 1 - draw.textlength(high), 16), high, fill=(0, 0, 0))
    draw.text((1, 30), label, fill=(0, 0, 0))
    return legend


def side_by_side(
    rows: list[list[Image.Image]], labels: list[str], scale: int = 1, pad: int = 4, label_height: int = 14
) -> Image.Image:
    """Rows of images in columns with a label over each column (an image through several tokenizers: original,
    reconstructions, error maps), each enlarged by `scale` (nearest neighbour); columns are as wide as their
    widest image, rows as tall as their tallest."""
    if not rows or any(len(r) != len(labels) for r in rows):
        raise ValueError("every row needs one image per label")
    from PIL import ImageDraw

    widths = [max(row[c].width for row in rows) * scale for c in range(len(labels))]
    heights = [max(im.height for im in row) * scale for row in rows]
    xs = [pad + sum(widths[:c]) + c * pad for c in range(len(labels))]
    sheet = Image.new("RGB", (xs[-1] + widths[-1] + pad, label_height + sum(heights) + (len(rows) + 1) * pad), "white")
    draw = ImageDraw.Draw(sheet)
    for x, w, label in zip(xs, widths, labels):
        while label and draw.textlength(label) > w:  # cut long names to the column
            label = label[:-1]
        draw.text((x, 2), label, fill=(0, 0, 0))
    y = label_height + pad
    for row, h in zip(rows, heights):
        for x, image in zip(xs, row):
            sheet.paste(
                image.convert("RGB").resize((image.width * scale, image.height * scale), Image.NEAREST), (x, y)
            )
        y += h + pad
    return sheet


def overlay_heatmap(
    image: Image.Image, heat: np.ndarray, vmin: float, vmax: float, alpha: float = 0.65
) -> Image.Image:
    """The image under a heat map in `heat_colours` (e.g. a word's attention map), the map resized to the image
    (bilinear) when their sizes differ."""
    colours = Image.fromarray(heat_colours(heat, vmin, vmax))
    if colours.size != image.size:
        colours = colours.resize(image.size, Image.Resampling.BILINEAR)
    return Image.blend(image.convert("RGB"), colours, alpha)


def _labelled(tile: Image.Image, label: str, height: int = 14) -> Image.Image:
    """A tile with its label written in a white band underneath (cut to the tile's width)."""
    from PIL import ImageDraw

    out = Image.new("RGB", (tile.width, tile.height + height), (255, 255, 255))
    out.paste(tile, (0, 0))
    draw = ImageDraw.Draw(out)
    while label and draw.textlength(label) > tile.width - 2:
        label = label[:-1]
    draw.text((2, tile.height + 1), label, fill=(0, 0, 0))
    return out


def word_map_grid(
    image: Image.Image,
    maps: dict[str, np.ndarray],
    vmax: float | None = None,
    scale: int = 2,
    cols: int = 5,
    pad: int = 2,
) -> Image.Image:
    """The image, then every word's map over it (`overlay_heatmap`, from 0), each labelled with the word and its
    maximum, in rows of `cols`,
    nearest-neighbour enlarged by `scale`. `vmax`: the value drawn brightest, shared by all words (compares how
    much each word is read); None: each map up to its own maximum (shows where each word goes, however little)."""
    big = image.convert("RGB").resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    tiles = [_labelled(big, "image")]
    for word, heat in maps.items():
        top = max(float(np.max(heat)), 1e-12) if vmax is None else vmax
        tiles.append(_labelled(overlay_heatmap(big, heat, 0.0, top), f"{word} {np.max(heat):.2f}"))
    w, h = tiles[0].size
    rows = -(-len(tiles) // cols)
    grid = Image.new("RGB", (min(cols, len(tiles)) * (w + pad) + pad, rows * (h + pad) + pad), (255, 255, 255))
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        grid.paste(tile, (pad + c * (w + pad), pad + r * (h + pad)))
    return grid


def word_map_strip(
    frames: list[Image.Image],
    heats: list[np.ndarray],
    vmin: float,
    vmax: float,
    scale: int = 2,
    labels: list[str] | None = None,
    rows: int = 1,
    top: int = 0,
) -> Image.Image:
    """One word's map over each step's image (e.g. the decoded x0 estimate), side by side in `rows` rows under `top`
    blank pixels: the word across steps, each frame over its label ("step 12 · t=759") when given."""
    if len(frames) != len(heats) or not frames:
        raise ValueError(f"need one map per frame, got {len(frames)} frames and {len(heats)} maps")
    maps = [overlay_heatmap(f, h, vmin, vmax) for f, h in zip(frames, heats)]
    big = [m.resize((m.width * scale, m.height * scale), Image.Resampling.NEAREST) for m in maps]
    if labels is not None:
        big = [captioned(m, label, height=max(18, m.height // 8)) for m, label in zip(big, labels)]
    per_row = -(-len(big) // rows)
    strips = [filmstrip(big[i : i + per_row], scale=1) for i in range(0, len(big), per_row)]
    out = Image.new("RGB", (max(s.width for s in strips), top + sum(s.height for s in strips)), (255, 255, 255))
    for i, strip in enumerate(strips):
        out.paste(strip, (0, top + sum(s.height for s in strips[:i])))
    return out
