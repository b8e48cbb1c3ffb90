"""Charts drawn as images for the app and the command line: code usage, tokens changed per step, ranked scores,
and the key under a heat map. Pure drawing: numbers in, a PIL image out.

    usage_bars(counts, log=True)                     # a codebook's usage, most used first
    step_bars(counts, current=k, top=LABEL_ROOM)      # tokens changed per step, with axes
    score_bars(captions, gains, 0, best, shown=errs)  # ranked captions, long ones wrapped
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .viz import code_palette, heat_colours


def usage_bars(
    counts: np.ndarray, height: int = 96, bar_width: int = 2, max_bars: int = 256, top: int = 0, log: bool = False
) -> Image.Image:
    """Bar chart of code counts, most used first, each bar in its code's palette colour, under `top` blank pixels
    (e.g. `LABEL_ROOM`): (top + height, n*bar_width). `log`: heights by log(1 + count), so that a peaked codebook's
    long tail of rare codes shows (linear, all but its first few dozen bars are 1 px); the chart says which."""
    order = np.argsort(-counts, kind="stable")[:max_bars]
    order = order[counts[order] > 0]
    palette = code_palette(len(counts))
    canvas = np.full((top + height, max(len(order), 1) * bar_width, 3), 255, dtype=np.uint8)
    scaled = np.log1p(counts.astype(np.float64)) if log else counts.astype(np.float64)
    most = scaled[order[0]] if len(order) else 1.0
    for i, code in enumerate(order):
        h = max(1, int(round(height * scaled[code] / most)))
        canvas[top + height - h :, i * bar_width : (i + 1) * bar_width] = palette[code]
    image = Image.fromarray(canvas)
    if len(order) and canvas.shape[1] >= 240:  # room for the scale's words, over the short bars at the right
        scale = "log scale" if log else "linear scale"
        said = f"{len(order):,} codes used, most used first · tallest: {int(counts[order[0]]):,} · {scale}"
        font = ImageFont.load_default(size=11)
        ImageDraw.Draw(image).text((canvas.shape[1] - 4, top + 2), said, fill=(60, 60, 60), font=font, anchor="ra")
    return image


AXES_WIDTH = 400  # px: a chart with axes is at least this wide


def step_bars(
    counts: list[int],
    current: int | None = None,
    height: int = 80,
    bar: int = 8,
    top: int = 0,
    unguided_from: int | None = None,
) -> Image.Image:
    """Bar chart of tokens changed per step; the `current` step's bar in orange, the others grey-blue, under `top`
    blank pixels (`LABEL_ROOM`). With `top`, axes: the first and last step, the tallest bar's count, the current
    step marked under its bar (a step that changed nothing has no bar), and a dashed line where guidance stops
    (`unguided_from`, a step index). (top + height [+ 14 with axes], len(counts) * bar)."""

    axes = top > 0
    band = 14 if axes else 0
    if axes:  # room for the axes' words however few the steps (12 steps at 8 px ran them into each other)
        bar = max(bar, -(-AXES_WIDTH // max(len(counts), 1)))
    canvas = np.full((top + height + band, max(len(counts), 1) * bar, 3), 255, dtype=np.uint8)
    most = max(max(counts, default=1), 1)
    for i, n in enumerate(counts):
        h = max(1, int(round((height - 2) * n / most)))
        colour = (255, 140, 0) if i == current else (90, 110, 160)
        canvas[top + height - h : top + height, i * bar + 1 : (i + 1) * bar - 1] = colour
    if not axes:
        return Image.fromarray(canvas)
    image = Image.fromarray(canvas)
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(size=10)
    base = top + height
    draw.line((0, base, image.width, base), fill=(150, 150, 150))
    if current is not None:
        draw.rectangle((current * bar, base + 1, (current + 1) * bar - 1, base + 4), fill=(255, 140, 0))
    ink, y = (60, 60, 60), base + band // 2 + 2
    draw.text((2, y), f"step 1 · tallest bar: {most} tokens", fill=ink, font=font, anchor="lm")
    draw.text((image.width - 2, y), f"step {len(counts)}", fill=ink, font=font, anchor="rm")
    if unguided_from is not None and 0 < unguided_from < len(counts):
        x = unguided_from * bar
        for dash in range(top, base, 6):
            draw.line((x, dash, x, min(dash + 3, base)), fill=(120, 120, 120))
        words = draw.textlength("unguided from here", font=font)
        if x + 4 + words < image.width or x - 4 - words > 0:  # else the line alone
            anchor, tx = ("la", x + 4) if x + 4 + words < image.width else ("ra", x - 4)
            draw.text((tx, top + 1), "unguided from here", fill=ink, font=font, anchor=anchor)
    return image


def with_colour_bar(image: Image.Image, vmin: float, vmax: float, text: str = "{:.0%}") -> Image.Image:
    """The image over the heat ramp's colour bar from `vmin` to `vmax`, its ends labelled (`text` formats them): a
    heat map's key, its size growing with the image's width (a wide strip is shown scaled down)."""
    height = max(26, image.width // 40)
    out = Image.new("RGB", (image.width, image.height + height), (255, 255, 255))
    out.paste(image.convert("RGB"), (0, 0))
    font = ImageFont.load_default(size=max(11, height * 11 // 20))
    draw = ImageDraw.Draw(out)
    low, high = text.format(vmin), text.format(vmax)
    left, right = int(draw.textlength(low, font=font)) + 8, int(draw.textlength(high, font=font)) + 8
    ramp = heat_colours(np.linspace(vmin, vmax, max(image.width - left - right, 2)), vmin, vmax)
    bar = Image.fromarray(np.repeat(ramp[None], height // 2, axis=0))
    out.paste(bar, (left, image.height + height // 4))
    draw.text((4, image.height + height // 2), low, fill=(0, 0, 0), font=font, anchor="lm")
    draw.text((image.width - 4, image.height + height // 2), high, fill=(0, 0, 0), font=font, anchor="rm")
    return out


def _wrapped(text: str, fits: Callable[[str], bool]) -> list[str]:
    """`text` in lines that each `fits` (a word longer than a line gets a line of its own)."""
    lines: list[str] = []
    for word in text.split():
        if lines and fits(f"{lines[-1]} {word}"):
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def score_bars(
    labels: list[str],
    values: list[float],
    vmin: float,
    vmax: float,
    width: int = 600,
    bar_height: int = 28,
    shown: list[str] | None = None,
) -> Image.Image:
    """Horizontal bars, one per label (e.g. ranked captions and their denoising errors), each as long as its
    value's place in `vmin`..`vmax`, the value (or `shown`'s text) and label written beside it; the first bar
    orange, the rest grey-blue: (rows' heights + 2, width). A label too long for its room wraps onto more lines,
    its row taller (cut at the edge, two captions that differ at their ends read the same)."""

    if len(labels) != len(values):
        raise ValueError(f"got {len(labels)} labels for {len(values)} values")
    font = ImageFont.load_default(size=max(10, bar_height // 2))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    bar_space = width // 4
    numbers = shown or [f"{v:.4f}" for v in values]
    room = width - bar_space - 12 - max(measure.textlength(f"{t}  ", font=font) for t in numbers)
    line = font.size + 3
    wrapped = [_wrapped(label, lambda text: measure.textlength(text, font=font) <= room) for label in labels]
    heights = [bar_height + (len(lines) - 1) * line for lines in wrapped]
    canvas = Image.new("RGB", (width, sum(heights) + 2), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    y = 1
    for i, (lines, value, height) in enumerate(zip(wrapped, values, heights)):
        share = float(np.clip((value - vmin) / max(vmax - vmin, 1e-12), 0, 1))
        colour = (255, 140, 0) if i == 0 else (90, 110, 160)
        draw.rectangle((0, y + 3, max(1, int(share * bar_space)), y + bar_height - 4), fill=colour)
        number = f"{numbers[i]}  "
        draw.text((bar_space + 8, y + bar_height // 2), number, fill=(0, 0, 0), font=font, anchor="lm")
        x = bar_space + 8 + measure.textlength(number, font=font)
        for j, text in enumerate(lines):
            draw.text((x, y + bar_height // 2 + j * line), text, fill=(0, 0, 0), font=font, anchor="lm")
        y += height
    return canvas
