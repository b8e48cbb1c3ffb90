"""The `shapes-v1` procedural text-to-image dataset.

Every sample is a 64x64 RGB scene of one or two flat-coloured shapes on a plain background, with a templated
caption and structured labels, drawn from a seed: the dataset is infinite and exactly reproducible. This module
is the reference implementation of the contract in `docs/shapes-v1.md`; any change is a new version.

    >>> sample = shapes_sample(seed=0, index=3)
    >>> sample.image.size, sample.caption, sample.labels["objects"][0]["shape"]
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

VERSION = "shapes-v1"
CANVAS = 64
SUPERSAMPLE = 4  # draw at 4x and box-filter down, so edges are anti-aliased

BACKGROUNDS = {"white": (245, 245, 245), "black": (20, 20, 20), "gray": (128, 128, 128)}
COLORS = {
    "red": (230, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (245, 215, 40),
    "green": (50, 180, 70),
    "cyan": (40, 200, 220),
    "blue": (45, 85, 230),
    "purple": (150, 60, 200),
    "pink": (245, 120, 190),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross")
SIZES = {"small": 16, "large": 28}
SIZE_JITTER = 1
CELL_COORDS = (14, 32, 50)
POSITIONS = {
    "top left": (14, 14),
    "top": (32, 14),
    "top right": (50, 14),
    "left": (14, 32),
    "center": (32, 32),
    "right": (50, 32),
    "bottom left": (14, 50),
    "bottom": (32, 50),
    "bottom right": (50, 50),
}
CENTER_JITTER = 2
MIN_GAP = 2  # pixels between the bounding boxes of two objects
P_ONE_OBJECT = 0.6

# The preposition that reads naturally before each position name.
_POSITION_PHRASES = {
    "top left": "in the top left",
    "top": "at the top",
    "top right": "in the top right",
    "left": "on the left",
    "center": "in the center",
    "right": "on the right",
    "bottom left": "in the bottom left",
    "bottom": "at the bottom",
    "bottom right": "in the bottom right",
}
# Training-caption paraphrases the spec welcomes, so the generator learns the attribute rather than one
# wording. Evaluation prompts (mmgen.eval.prompts.HELDOUT_REWORDING, TUNE_REWORDING) use other words on purpose:
# none of "upper", "lower", "corner", "edge", "side", "high", "low", "up", "down", "over" appears here.
_POSITION_PARAPHRASES = {
    "top left": ["in the top-left", "at top left"],
    "top": ["at the top of the image", "near the top"],
    "top right": ["in the top-right", "at top right"],
    "left": ["at the left", "on the left of the image"],
    "center": ["in the centre", "in the middle", "at the center"],
    "right": ["at the right", "on the right of the image"],
    "bottom left": ["in the bottom-left", "at bottom left"],
    "bottom": ["at the bottom of the image", "near the bottom"],
    "bottom right": ["in the bottom-right", "at bottom right"],
}
# Every wording a caption may use for each position; the canonical one is 3x as likely as each paraphrase.
POSITION_WORDINGS = {p: [_POSITION_PHRASES[p], *_POSITION_PARAPHRASES[p]] for p in POSITIONS}
_BACKGROUND_PHRASES = ["on a {} background"] * 4 + ["on {}", "with a {} background", ", {} background"]
_PREFIXES = ["", "", "", "", "a picture of ", "an image of "]
_RELATIONS = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}


@dataclass
class ShapesSample:
    image: Image.Image  # 64x64 RGB
    caption: str
    labels: dict  # {"background": str, "objects": [{"shape", "color", "size", "position", "center", "side"}]}


def cell_of(position: str) -> tuple[int, int]:
    """(column, row) in 0..2 of a position name."""
    x, y = POSITIONS[position]
    return CELL_COORDS.index(x), CELL_COORDS.index(y)


def shape_polygon(shape: str, cx: float, cy: float, s: float) -> list[tuple[float, float]] | None:
    """Vertices of a polygonal shape in its s-by-s box centred at (cx, cy); None for the circle."""
    h = s / 2
    if shape == "square":
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return [(cx, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "diamond":
        return [(cx, cy - h), (cx + h, cy), (cx, cy + h), (cx - h, cy)]
    if shape == "star":
        radii = [h if k % 2 == 0 else 0.4 * h for k in range(10)]
        angles = [-math.pi / 2 + k * math.pi / 5 for k in range(10)]
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for r, a in zip(radii, angles)]
    if shape == "cross":
        t = s / 6  # half the bar thickness s/3
        return [
            (cx - t, cy - h),
            (cx + t, cy - h),
            (cx + t, cy - t),
            (cx + h, cy - t),
            (cx + h, cy + t),
            (cx + t, cy + t),
            (cx + t, cy + h),
            (cx - t, cy + h),
            (cx - t, cy + t),
            (cx - h, cy + t),
            (cx - h, cy - t),
            (cx - t, cy - t),
        ]
    if shape == "circle":
        return None
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _inside_polygon(X: np.ndarray, Y: np.ndarray, poly: list[tuple[float, float]]) -> np.ndarray:
    """Even-odd rule: which points (X, Y) lie inside the polygon (works for the concave star and cross)."""
    inside = np.zeros(X.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1]):
        if y1 == y2:
            continue  # a horizontal edge never crosses a horizontal ray
        crosses = (y1 > Y) != (y2 > Y)
        x_at_y = x1 + (Y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (X < x_at_y)
    return inside


def shape_coverage(shape: str, cx: float, cy: float, s: float, canvas: int = CANVAS) -> np.ndarray:
    """Fraction of each pixel the shape covers, (canvas, canvas) float32 in [0, 1].

    This is the spec's "draw at 4x, downsample with a box filter": each pixel is sampled at its 4x4 sub-pixel
    centres (pixel i covers [i, i+1)) against the exact geometry, and the samples are averaged.
    """
    cov = np.zeros((canvas, canvas), dtype=np.float32)
    h = s / 2
    x0, x1 = max(int(math.floor(cx - h)), 0), min(int(math.ceil(cx + h)), canvas)  # only the shape's window
    y0, y1 = max(int(math.floor(cy - h)), 0), min(int(math.ceil(cy + h)), canvas)
    if x0 >= x1 or y0 >= y1:
        return cov
    n = SUPERSAMPLE
    X, Y = np.meshgrid(x0 + (np.arange((x1 - x0) * n) + 0.5) / n, y0 + (np.arange((y1 - y0) * n) + 0.5) / n)
    poly = shape_polygon(shape, cx, cy, s)
    inside = (X - cx) ** 2 + (Y - cy) ** 2 < h * h if poly is None else _inside_polygon(X, Y, poly)
    cov[y0:y1, x0:x1] = inside.reshape(y1 - y0, n, x1 - x0, n).mean(axis=(1, 3))
    return cov


SCALES = (1, 2, 4)  # the spec's resolutions: 64, 128 and 256 pixels


def render_scene(labels: dict, scale: int = 1) -> Image.Image:
    """Render labels to a (64·scale)² RGB image: a pure function of the labels, used by the dataset and the judge.
    At scale m every length (centres, sides) is multiplied by m; labels keep 64-pixel units (the spec's
    Resolution section)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES} (64, 128 or 256 pixels), got {scale!r}")
    canvas = CANVAS * scale
    img = np.empty((canvas, canvas, 3), dtype=np.float32)
    img[:] = BACKGROUNDS[labels["background"]]
    for obj in labels["objects"]:
        cx, cy = obj["center"]
        alpha = shape_coverage(obj["shape"], cx * scale, cy * scale, obj["side"] * scale, canvas)[..., None]
        img = img * (1 - alpha) + np.array(COLORS[obj["color"]], dtype=np.float32) * alpha
    return Image.fromarray(np.round(img).astype(np.uint8))


