"""Deliberately wrong drawings for checking the scene judge: shapes a person would not call by their name.

Each kind takes a right shapes-v1 object and breaks it the way generated images do: a star missing a point or
with 3 or 4 points, a squashed circle, a notched square, a square with two bumps on top, a cross with a stub arm,
a cut-off triangle, an irregular blob. They are drawn like the spec draws (coverage sampled at 4x4 points per
pixel, then averaged), in any colour, background, size and cell, at 64 or 128 pixels, from a seed:

    sample = deformed_sample("star-missing-point", seed=0, index=3)    # .image, .labels (what was broken)
    read_scene(sample.image)["objects"][0]["shape"]                     # a strict judge: "none"

Lengths are in 64-pixel units, as in the spec; dimension letters: H x W pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..data.shapes import (
    BACKGROUNDS,
    CANVAS,
    CENTER_JITTER,
    COLORS,
    POSITIONS,
    SIZE_JITTER,
    SIZES,
    SUPERSAMPLE,
    _inside_polygon,
    shape_polygon,
)

Inside = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (X, Y) points -> inside the drawing


def _star(cx, cy, s, points: int, missing: int | None = None) -> list[tuple[float, float]]:
    """A star of `points` points (the spec's star has 5); `missing`: that point pulled in to the inner radius."""
    h = s / 2
    n = 2 * points
    radii = [h if k % 2 == 0 and k // 2 != missing else 0.4 * h for k in range(n)]
    angles = [-math.pi / 2 + k * math.pi / points for k in range(n)]
    return [(cx + r * math.cos(a), cy + r * math.sin(a)) for r, a in zip(radii, angles)]


def _polygon(points) -> Inside:
    return lambda X, Y: _inside_polygon(X, Y, points)


def star_missing_point(cx, cy, s, rng) -> Inside:
    return _polygon(_star(cx, cy, s, 5, missing=int(rng.integers(5))))


def star_three_points(cx, cy, s, rng) -> Inside:
    return _polygon(_star(cx, cy, s, 3))


def star_four_points(cx, cy, s, rng) -> Inside:
    return _polygon(_star(cx, cy, s, 4))


def squashed_circle(cx, cy, s, rng) -> Inside:
    """An ellipse as wide as the circle and 55-70 % as tall (or the other way round)."""
    h, squash = s / 2, rng.uniform(0.55, 0.7)
    ax, ay = (h, h * squash) if rng.random() < 0.5 else (h * squash, h)
    return lambda X, Y: ((X - cx) / ax) ** 2 + ((Y - cy) / ay) ** 2 < 1


def notched_square(cx, cy, s, rng) -> Inside:
    """A square with a square bite of a third of its side taken out of the middle of one edge."""
    h, n = s / 2, s / 3
    square = _polygon(shape_polygon("square", cx, cy, s))
    side = int(rng.integers(4))  # which edge: top, right, bottom, left
    nx, ny = [(0, -h + n / 2), (h - n / 2, 0), (0, h - n / 2), (-h + n / 2, 0)][side]
    bite = _polygon(shape_polygon("square", cx + nx, cy + ny, n))
    return lambda X, Y: square(X, Y) & ~bite(X, Y)


def square_with_bumps(cx, cy, s, rng) -> Inside:
    """A square with two half-discs of radius s/6 on its top edge."""
    h, r = s / 2, s / 6
    square = _polygon(shape_polygon("square", cx, cy, s))
    bumps = [(cx - h / 2, cy - h), (cx + h / 2, cy - h)]
    return lambda X, Y: square(X, Y) | np.any([(X - bx) ** 2 + (Y - by) ** 2 < r * r for bx, by in bumps], axis=0)


def cross_with_stub_arm(cx, cy, s, rng) -> Inside:
    """A cross whose arm on one side is cut to a stub (a third of its length left)."""
    h, t = s / 2, s / 6
    cross = _polygon(shape_polygon("cross", cx, cy, s))
    side = int(rng.integers(4))
    cut = h - (h - t) * 2 / 3  # the arm ends here instead of at h
    keep = [lambda X, Y: Y > cy - cut, lambda X, Y: X < cx + cut, lambda X, Y: Y < cy + cut, lambda X, Y: X > cx - cut]
    return lambda X, Y: cross(X, Y) & keep[side](X, Y)


def cut_off_triangle(cx, cy, s, rng) -> Inside:
    """A triangle with its top 30-40 % cut off (a trapezoid)."""
    h, cut = s / 2, rng.uniform(0.3, 0.4)
    triangle = _polygon(shape_polygon("triangle", cx, cy, s))
    return lambda X, Y: triangle(X, Y) & (Y > cy - h + cut * s)


def irregular_blob(cx, cy, s, rng) -> Inside:
    """The union of 3-4 discs of random radius around the centre: no shape of the six."""
    h = s / 2
    discs = [(cx + rng.uniform(-0.35, 0.35) * h, cy + rng.uniform(-0.35, 0.35) * h, rng.uniform(0.35, 0.6) * h)]
    discs += [
        (cx + rng.uniform(-0.5, 0.5) * h, cy + rng.uniform(-0.5, 0.5) * h, rng.uniform(0.3, 0.55) * h)
        for _ in range(int(rng.integers(2, 4)))
    ]
    return lambda X, Y: np.any([(X - x) ** 2 + (Y - y) ** 2 < r * r for x, y, r in discs], axis=0)


DEFORMATIONS: dict[str, tuple[str, Callable]] = {  # kind -> (the shape it breaks, its drawing)
    "star-missing-point": ("star", star_missing_point),
    "star-3-points": ("star", star_three_points),
    "star-4-points": ("star", star_four_points),
    "squashed-circle": ("circle", squashed_circle),
    "notched-square": ("square", notched_square),
    "square-with-bumps": ("square", square_with_bumps),
    "cross-with-stub-arm": ("cross", cross_with_stub_arm),
    "cut-off-triangle": ("triangle", cut_off_triangle),
    "irregular-blob": ("circle", irregular_blob),
}


def coverage(inside: Inside, scale: int = 1) -> np.ndarray:
    """(64·scale)² float32 share of each pixel inside the drawing, sampled at 4x4 points per pixel; `inside`
    takes points in 64-pixel units."""
    canvas, n = CANVAS * scale, SUPERSAMPLE
    axis = (np.arange(canvas * n) + 0.5) / n / scale
    X, Y = np.meshgrid(axis, axis)
    return inside(X, Y).reshape(canvas, n, canvas, n).mean(axis=(1, 3)).astype(np.float32)


@dataclass
class DeformedSample:
    image: Image.Image
    labels: dict  # a spec scene's labels, the object's shape the one the drawing breaks; "deformation": its kind


def deformed_sample(kind: str, seed: int, index: int, scale: int = 1) -> DeformedSample:
    """One object of `kind` in a random colour, background, size and cell (seeded by kind, seed and index)."""
    shape, draw = DEFORMATIONS[kind]
    rng = np.random.default_rng([seed, index, list(DEFORMATIONS).index(kind)])
    background = str(rng.choice(list(BACKGROUNDS)))
    color = str(rng.choice([c for c in COLORS if COLORS[c] != BACKGROUNDS[background]]))
    size = str(rng.choice(list(SIZES)))
    side = SIZES[size] + float(rng.integers(-SIZE_JITTER, SIZE_JITTER + 1))
    while True:  # a cell where the whole drawing, bumps included, stays on the canvas (else the break may not show)
        position = str(rng.choice(list(POSITIONS)))
        cx, cy = (c + float(rng.integers(-CENTER_JITTER, CENTER_JITTER + 1)) for c in POSITIONS[position])
        reach = side / 2 + side / 6
        if reach <= min(cx, cy, CANVAS - cx, CANVAS - cy):
            break
    alpha = coverage(draw(cx, cy, side, rng), scale)[..., None]  # (H, W, 1)
    img = np.empty((*alpha.shape[:2], 3), dtype=np.float32)
    img[:] = BACKGROUNDS[background]
    img = img * (1 - alpha) + np.array(COLORS[color], dtype=np.float32) * alpha
    obj = {"color": color, "shape": shape, "size": size, "position": position, "center": [cx, cy], "side": side}
    labels = {"background": background, "objects": [obj], "deformation": kind}
    return DeformedSample(Image.fromarray(np.round(img).astype(np.uint8)), labels)
