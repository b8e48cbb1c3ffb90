"""Drawings to train the shape verifier on (`mmgen.eval.verifier`): objects a person names, and objects they don't.

Named ("right"): the spec's six shapes, as generated images and tokenizers draw them: slightly rotated or
stretched, with lumpy edges (a smooth random warp of the plane) and blurred. Not named ("none"): the wrong
drawings of `mmgen.eval.deformed` (a star missing a point, a notched square, a blob, ...), any shape squashed,
warped hard, cut by a line, merged with a neighbour or with a splash stuck to it. Every drawing is sampled like
the spec draws (4x4 points a pixel) on the judge's 64-px canvas, anywhere on it, either size, then cut out as the
judge cuts out an object (`object_crop`), so the verifier sees what it will be shown.

    crops, labels = verifier_batch(np.random.default_rng(0), 256)    # (N, C, C) float32, (N,) class indices

Lengths in 64-px units; dimension letters: N drawings, C the crop's side.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..data.shapes import CANVAS, SHAPES, SIZE_JITTER, SIZES, _inside_polygon, shape_polygon
from .deformed import DEFORMATIONS, Inside, coverage
from .verifier import CLASSES, object_crop

NONE = CLASSES.index("none")
LUMPY = 0.07  # a named shape's edges move by at most this share of its side
WARPED = (0.12, 0.22)  # a shape warped this much (share of its side) is no shape


def _shape(shape: str, cx: float, cy: float, s: float, rng=None) -> Inside:
    """The spec's shape; with `rng`, a cross's bars 0.8-1.4x as thick and a star's inner radius 0.8-1.25x as far
    out (people name those alike)."""
    poly = shape_polygon(shape, cx, cy, s)
    if rng is not None and shape == "cross":
        t, h = s / 6 * rng.uniform(0.8, 1.4), s / 2
        poly = [
            (cx + (a * t if abs(a) == 1 else a / 2 * h), cy + (b * t if abs(b) == 1 else b / 2 * h)) for a, b in _CROSS
        ]
    if rng is not None and shape == "star":
        inner = 0.4 * rng.uniform(0.8, 1.25)
        angles = [-math.pi / 2 + k * math.pi / 5 for k in range(10)]
        radii = [s / 2 if k % 2 == 0 else inner * s / 2 for k in range(10)]
        poly = [(cx + r * math.cos(a), cy + r * math.sin(a)) for r, a in zip(radii, angles)]
    if poly is None:
        return lambda X, Y: (X - cx) ** 2 + (Y - cy) ** 2 < (s / 2) ** 2
    return lambda X, Y: _inside_polygon(X, Y, poly)


# the cross's 12 corners: +-1 is the bar's half thickness, +-2 the arm's end (in units of those lengths)
_CROSS = [(-1, -2), (1, -2), (1, -1), (2, -1), (2, 1), (1, 1), (1, 2), (-1, 2), (-1, 1), (-2, 1), (-2, -1), (-1, -1)]


def _moved(inside: Inside, cx, cy, s, rng, amount: float, turn: float = 0.0, stretch=(1.0, 1.0)) -> Inside:
    """`inside` seen through a turn (degrees), a stretch about (cx, cy) and a smooth random warp of the plane
    moving points by up to `amount` x s (three waves of 1-3 cycles across the side)."""
    waves = [
        (rng.uniform(1, 3) * 2 * math.pi / s, rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi), axis)
        for axis in (0, 1)
        for _ in range(3)
    ]
    a, cos, sin = amount * s / 3, math.cos(math.radians(turn)), math.sin(math.radians(turn))

    def moved(X, Y):
        dx, dy = X - cx, Y - cy
        u, v = (cos * dx + sin * dy) / stretch[0], (-sin * dx + cos * dy) / stretch[1]
        for k, phase, direction, axis in waves:
            wave = a * np.sin(k * (math.cos(direction) * u + math.sin(direction) * v) + phase)
            u, v = (u + wave, v) if axis == 0 else (u, v + wave)
        return inside(cx + u, cy + v)

    return moved


def _named(shape: str, cx, cy, s, rng) -> Inside:
    stretch = tuple(1 + rng.uniform(-0.08, 0.08, size=2))
    return _moved(_shape(shape, cx, cy, s, rng), cx, cy, s, rng, rng.uniform(0, LUMPY), rng.uniform(-6, 6), stretch)


def _unnamed(cx, cy, s, rng) -> Inside:
    """One of the ways a drawing stops being any of the six shapes."""
    shape = str(rng.choice(SHAPES))
    way = int(rng.integers(6))
    if way <= 1:  # the judge's own wrong drawings, twice as often as each other way
        kind = list(DEFORMATIONS)[int(rng.integers(len(DEFORMATIONS)))]
        drawing = DEFORMATIONS[kind][1](cx, cy, s, rng)
        return _moved(drawing, cx, cy, s, rng, rng.uniform(0, LUMPY))
    if way == 2:  # a circle or a square squashed to 50-72 % on one axis: an oval, a rectangle (a squashed
        # triangle, diamond, star or cross is still called one)
        squash = (1.0, rng.uniform(0.5, 0.72))[:: rng.choice([-1, 1])]
        squashed = _shape(str(rng.choice(["circle", "square"])), cx, cy, s)
        return _moved(squashed, cx, cy, s, rng, rng.uniform(0, LUMPY), 0, squash)
    if way == 3:  # warped hard
        return _moved(_shape(shape, cx, cy, s), cx, cy, s, rng, rng.uniform(*WARPED))
    whole = _named(shape, cx, cy, s, rng)
    if way == 4:  # cut by a straight line through the shape: 25-45 % of its side gone
        angle, depth = rng.uniform(0, 2 * math.pi), s / 2 - rng.uniform(0.25, 0.45) * s
        nx, ny = math.cos(angle), math.sin(angle)
        return lambda X, Y: whole(X, Y) & ((X - cx) * nx + (Y - cy) * ny < depth)
    # merged with a neighbour (another shape, or a splash: one disc), overlapping its edge
    angle, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0.45, 0.8) * s
    ox, oy = cx + dist * math.cos(angle), cy + dist * math.sin(angle)
    if rng.random() < 0.5:
        other = _named(str(rng.choice(SHAPES)), ox, oy, s * rng.uniform(0.5, 1.0), rng)
    else:
        r = s * rng.uniform(0.18, 0.32)
        other = lambda X, Y: (X - ox) ** 2 + (Y - oy) ** 2 < r * r  # noqa: E731
    return lambda X, Y: whole(X, Y) | other(X, Y)


def _judged_alpha(alpha: np.ndarray, rng) -> np.ndarray:
    """A drawing's coverage as the judge would measure it from an image: blurred as a decoder softens it,
    a little noise, pinholes a decoder leaves inside objects (pixels off the colour, which the judge counts as
    uncovered), then only the part (coverage > 0.1) around the most covered pixel."""
    alpha = ndimage.gaussian_filter(alpha, rng.uniform(0, 0.9)) if rng.random() < 0.8 else alpha
    if rng.random() < 0.3:
        inside = np.flatnonzero(alpha > 0.5)
        holes = rng.choice(inside, size=min(len(inside), int(rng.integers(1, 7))), replace=False)
        alpha.flat[holes] = rng.uniform(0, 0.4, size=len(holes))
    alpha = (alpha * rng.uniform(0.9, 1.05) + rng.normal(0, 0.02, alpha.shape)).clip(0, 1).astype(np.float32)
    parts, _ = ndimage.label(alpha > 0.1)
    return np.where(parts == parts.flat[alpha.argmax()], alpha, 0.0).astype(np.float32)


def verifier_sample(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """One drawing's (C, C) crop and its class: a shape's index in CLASSES, or "none"'s."""
    s = SIZES[str(rng.choice(list(SIZES)))] + rng.uniform(-SIZE_JITTER - 1, SIZE_JITTER + 1)
    margin = 0.7 * s + 1  # room for bumps and neighbours
    cx, cy = rng.uniform(margin, CANVAS - margin, size=2)
    if rng.random() < 0.5:
        label = int(rng.integers(len(SHAPES)))
        inside = _named(SHAPES[label], cx, cy, s, rng)
    else:
        label, inside = NONE, _unnamed(cx, cy, s, rng)
    return object_crop(_judged_alpha(coverage(inside), rng)), label


def verifier_batch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, C) float32 crops and (N,) int64 classes."""
    crops, labels = zip(*(verifier_sample(rng) for _ in range(n)))
    return np.stack(crops), np.array(labels, dtype=np.int64)