def _boxes_apart(a: dict, b: dict, gap: float = MIN_GAP) -> bool:
    """True when the bounding boxes of two objects are at least `gap` pixels apart along x or y."""
    dx = abs(a["center"][0] - b["center"][0]) - (a["side"] + b["side"]) / 2
    dy = abs(a["center"][1] - b["center"][1]) - (a["side"] + b["side"]) / 2
    return max(dx, dy) >= gap


def _sample_object(rng: np.random.Generator, position: str, color: str) -> dict:
    size = str(rng.choice(list(SIZES)))
    x, y = POSITIONS[position]
    return {
        "shape": str(rng.choice(SHAPES)),
        "color": color,
        "size": size,
        "position": position,
        "center": [
            int(x + rng.integers(-CENTER_JITTER, CENTER_JITTER + 1)),
            int(y + rng.integers(-CENTER_JITTER, CENTER_JITTER + 1)),
        ],
        "side": int(SIZES[size] + rng.integers(-SIZE_JITTER, SIZE_JITTER + 1)),
    }


def sample_labels(rng: np.random.Generator) -> dict:
    """Draw a scene's structured labels: background, then one (60 %) or two (40 %) non-overlapping objects."""
    background = str(rng.choice(list(BACKGROUNDS)))
    n_objects = 1 if rng.random() < P_ONE_OBJECT else 2
    # Object palette and background palette are disjoint, so "colour differs from background" always holds.
    colors = [str(c) for c in rng.choice(list(COLORS), size=n_objects, replace=False)]
    while True:  # rejection sampling: a few tries at most, since most cell pairs admit a valid jitter
        cells = [str(p) for p in rng.choice(list(POSITIONS), size=n_objects, replace=False)]
        objects = [_sample_object(rng, p, c) for p, c in zip(cells, colors)]
        if n_objects == 1 or _boxes_apart(*objects):
            return {"background": background, "objects": objects}


def _object_phrase(obj: dict, with_size: bool) -> str:
    words = ([obj["size"]] if with_size else []) + [obj["color"], obj["shape"]]
    return "a " + " ".join(words)


def _position_phrase(position: str, rng: np.random.Generator) -> str:
    options = [POSITION_WORDINGS[position][0]] * 2 + POSITION_WORDINGS[position]
    return str(rng.choice(options))


def relation(a: dict, b: dict) -> list[str]:
    """Relations of object a to object b that hold strictly between their cells."""
    (ca, ra), (cb, rb) = cell_of(a["position"]), cell_of(b["position"])
    return (["left of"] if ca < cb else ["right of"] if ca > cb else []) + (
        ["above"] if ra < rb else ["below"] if ra > rb else []
    )


def make_caption(labels: dict, rng: np.random.Generator) -> str:
    """A templated caption that names every object's colour and shape; size, position, background optional."""
    objects = labels["objects"]
    if len(objects) == 1:
        obj = objects[0]
        text = _object_phrase(obj, with_size=rng.random() < 0.7)
        if rng.random() < 0.7:
            text += " " + _position_phrase(obj["position"], rng)
    else:
        a, b = objects
        rel = str(rng.choice(relation(a, b)))
        text = (
            f"{_object_phrase(a, with_size=rng.random() < 0.5)} {_RELATIONS[rel]} "
            f"{_object_phrase(b, with_size=rng.random() < 0.5)}"
        )
    if rng.random() < 0.7:
        phrase = str(rng.choice(_BACKGROUND_PHRASES)).format(labels["background"])
        text += phrase if phrase.startswith(",") else " " + phrase
    return str(rng.choice(_PREFIXES)) + text


def shapes_annotation(seed: int, index: int) -> tuple[dict, str]:
    """The labels and caption of sample `index` of the stream `seed`, without drawing its image."""
    rng = np.random.default_rng([seed, index])
    labels = sample_labels(rng)
    return labels, make_caption(labels, rng)


def shapes_sample(seed: int, index: int, scale: int = 1) -> ShapesSample:
    """Sample `index` of the stream `seed`: the same (seed, index) always gives the same scene and caption, drawn
    at (64·scale)² pixels."""
    labels, caption = shapes_annotation(seed, index)
    return ShapesSample(image=render_scene(labels, scale), caption=caption, labels=labels)


def write_shapes(out_dir: str | Path, n: int, seed: int = 0, scale: int = 1) -> Path:
    """Write n samples as PNGs (at (64·scale)² pixels) plus a Hugging Face imagefolder `metadata.jsonl`
    (file_name, text, labels in 64-pixel units)."""
    from .images import new_dataset_folder  # images.py reads this module

    out = new_dataset_folder(out_dir, re.compile(r"\d{6,}\.png"), {"labels", "seed", "index"})
    with open(out / "metadata.jsonl", "w") as f:
        for i in range(n):
            sample = shapes_sample(seed, i, scale)
            name = f"{i:06d}.png"
            sample.image.save(out / name)
            record = {"file_name": name, "text": sample.caption, "labels": sample.labels, "seed": seed, "index": i}
            f.write(json.dumps(record) + "\n")
    return out
